import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, test } from 'node:test';
import { FType } from '../../../src/nfs3/constants.js';
import type { Fattr3 } from '../../../src/nfs3/types.js';
import { fuseLl } from '../../../src/native/fuse-ll.js';
import { SET_ATIME, SET_ATIME_NOW, SET_MODE, SET_MTIME, SET_MTIME_NOW, SET_SIZE, fromNs, makedev, toLlAttr, toNs, toSattr } from '../../../src/frontends/fuse/lowlevel-attr.js';
import { Callers, GroupCache } from '../../../src/frontends/fuse/lowlevel-callers.js';
import { Inodes, ROOT_ID } from '../../../src/frontends/fuse/lowlevel-inodes.js';
import { AuthFlavor } from '../../../src/rpc/types.js';

const attr = (over: Partial<Fattr3> = {}): Fattr3 => ({
  type: FType.REG,
  mode: 0o644,
  nlink: 1,
  uid: 1,
  gid: 2,
  size: 10,
  used: 4096,
  rdev: { major: 0, minor: 0 },
  fsid: 1n,
  fileid: 0x1_0000_0002n,
  atime: { sec: 1, nsec: 2 },
  mtime: { sec: 3, nsec: 999_999_999 },
  ctime: { sec: 5, nsec: 6 },
  ...over,
});

