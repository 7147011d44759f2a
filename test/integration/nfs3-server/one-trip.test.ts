import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FsError } from '../../../src/backend/errors.js';
import { FType } from '../../../src/nfs3/constants.js';
import type { WccData } from '../../../src/nfs3/types.js';
import * as N from '../../../src/native/native.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';
import { ROOT, startLocalServer, user, type LocalServer } from '../../helpers/local-server.js';

const ALICE = user(2001, 2001);
const BOB = user(2002, 2002);

/**
 * Issue 17: a metadata call on a root server costs ONE trip to the native
 * layer's workers (open the directory beneath the root, check it, change as
 * the caller, statx object and directory, close), not three or four. Counted
 * by the addon's job counter around real NFS calls to an in-process server;
 * the replies must still carry what the disk says.
 */
describe('local export: one trip to the native layer per metadata call', { skip: requirePrereq(isRoot()), timeout: 120_000 }, () => {
  let s: LocalServer;
  let pub: Buffer;

  /** Jobs the addon queued while `fn` ran (the server is in this process; nothing else runs here meanwhile). */
  async function trips<T>(fn: () => Promise<T>): Promise<{ n: number; r: T }> {
    const j0 = N.info().jobs;
    const r = await fn();
    return { n: N.info().jobs - j0, r };
  }

  /** The directory's post-op attributes in the reply are the directory's as it is now. */
  async function wccIsCurrent(wcc: WccData | undefined, p: string): Promise<void> {
    const st = await fs.lstat(p, { bigint: true });
    assert.ok(wcc?.after, 'post-op attributes present');
    assert.equal(wcc.after.fileid, st.ino);
    assert.equal(BigInt(wcc.after.mtime.sec) * 1_000_000_000n + BigInt(wcc.after.mtime.nsec), st.mtimeNs);
    assert.equal(wcc.after.nlink, Number(st.nlink));
  }

  before(async () => {
    s = await startLocalServer({ attrCacheMs: 1000 });
    await fs.mkdir(path.join(s.exportDir, 'pub'), { mode: 0o777 });
    await fs.chmod(path.join(s.exportDir, 'pub'), 0o1777);
    pub = (await s.client.lookup(ROOT, s.root, 'pub')).fh;
  });
  after(async () => {
    await s?.stop();
    if (s) await fs.rm(s.dir, { recursive: true, force: true });
  });

  test('CREATE, ACCESS, SETATTR, MKDIR, SYMLINK, MKNOD, RENAME, REMOVE, RMDIR: one trip each, as the caller, replies from the disk', async () => {
    const dir = path.join(s.exportDir, 'pub');
    await s.client.getattr(ALICE, pub); // the directory's attributes cached, as in a steady stream of calls

    const c = await trips(() => s.client.create(ALICE, pub, 'f', { mode: 'unchecked', attrs: { mode: 0o640 } }));
    assert.equal(c.n, 1, 'CREATE');
    const fst = await fs.lstat(path.join(dir, 'f'), { bigint: true });
    assert.deepEqual([c.r.attr?.fileid, c.r.attr?.uid, c.r.attr?.mode], [fst.ino, 2001, 0o640]);
    await wccIsCurrent(c.r.dirWcc, dir);
    // The handle it gave works, and GETATTR is answered from what the create learnt.
    const g = await trips(() => s.client.getattr(ALICE, c.r.fh!));
    assert.deepEqual([g.n, g.r.fileid], [0, fst.ino]);

    // ACCESS asks the kernel as the caller, in one trip: alice owns it (rw-), bob is other (---).
    const a = await trips(() => s.client.access(ALICE, c.r.fh!, 0x3f));
    assert.deepEqual([a.n, a.r.access & 0x2d], [1, 0x0d], 'ACCESS: READ, MODIFY, EXTEND, no EXECUTE');
    const b = await trips(() => s.client.access(BOB, c.r.fh!, 0x3f));
    assert.deepEqual([b.n, b.r.access & 0x2d], [1, 0], 'ACCESS of another user');

    // SETATTR of mode and times: one trip, nanoseconds kept, the reply's attributes the file's now.
    const sa = await trips(() => s.client.setattr(ALICE, c.r.fh!, { mode: 0o600, mtime: { sec: 1_700_000_000, nsec: 123_456_789 } }));
    assert.equal(sa.n, 1, 'SETATTR');
    const after = await fs.lstat(path.join(dir, 'f'), { bigint: true });
    assert.deepEqual([Number(after.mode & 0o7777n), after.mtimeNs], [0o600, 1_700_000_000_123_456_789n]);
    assert.deepEqual([sa.r.after?.mode, sa.r.after?.mtime], [0o600, { sec: 1_700_000_000, nsec: 123_456_789 }]);
    // Explicit times by bob, who is not the owner: the kernel refuses as the caller, in one trip, with the file's attributes.
    const sb = await trips(() => s.client.setattr(BOB, c.r.fh!, { mtime: { sec: 1, nsec: 0 } }).then(() => assert.fail('not refused'), (e: FsError) => e));
    assert.deepEqual([sb.n, sb.r.code, sb.r.wcc?.after?.mode], [1, 'PERM', 0o600]);

    const m = await trips(() => s.client.mkdir(ALICE, pub, 'd', { mode: 0o750 }));
    assert.equal(m.n, 1, 'MKDIR');
    assert.deepEqual([m.r.attr?.type, m.r.attr?.uid, m.r.attr?.mode], [FType.DIR, 2001, 0o750]);
    await wccIsCurrent(m.r.dirWcc, dir);

    const l = await trips(() => s.client.symlink(ALICE, pub, 'l', '/etc/passwd', {}));
    assert.equal(l.n, 1, 'SYMLINK');
    assert.deepEqual([l.r.attr?.type, l.r.attr?.uid], [FType.LNK, 2001]);

    const k = await trips(() => s.client.mknod(ALICE, pub, 'sock', { type: FType.SOCK, attrs: { mode: 0o600 } }));
    assert.equal(k.n, 1, 'MKNOD');
    assert.deepEqual([k.r.attr?.type, k.r.attr?.uid], [FType.SOCK, 2001]);

    const rn = await trips(() => s.client.rename(ALICE, pub, 'f', m.r.fh!, 'g'));
    assert.equal(rn.n, 1, 'RENAME');
    await wccIsCurrent(rn.r.fromWcc, dir);
    await wccIsCurrent(rn.r.toWcc, path.join(dir, 'd'));
    // The moved file's handle still finds it under its new name.
    assert.equal((await s.client.getattr(ALICE, c.r.fh!)).fileid, fst.ino);
    assert.equal((await s.client.lookup(ALICE, m.r.fh!, 'g')).attr?.fileid, fst.ino);

    const rm = await trips(() => s.client.remove(ALICE, m.r.fh!, 'g'));
    assert.equal(rm.n, 1, 'REMOVE');
    await wccIsCurrent(rm.r, path.join(dir, 'd'));
    await assert.rejects(s.client.getattr(ALICE, c.r.fh!), (e: FsError) => e.code === 'STALE');

    const rd = await trips(() => s.client.rmdir(ALICE, pub, 'd'));
    assert.equal(rd.n, 1, 'RMDIR');
    await wccIsCurrent(rd.r, dir);
    assert.deepEqual((await fs.readdir(dir)).sort(), ['l', 'sock']);
  });

  test('refusals cost one trip too and carry the directory\'s wcc data: the kernel decides as the caller', async () => {
    const dir = path.join(s.exportDir, 'pub');
    await s.client.create(ALICE, pub, 'alices', { mode: 'unchecked', attrs: { mode: 0o666 } });
    await s.client.mkdir(ALICE, pub, 'sub', { mode: 0o755 });
    const refused = async (fn: () => Promise<unknown>, code: string, n = 1) => {
      const t = await trips(() => fn().then(() => assert.fail('not refused'), (e: FsError) => e));
      assert.equal(t.r.code, code, t.r.message);
      assert.equal(t.n, n, `${n === 1 ? 'one trip' : `${n} trips`} for ${code}`);
      await wccIsCurrent(t.r.wcc, dir);
    };
    await refused(() => s.client.remove(BOB, pub, 'alices'), 'PERM'); // the sticky bit: the kernel's EPERM
    await refused(() => s.client.remove(ALICE, pub, 'sub'), 'ISDIR');
    await refused(() => s.client.rmdir(ALICE, pub, 'alices'), 'NOTDIR');
    // EXIST says the name is there: it is synced first (durable-namespace.test), one trip more.
    await refused(() => s.client.mkdir(BOB, pub, 'alices', { mode: 0o755 }), 'EXIST', 2);
    assert.equal((await fs.lstat(path.join(dir, 'alices'))).uid, 2001);
  });
});
