import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { LowLevelFrontend } from '../../../src/frontends/fuse/lowlevel-frontend.js';
import { mountAt } from '../../../src/frontends/fuse/mountpoint.js';
import { fuseLl } from '../../../src/native/fuse-ll.js';
import { ROOT, startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { fuseSkip, run, spawnMount } from './mount-helper.js';

/**
 * How a mount ends when something goes wrong around the unmount.
 * - An unmount that fails (not root and fusermount3 refusing or missing,
 *   say) must not cost what the mount still holds for programs: data
 *   written and acknowledged but not yet committed, SETATTRs answered at
 *   once and owed. The session is destroyed and all of it committed; the
 *   failure is thrown after. It is injected by replacing the native unmount
 *   for one call (a real one is hard to make as root).
 * - Our mount detached from outside while a busy file keeps it alive, and
 *   another mount made at the same path: stopping ours must not detach that
 *   one (the unmount went by path: umount2 MNT_DETACH, then a lazy
 *   fusermount/umount of whatever was at the path).
 * - A mount whose connection is aborted from outside (the fusectl abort
 *   file, as an admin unsticks a hung mount) stays at its path, dead: `gvfs
 *   mount` must notice its session ended and exit, not wait for the path to
 *   stop being a FUSE mount, which it never does.
 */
describe('FUSE mounts: unmount edges', { skip: fuseSkip(), timeout: 400_000 }, () => {
  const CTL = '/sys/fs/fuse/connections';
  let s: LocalServer;
  let remote: RemoteNfs;
  const mounts: string[] = [];
  const mountDir = async (name: string) => {
    const d = path.join(s.dir, name);
    await fs.mkdir(d);
    mounts.push(d);
    return d;
  };

  before(async () => {
    s = await startLocalServer();
    remote = new RemoteNfs({ host: '127.0.0.1', port: s.port, timeoutMs: 20_000 });
  });
  after(async () => {
    // A test's leftovers: a dead mount, or the other mount over ours (and ours under it).
    for (const d of mounts) for (let i = 0; i < 3 && (await mountAt(d)); i++) await run('umount', ['-l', d]).catch(() => undefined);
    await remote?.close();
    await s?.stop();
  });

  test('writes not yet committed and an owed chmod reach the server; the unmount error is thrown after', async () => {
    // COMMIT only on fsync, at the bounds and at unmount: the data is uncommitted when the unmount begins.
    const fe = new LowLevelFrontend(remote, s.root, { attrTimeoutMs: 1000, background: ROOT, callers: { kind: 'fixed', cred: ROOT }, deferCommitMs: 600_000 });
    const mnt = await mountDir('failed');
    await fe.mount(mnt);
    const data = randomBytes(2 * 1024 * 1024 + 7);
    await fs.writeFile(path.join(s.dir, 'src.bin'), data);
    // A program that created a file, wrote it and chmodded it, and keeps it open.
    const script = `import sys,os\nfd=os.open(sys.argv[2],os.O_WRONLY|os.O_CREAT|os.O_EXCL,0o644)\nos.write(fd,open(sys.argv[1],'rb').read())\nos.fchmod(fd,0o600)\nprint('done',flush=True)\nsys.stdin.readline()`;
    const w = spawn('python3', ['-c', script, path.join(s.dir, 'src.bin'), path.join(mnt, 'held.bin')], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const lines = createInterface({ input: w.stdout! })[Symbol.asyncIterator]();
      assert.equal((await lines.next()).value, 'done');
      const commitsBefore = fe.stats.commits;
      const ll = fuseLl();
      const realUnmount = ll.unmount;
      ll.unmount = () => Promise.reject(new Error('injected: the unmount failed'));
      try {
        await assert.rejects(fe.unmount(), /injected: the unmount failed/);
      } finally {
        ll.unmount = realUnmount;
      }
      assert.ok(fe.stats.commits > commitsBefore, `no COMMIT at the failed unmount (commits ${commitsBefore} -> ${fe.stats.commits})`);
      const onServer = path.join(s.exportDir, 'held.bin');
      assert.equal((await fs.stat(onServer)).mode & 0o7777, 0o600, 'the owed chmod did not reach the server');
      assert.ok(data.equals(await fs.readFile(onServer)), 'the written data is not on the server');
    } finally {
      w.kill('SIGKILL');
    }
  });

  test('detached from outside (a busy file keeps it), another mount at the path: that one stays', async () => {
    const fe = new LowLevelFrontend(remote, s.root, { attrTimeoutMs: 1000, background: ROOT, callers: { kind: 'fixed', cred: ROOT } });
    const mnt = await mountDir('not-ours');
    await fe.mount(mnt);
    const ours = await mountAt(mnt);
    assert.equal(ours?.dev, fe.mountDev, 'the front end knows its mount');
    // A program whose working directory is in our mount: the mount lives on after a lazy detach. It changes
    // directory itself, after its exec: spawn's cwd would chdir before the exec, while this process (which
    // answers the mount) waits in spawn for that exec.
    const busy = spawn('sh', ['-c', 'cd "$1" && echo in && exec sleep 600', 'sh', mnt], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      assert.equal((await createInterface({ input: busy.stdout! })[Symbol.asyncIterator]().next()).value, 'in');
      await run('umount', ['-l', mnt]);
      await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'gvfs-test-other', mnt]);
      await fs.writeFile(path.join(mnt, 'marker'), 'other mount');
      const other = await mountAt(mnt);
      assert.equal(other?.fsType, 'tmpfs');
      await fe.unmount();
      const now = await mountAt(mnt);
      assert.equal(now?.dev, other?.dev, `the other mount at ${mnt} was detached by our unmount (now ${now ? now.fsType + ' ' + now.dev : 'nothing'})`);
      assert.equal(await fs.readFile(path.join(mnt, 'marker'), 'utf8'), 'other mount');
    } finally {
      busy.kill('SIGKILL');
    }
  });

  test('aborted through /sys/fs/fuse/connections: gvfs mount exits by itself', async () => {
    // The FUSE control file system (fusectl) is not always mounted; root mounts it.
    if ((await mountAt(CTL))?.fsType !== 'fusectl') await run('mount', ['-t', 'fusectl', 'fusectl', CTL]);
    const m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, await mountDir('aborted'));
    try {
      const e = await mountAt(m.mnt);
      assert.ok(e, 'mounted');
      const minor = e.dev.split(':')[1];
      await fs.writeFile(`${CTL}/${minor}/abort`, '1');
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([
        new Promise<number | null>((resolve) => (m.proc.exitCode !== null ? resolve(m.proc.exitCode) : m.proc.once('exit', (c) => resolve(c)))),
        new Promise<'still running'>((resolve) => (timer = setTimeout(() => resolve('still running'), 60_000))),
      ]);
      clearTimeout(timer);
      assert.notEqual(code, 'still running', `gvfs mount still running 60 s after its session was aborted:\n${m.stderr().slice(-2000)}`);
      assert.match(m.stderr(), /the FUSE session ended/);
    } finally {
      await m.stop();
    }
  });
});
