import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FType, StableHow } from '../../../src/nfs3/constants.js';
import { ROOT, startLocalServer, user, type LocalServer } from '../../helpers/local-server.js';

/** Local errors map to the precise nfsstat3, with permission checks for the caller's uid/gid. */
describe('NFSv3 errors and permissions', { timeout: 300_000 }, () => {
  let s: LocalServer;
  before(async () => {
    s = await startLocalServer();
    await fs.mkdir(path.join(s.exportDir, 'd/sub'), { recursive: true });
    await fs.writeFile(path.join(s.exportDir, 'd/file'), 'x');
    await fs.mkdir(path.join(s.exportDir, 'private'), { mode: 0o700 });
    await fs.chown(path.join(s.exportDir, 'private'), 1000, 1000);
    await fs.writeFile(path.join(s.exportDir, 'mine'), 'secret', { mode: 0o600 });
    await fs.chown(path.join(s.exportDir, 'mine'), 1000, 1000);
  });
  after(() => s.stop());

  test('NOENT, EXIST, NOTEMPTY, NOTDIR, ISDIR, NAMETOOLONG, INVAL', async () => {
    await assert.rejects(s.client.lookup(ROOT, s.root, 'nope'), { code: 'NOENT' });
    await assert.rejects(s.client.mkdir(ROOT, s.root, 'd', {}), { code: 'EXIST' });
    await assert.rejects(s.client.rmdir(ROOT, s.root, 'd'), { code: 'NOTEMPTY' });
    const f = await s.client.lookup(ROOT, (await s.client.lookup(ROOT, s.root, 'd')).fh, 'file');
    await assert.rejects(s.client.lookup(ROOT, f.fh, 'x'), { code: 'NOTDIR' });
    await assert.rejects(s.client.remove(ROOT, s.root, 'd'), { code: 'ISDIR' });
    await assert.rejects(s.client.rmdir(ROOT, s.root, 'mine'), { code: 'NOTDIR' });
    await assert.rejects(s.client.create(ROOT, s.root, 'n'.repeat(256), { mode: 'guarded', attrs: {} }), { code: 'NAMETOOLONG' });
    await assert.rejects(s.client.create(ROOT, s.root, 'a/b', { mode: 'guarded', attrs: {} }), { code: 'INVAL' });
    await assert.rejects(s.client.read(ROOT, s.root, 0, 10), { code: 'ISDIR' });
  });

  test('a failure reply still carries wcc data for the directory', async () => {
    const e = await s.client.mkdir(ROOT, s.root, 'd', {}).catch((x) => x);
    assert.equal(e.code, 'EXIST');
    assert.ok(e.wcc?.before && e.wcc?.after, 'failure body has dir wcc');
    const l = await s.client.lookup(ROOT, s.root, 'nope').catch((x) => x);
    assert.equal(l.attr?.type, FType.DIR, 'LOOKUP failure has the directory attributes');
  });

  test('ACCES for another user; owner and root allowed', async () => {
    const priv = (await s.client.lookup(ROOT, s.root, 'private')).fh;
    await assert.rejects(s.client.lookup(user(1001), priv, 'x'), { code: 'ACCES' });
    await assert.rejects(s.client.create(user(1001), priv, 'x', { mode: 'guarded', attrs: {} }), { code: 'ACCES' });
    const mine = (await s.client.lookup(ROOT, s.root, 'mine')).fh;
    await assert.rejects(s.client.read(user(1001), mine, 0, 10), { code: 'ACCES' });
    assert.equal((await s.client.read(user(1000), mine, 0, 10)).data.toString(), 'secret');
    await assert.rejects(s.client.setattr(user(1001), mine, { mode: 0o777 }), { code: 'PERM' });
    await assert.rejects(s.client.setattr(user(1000), mine, { uid: 0 }), { code: 'PERM' });
    // group membership through supplementary gids
    await fs.chmod(path.join(s.exportDir, 'mine'), 0o640);
    await assert.rejects(s.client.read(user(1001, 1001), mine, 0, 10), { code: 'ACCES' });
    assert.equal((await s.client.read(user(1001, 1001, [1000]), mine, 0, 10)).data.toString(), 'secret');
  });

  test('new objects belong to the caller', async () => {
    const priv = (await s.client.lookup(ROOT, s.root, 'private')).fh;
    const c = await s.client.create(user(1000), priv, 'owned', { mode: 'guarded', attrs: { mode: 0o644 } });
    assert.equal(c.attr?.uid, 1000);
    const st = await fs.stat(path.join(s.exportDir, 'private/owned'));
    assert.equal(st.uid, 1000);
    assert.equal(st.gid, 1000);
  });

  test('sticky directories protect other users\' entries', async () => {
    const tmp = path.join(s.exportDir, 'tmp');
    await fs.mkdir(tmp);
    await fs.chmod(tmp, 0o1777);
    const t = (await s.client.lookup(ROOT, s.root, 'tmp')).fh;
    await s.client.create(user(1000), t, 'a', { mode: 'guarded', attrs: {} });
    // The kernel decides, as the caller: EPERM, as unlink(2) in /tmp says (and knfsd answers).
    await assert.rejects(s.client.remove(user(1001), t, 'a'), { code: 'PERM' });
    await s.client.remove(user(1000), t, 'a');
  });

  test('removed objects are STALE; forged or foreign handles are refused', async () => {
    const c = await s.client.create(ROOT, s.root, 'gone', { mode: 'guarded', attrs: {} });
    await s.client.remove(ROOT, s.root, 'gone');
    await assert.rejects(s.client.getattr(ROOT, c.fh!), { code: 'STALE' });
    await assert.rejects(s.client.write(ROOT, c.fh!, 0, Buffer.from('x'), StableHow.FILE_SYNC), { code: 'STALE' });
    const forged = Buffer.from(s.root);
    forged[15] ^= 1; // another inode number, authenticator unchanged
    await assert.rejects(s.client.getattr(ROOT, forged), { code: 'BADHANDLE' });
    await assert.rejects(s.client.getattr(ROOT, Buffer.alloc(12)), { code: 'BADHANDLE' });
    const other = await startLocalServer();
    try {
      await assert.rejects(s.client.getattr(ROOT, other.root), (e: { code: string }) => e.code === 'STALE' || e.code === 'BADHANDLE');
    } finally {
      await other.stop();
    }
  });

  test('nothing outside the export: .., symlinks and mount paths', async () => {
    await fs.symlink('/etc', path.join(s.exportDir, 'etc-link'));
    const l = await s.client.lookup(ROOT, s.root, 'etc-link');
    assert.equal(l.attr?.type, FType.LNK, 'symlinks are served as symlinks');
    await assert.rejects(s.client.lookup(ROOT, l.fh, 'passwd'), { code: 'NOTDIR' });
    await assert.rejects(s.client.read(ROOT, l.fh, 0, 100), { code: 'INVAL' });
    await assert.rejects(s.client.create(ROOT, l.fh, 'x', { mode: 'guarded', attrs: {} }), { code: 'NOTDIR' });
    const up = await s.client.lookup(ROOT, s.root, '..');
    assert.equal(up.attr?.fileid, (await s.client.getattr(ROOT, s.root)).fileid);
    await assert.rejects(s.client.mount('/../etc', ROOT), { code: 'INVAL' });
    await assert.rejects(s.client.mount('/etc-link', ROOT), { code: 'NOTDIR' });
    await assert.rejects(s.client.mount('/elsewhere/..', ROOT));
    await assert.rejects(s.client.rename(ROOT, s.root, 'd', (await s.client.lookup(ROOT, s.root, 'd')).fh, 'inside'), { code: 'INVAL' });
  });

  test('read-only export refuses changes with ROFS', async () => {
    const ro = await startLocalServer({ readOnly: true });
    try {
      await fs.writeFile(path.join(ro.exportDir, 'f'), 'x');
      await assert.rejects(ro.client.create(ROOT, ro.root, 'n', { mode: 'guarded', attrs: {} }), { code: 'ROFS' });
      const f = await ro.client.lookup(ROOT, ro.root, 'f');
      await assert.rejects(ro.client.write(ROOT, f.fh, 0, Buffer.from('y'), StableHow.FILE_SYNC), { code: 'ROFS' });
      await assert.rejects(ro.client.setattr(ROOT, f.fh, { mode: 0o600 }), { code: 'ROFS' });
      assert.equal((await ro.client.read(ROOT, f.fh, 0, 10)).data.toString(), 'x');
    } finally {
      await ro.stop();
    }
  });

  test('root squash maps uid 0 to the anonymous account', async () => {
    const sq = await startLocalServer({ squash: 'root' });
    try {
      const c = await sq.client.create(ROOT, sq.root, 'x', { mode: 'guarded', attrs: {} }).catch((e) => e);
      // the export root is 0755 root-owned, so the squashed caller may not create in it
      assert.equal(c.code, 'ACCES');
    } finally {
      await sq.stop();
    }
  });
});
