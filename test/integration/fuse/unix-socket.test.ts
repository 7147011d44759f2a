import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { fuseSkip, run, runAs, spawnMount, type MountProc } from './mount-helper.js';

/** Binds a Unix-domain socket at argv[1], connects to it, echoes "ping" across and prints it. */
const ECHO = `import socket,sys
p=sys.argv[1]
s=socket.socket(socket.AF_UNIX); s.bind(p); s.listen(1)
c=socket.socket(socket.AF_UNIX); c.connect(p)
a,_=s.accept(); c.sendall(b'ping'); print(a.recv(4).decode())`;

/**
 * Issue 17: programs bind Unix-domain sockets on a mount (MKNOD of a socket,
 * made by the export as the caller). `gvfs mount` in its own process over
 * `gvfs serve` in this one; the sockets are bound by child processes (a
 * bind blocks its thread until the mount answers).
 */
describe('gvfs mount: Unix-domain sockets, FIFOs and a non-root caller', { skip: fuseSkip(), timeout: 300_000 }, () => {
  let s: LocalServer;
  let m: MountProc;
  let m1000: MountProc;
  const at = (...p: string[]) => path.join(m.mnt, ...p);
  const up = (...p: string[]) => path.join(s.exportDir, ...p);

  before(async () => {
    s = await startLocalServer();
    await fs.chmod(s.dir, 0o755);
    await fs.chmod(s.exportDir, 0o777);
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'));
    // Every call of this mount is uid 1000's (the FUSE binding has one credential per mount).
    m1000 = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt1000'), ['--as', '1000:1000']);
  });
  after(async () => {
    await m1000?.stop();
    await m?.stop();
    await s?.stop();
  });

  test('bind(), connect() and a round trip on a socket in the mount', async () => {
    const r = await run('/usr/bin/python3', ['-c', ECHO, at('echo.sock')]);
    assert.equal(r.stdout.trim(), 'ping');
    assert.ok((await fs.lstat(up('echo.sock'))).isSocket());
    assert.ok((await fs.lstat(at('echo.sock'))).isSocket());
    await fs.unlink(at('echo.sock'));
    await assert.rejects(fs.lstat(up('echo.sock')), { code: 'ENOENT' });
  });

  test('mkfifo and mknod of a device through the mount (root)', async () => {
    await run('mkfifo', ['-m', '0640', at('p')]);
    const p = await fs.lstat(up('p'));
    assert.ok(p.isFIFO());
    assert.equal(p.mode & 0o7777, 0o640);
    await run('mknod', [at('zero'), 'c', '1', '5']);
    const z = await fs.lstat(up('zero'));
    assert.ok(z.isCharacterDevice());
    assert.equal(z.rdev, 0x105);
  });

  test('what uid 1000 makes belongs to uid 1000, with the mode the kernel gives it', async () => {
    const at1000 = (...p: string[]) => path.join(m1000.mnt, ...p);
    await runAs(1000, 'sh', ['-c', `umask 027; echo mine > '${at1000('f')}' && mkdir '${at1000('d')}' && ln -s f '${at1000('l')}'`]);
    for (const [name, mode] of [['f', 0o640], ['d', 0o750]] as const) {
      const st = await fs.lstat(up(name));
      assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [1000, 1000, mode], name);
    }
    assert.equal((await fs.lstat(up('l'))).uid, 1000);
    const r = await runAs(1000, '/usr/bin/python3', ['-c', ECHO, at1000('u.sock')]);
    assert.equal(r.stdout.trim(), 'ping');
    const st = await fs.lstat(up('u.sock'));
    assert.ok(st.isSocket());
    assert.deepEqual([st.uid, st.gid], [1000, 1000]);
  });
});