describe('libfuse 3 low-level binding and its front end pieces (no mount)', { timeout: 60_000 }, () => {
  test('the addon exports the binding, with the kernel\'s SETATTR bits as our constants say', () => {
    const f = fuseLl();
    for (const k of ['mount', 'unmount', 'destroy', 'invalInode', 'replyErr', 'replyEntry', 'replyCreate', 'replyAttr', 'replyOpen', 'replyBuf', 'replyFds', 'replyWrite', 'replyReadlink', 'replyStatfs', 'replyDir'] as const)
      assert.equal(typeof f[k], 'function', k);
    // No entry invalidation: it takes a directory's inode lock that a request waiting for us may hold (kill -9 hang).
    assert.equal((f as unknown as Record<string, unknown>).invalEntry, undefined);
    assert.equal(f.FUSE_SET_ATTR_MODE, SET_MODE);
    assert.equal(f.FUSE_SET_ATTR_SIZE, SET_SIZE);
    assert.equal(f.FUSE_SET_ATTR_ATIME, SET_ATIME);
    assert.equal(f.FUSE_SET_ATTR_MTIME, SET_MTIME);
    assert.equal(f.FUSE_SET_ATTR_ATIME_NOW, SET_ATIME_NOW);
    assert.equal(f.FUSE_SET_ATTR_MTIME_NOW, SET_MTIME_NOW);
  });

  test('bad arguments are a TypeError, never a crash: a reply without a request, a mount without a handler', () => {
    const f = fuseLl();
    assert.throws(() => f.replyErr(0n, 2), TypeError);
    assert.throws(() => (f.replyErr as unknown as (x: unknown, e: number) => number)('nope', 2), TypeError);
    assert.throws(() => (f.mount as unknown as (...a: unknown[]) => unknown)('/nonexistent'), TypeError);
    assert.throws(() => (f.unmount as unknown as (x: unknown) => unknown)({}), TypeError);
  });

  test('attributes: full 64-bit fileid, nanoseconds, glibc dev_t, 512-byte blocks', () => {
    const a = toLlAttr(attr({ type: FType.CHR, rdev: { major: 259, minor: 70000 } }), 1 << 20);
    assert.equal(a.ino, 0x1_0000_0002n);
    assert.equal(a.mode, 0o020644);
    assert.equal(a.mtimeNs, 3_999_999_999n);
    assert.equal(a.blocks, 8);
    // gnu_dev_makedev(259, 70000)
    assert.equal(a.rdev, makedev(259, 70000));
    assert.equal(makedev(259, 70000), ((70000 & 0xff) | ((259 & 0xfff) << 8)) + (70000 & ~0xff) * 4096);
    assert.deepEqual(fromNs(toNs({ sec: 1580702706, nsec: 123456789 })), { sec: 1580702706, nsec: 123456789 });
    assert.deepEqual(fromNs(-1n), { sec: -1, nsec: 999_999_999 });
  });

  test('SETATTR: UTIME_OMIT leaves a time alone, UTIME_NOW is the server\'s clock, explicit times are exact', () => {
    assert.deepEqual(toSattr(SET_MTIME, { mtimeNs: 1_000_000_001n, atimeNs: 99n }), { mtime: { sec: 1, nsec: 1 } });
    assert.deepEqual(toSattr(SET_ATIME, { atimeNs: 5n }), { atime: { sec: 0, nsec: 5 } });
    assert.deepEqual(toSattr(SET_ATIME | SET_ATIME_NOW | SET_MTIME | SET_MTIME_NOW, {}), { atime: 'server', mtime: 'server' });
    assert.deepEqual(toSattr(SET_MODE | SET_SIZE, { mode: 0o104755, size: 7 }), { mode: 0o4755, size: 7 });
    assert.deepEqual(toSattr(0, { mode: 1 }), {});
  });

  test('inode table: one node per handle (all names of a file), counted lookups, FORGET drops at zero, root stays', () => {
    const t = new Inodes(Buffer.from('root'));
    assert.equal(t.get(ROOT_ID).fh.toString(), 'root');
    const a = t.of(Buffer.from('file'));
    const b = t.of(Buffer.from('file'));
    assert.equal(a, b, 'two names, one node');
    assert.notEqual(t.of(Buffer.from('other')).id, a.id);
    t.ref(a);
    t.ref(a);
    t.forget(a.id, 1);
    assert.equal(t.get(a.id), a);
    t.forget(a.id, 1);
    assert.throws(() => t.get(a.id), /not in the inode table/);
    // A new lookup after FORGET: a new id (never reused, so generation 0 is right).
    const c = t.of(Buffer.from('file'));
    assert.ok(c.id > a.id);
    t.forget(ROOT_ID, 100);
    assert.ok(t.get(ROOT_ID));
    // A node made for an answer that never went out leaves no trace.
    const d = t.of(Buffer.from('unanswered'));
    t.unref(d);
    assert.equal(t.peek(Buffer.from('unanswered')), undefined);
  });

  test('callers: each as itself with its groups; a session admits its owner and root only; fixed is fixed', async () => {
    // A process with known groups (root can give them): what the kernel says it has is what it gets.
    const child = spawn('setpriv', ['--reuid=1000', '--regid=1000', '--groups=4242,4243,1000', 'sleep', '30'], { stdio: 'ignore' });
    try {
      await new Promise((r) => child.once('spawn', r));
      const each = new Callers({ kind: 'each' });
      let c = await each.credentials({ uid: 1000, gid: 1000, pid: child.pid! });
      // setpriv execs sleep once it has set the groups: until then the pid shows root's.
      for (let i = 0; i < 100 && !c.gids.includes(4242); i++) {
        await new Promise((r) => setTimeout(r, 50));
        c = await new Callers({ kind: 'each' }).credentials({ uid: 1000, gid: 1000, pid: child.pid! });
      }
      assert.equal(c.uid, 1000);
      assert.equal(c.flavor, AuthFlavor.AUTH_SYS);
      assert.deepEqual([...c.gids].sort(), [4242, 4243], 'supplementary groups, the primary one left out');
    } finally {
      child.kill();
    }
    const gone = await new GroupCache().groups({ uid: 5, gid: 5, pid: 0x7ffffff0 });
    assert.deepEqual(gone, []);
    const cred = { flavor: AuthFlavor.AUTH_SYS, uid: 4000, gid: 4000, gids: [] };
    const session = new Callers({ kind: 'session', cred, ownerUid: 1000, allowRoot: false, allowedUids: new Set([1002]) });
    assert.equal((await session.credentials({ uid: 1000, gid: 1000, pid: 1 })).uid, 4000);
    assert.equal((await session.credentials({ uid: 1002, gid: 1002, pid: 1 })).uid, 4000);
    await assert.rejects(session.credentials({ uid: 1001, gid: 1001, pid: 1 }), /not a user of this session/);
    await assert.rejects(session.credentials({ uid: 0, gid: 0, pid: 1 }), /not a user of this session/);
    const fixed = new Callers({ kind: 'fixed', cred });
    assert.equal((await fixed.credentials({ uid: 1, gid: 1, pid: 1 })).uid, 4000);
  });
});
