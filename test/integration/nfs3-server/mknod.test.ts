import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FType } from '../../../src/nfs3/constants.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';
import { ROOT, startLocalServer, user, type LocalServer } from '../../helpers/local-server.js';

/**
 * MKNOD through NFS (our client, `gvfs serve` in this process, running as
 * root): FIFOs, sockets and devices are made by the kernel as the caller, so
 * the caller owns them with the mode it asked for and only root makes devices.
 */
describe('MKNOD of FIFOs, sockets and devices as the caller', { skip: requirePrereq(isRoot()), timeout: 120_000 }, () => {
  let s: LocalServer;
  const up = (...p: string[]) => path.join(s.exportDir, ...p);
  const alice = user(2001, 2001);
  before(async () => {
    s = await startLocalServer();
    await fs.chmod(s.exportDir, 0o777);
  });
  after(() => s?.stop());

  test('a socket and a FIFO made by uid 2001 belong to it, with the mode asked (no umask of the server)', async () => {
    const k = await s.client.mknod(alice, s.root, 'a.sock', { type: FType.SOCK, attrs: { mode: 0o751 } });
    const f = await s.client.mknod(alice, s.root, 'a.fifo', { type: FType.FIFO, attrs: { mode: 0o4620 } });
    assert.deepEqual([k.attr?.type, k.attr?.uid, k.attr?.gid, k.attr?.mode], [FType.SOCK, 2001, 2001, 0o751]);
    assert.deepEqual([f.attr?.type, f.attr?.uid, f.attr?.mode], [FType.FIFO, 2001, 0o4620]);
    const st = await fs.lstat(up('a.sock'));
    assert.ok(st.isSocket());
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [2001, 2001, 0o751]);
    await assert.rejects(s.client.mknod(alice, s.root, 'a.sock', { type: FType.SOCK, attrs: {} }), { code: 'EXIST' });
  });

  test('devices: root makes them (major/minor kept), uid 2001 gets PERM and nothing is made', async () => {
    const c = await s.client.mknod(ROOT, s.root, 'null', { type: FType.CHR, attrs: { mode: 0o666 }, rdev: { major: 1, minor: 3 } });
    assert.deepEqual(c.attr?.rdev, { major: 1, minor: 3 });
    const st = await fs.lstat(up('null'));
    assert.ok(st.isCharacterDevice());
    assert.equal(st.rdev, 0x103);
    const b = await s.client.mknod(ROOT, s.root, 'blk', { type: FType.BLK, attrs: { mode: 0o600 }, rdev: { major: 7, minor: 200 } });
    assert.equal(b.attr?.type, FType.BLK);
    assert.deepEqual(b.attr?.rdev, { major: 7, minor: 200 });
    await assert.rejects(
      s.client.mknod(alice, s.root, 'evil', { type: FType.CHR, attrs: { mode: 0o666 }, rdev: { major: 1, minor: 1 } }),
      { code: 'PERM' },
    );
    await assert.rejects(fs.lstat(up('evil')), { code: 'ENOENT' });
  });

  test('in a directory the caller may not write: ACCES, as the kernel says', async () => {
    const d = await s.client.mkdir(ROOT, s.root, 'closed', { mode: 0o755 });
    await assert.rejects(s.client.mknod(alice, d.fh!, 's', { type: FType.SOCK, attrs: {} }), { code: 'ACCES' });
    await assert.rejects(fs.lstat(up('closed', 's')), { code: 'ENOENT' });
  });
});
