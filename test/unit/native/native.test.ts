import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { constants as C, openSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as N from '../../../src/native/native.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';

const ROOT: N.NativeCreds = { uid: 0, gid: 0, gids: [] };
const u = (uid: number, gid = uid, gids: number[] = []): N.NativeCreds => ({ uid, gid, gids });
const ALICE = u(2001, 2001, [2100]);
const BOB = u(2002, 2002);

/** Rejects with this errno code (and the Node-style shape). */
async function rejects(p: Promise<unknown>, code: string, syscall?: string): Promise<void> {
  await assert.rejects(p, (e: NodeJS.ErrnoException) => {
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    assert.equal(e.errno, -(os.constants.errno as Record<string, number>)[code]);
    assert.match(e.message, new RegExp(`^${code}: `));
    if (syscall) assert.equal(e.syscall, syscall);
    return true;
  });
}

/**
 * The native layer against the running kernel, as root acting for other
 * users (uids 2001.., which need no passwd entry: the kernel only sees ids).
 */
describe('native: system calls as the caller', { skip: requirePrereq(isRoot()), timeout: 120_000 }, () => {
  let top: string;
  let dir: string; // 0777: everybody may create here
  let dfd: number;
  const K = N.K;

  before(async () => {
    top = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-native-'));
    await fs.chmod(top, 0o755);
    dir = path.join(top, 'x');
    await fs.mkdir(dir);
    await fs.chmod(dir, 0o777);
    dfd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  });
  after(async () => {
    if (dfd !== undefined) await N.close(dfd);
    await fs.rm(top, { recursive: true, force: true });
  });

  test('a pool of threads with umask 0 and openat2', () => {
    const i = N.info();
    assert.ok(i.threads >= 2);
    assert.equal(i.privateUmask, true);
    assert.equal(i.openat2, true, 'Linux >= 5.6 has openat2');
  });

  describe('openat2 and the fallback walk', () => {
    before(async () => {
      await fs.mkdir(path.join(dir, 'a/b'), { recursive: true });
      await fs.writeFile(path.join(dir, 'a/b/f'), 'inside');
      await fs.writeFile(path.join(top, 'secret'), 'outside');
      await fs.symlink('../../secret', path.join(dir, 'up'));
      await fs.symlink('/etc', path.join(dir, 'abs'));
      await fs.symlink('a', path.join(dir, 'toa'));
    });

    for (const walk of [false, true]) {
      const how = walk ? 'component walk' : 'openat2';
      test(`${how}: opens beneath, refuses to leave (EXDEV), refuses a final symlink (ELOOP)`, async () => {
        N.setWalkOnly(walk);
        try {
          const fd = await N.openat2(dfd, 'a/b/f', K.O_RDONLY, 0, ROOT);
          assert.equal(await fs.readFile(`/proc/self/fd/${fd}`, 'utf8'), 'inside');
          await N.close(fd);
          const back = await N.openat2(dfd, 'a/b/../../a/./b/f', K.O_RDONLY, 0, ROOT);
          await N.close(back);
          await rejects(N.openat2(dfd, '../secret', K.O_RDONLY, 0, ROOT), 'EXDEV', 'openat2');
          await rejects(N.openat2(dfd, 'a/../../secret', K.O_RDONLY, 0, ROOT), 'EXDEV');
          await rejects(N.openat2(dfd, path.join(top, 'secret'), K.O_RDONLY, 0, ROOT), 'EXDEV');
          // A symlink whose target leaves: openat2 says EXDEV, the walk follows no symlink at all (ELOOP).
          await rejects(N.openat2(dfd, 'up', K.O_RDONLY, 0, ROOT), walk ? 'ELOOP' : 'EXDEV');
          await rejects(N.openat2(dfd, 'abs/passwd', K.O_RDONLY, 0, ROOT), walk ? 'ELOOP' : 'EXDEV');
          // A magic link (/proc/self/fd/N) is never followed, even where the walk starts in /proc.
          const proc = openSync('/proc/self/fd', C.O_RDONLY | C.O_DIRECTORY);
          try {
            await rejects(N.openat2(proc, String(dfd), K.O_RDONLY, 0, ROOT), 'ELOOP');
          } finally {
            await N.close(proc);
          }
          // O_NOFOLLOW on a symlink that stays beneath: ELOOP either way.
          await rejects(N.openat2(dfd, 'toa', K.O_RDONLY | K.O_NOFOLLOW, 0, ROOT), 'ELOOP');
          await rejects(N.openat2(dfd, 'a/nope', K.O_RDONLY, 0, ROOT), 'ENOENT');
          await rejects(N.openat2(dfd, 'a/b/f/x', K.O_RDONLY, 0, ROOT), 'ENOTDIR');
        } finally {
          N.setWalkOnly(false);
        }
      });
    }

    test('ENAMETOOLONG: a 256-byte name, a path over PATH_MAX', async () => {
      await rejects(N.openat2(dfd, 'n'.repeat(256), K.O_RDONLY, 0, ROOT), 'ENAMETOOLONG');
      await rejects(N.openat2(dfd, 'a/'.repeat(2100) + 'f', K.O_RDONLY, 0, ROOT), 'ENAMETOOLONG');
      N.setWalkOnly(true);
      try {
        await rejects(N.openat2(dfd, 'a/'.repeat(2100) + 'f', K.O_RDONLY, 0, ROOT), 'ENAMETOOLONG');
      } finally {
        N.setWalkOnly(false);
      }
    });

    test('EACCES as a non-root caller; O_CREAT makes a file the caller owns, with exactly the mode asked', async () => {
      await fs.writeFile(path.join(dir, 'rootonly'), 'x', { mode: 0o600 });
      await rejects(N.openat2(dfd, 'rootonly', K.O_RDONLY, 0, ALICE), 'EACCES');
      const fd = await N.openat2(dfd, 'alice-new', K.O_RDWR | K.O_CREAT | K.O_EXCL, 0o666, ALICE);
      await N.close(fd);
      const st = await fs.lstat(path.join(dir, 'alice-new'));
      assert.equal(st.uid, 2001);
      assert.equal(st.gid, 2001);
      assert.equal(st.mode & 0o7777, 0o666, 'no umask applied by the worker');
      await rejects(N.openat2(dfd, 'alice-new', K.O_RDWR | K.O_CREAT | K.O_EXCL, 0o666, ALICE), 'EEXIST');
    });
  });

  test('mknodat: FIFO and socket as the caller; devices only for root (EPERM)', async () => {
    await N.mknodat(dfd, 'fifo', K.S_IFIFO | 0o640, { major: 0, minor: 0 }, ALICE);
    await N.mknodat(dfd, 'sock', K.S_IFSOCK | 0o755, { major: 0, minor: 0 }, ALICE);
    const f = await fs.lstat(path.join(dir, 'fifo'));
    const s = await fs.lstat(path.join(dir, 'sock'));
    assert.ok(f.isFIFO() && s.isSocket());
    assert.deepEqual([f.uid, f.gid, f.mode & 0o7777], [2001, 2001, 0o640]);
    assert.deepEqual([s.uid, s.gid, s.mode & 0o7777], [2001, 2001, 0o755]);
    await rejects(N.mknodat(dfd, 'null', K.S_IFCHR | 0o666, { major: 1, minor: 3 }, ALICE), 'EPERM', 'mknodat');
    await N.mknodat(dfd, 'null', K.S_IFCHR | 0o666, { major: 1, minor: 3 }, ROOT);
    const x = await N.statx(dfd, 'null', K.AT_SYMLINK_NOFOLLOW, ROOT);
    assert.equal(x.mode & K.S_IFMT, K.S_IFCHR);
    assert.deepEqual([x.rdevMajor, x.rdevMinor], [1, 3]);
    await rejects(N.mknodat(dfd, 'fifo', K.S_IFIFO | 0o600, { major: 0, minor: 0 }, ALICE), 'EEXIST');
  });

  test('mkdirat: owner from the caller, group and setgid from a setgid parent (the kernel decides)', async () => {
    await N.mkdirat(dfd, 'sg', 0o2775, ROOT);
    await fs.chown(path.join(dir, 'sg'), 0, 2100);
    await fs.chmod(path.join(dir, 'sg'), 0o2777);
    const sg = await N.openat2(dfd, 'sg', K.O_PATH | K.O_DIRECTORY, 0, ROOT);
    try {
      await N.mkdirat(sg, 'd', 0o750, BOB);
      const st = await fs.lstat(path.join(dir, 'sg', 'd'));
      assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [2002, 2100, 0o2750]);
      // A non-directory asking for setgid in a group the caller is not in loses it.
      await N.mknodat(sg, 'p', K.S_IFIFO | 0o2770, { major: 0, minor: 0 }, BOB);
      const p = await fs.lstat(path.join(dir, 'sg', 'p'));
      assert.deepEqual([p.uid, p.gid, p.mode & 0o7777], [2002, 2100, 0o770]);
      await N.mknodat(sg, 'q', K.S_IFIFO | 0o2770, { major: 0, minor: 0 }, ALICE); // alice is in 2100
      assert.equal((await fs.lstat(path.join(dir, 'sg', 'q'))).mode & 0o7777, 0o2770);
    } finally {
      await N.close(sg);
    }
    await fs.mkdir(path.join(dir, 'closed'), { mode: 0o755 });
    const closed = await N.openat2(dfd, 'closed', K.O_PATH | K.O_DIRECTORY, 0, ROOT);
    try {
      await rejects(N.mkdirat(closed, 'd', 0o755, ALICE), 'EACCES', 'mkdirat');
    } finally {
      await N.close(closed);
    }
  });

  test('symlinkat and readlinkat', async () => {
    await N.symlinkat('some/where/../else', dfd, 'ln', ALICE);
    assert.equal(await N.readlinkat(dfd, 'ln', BOB), 'some/where/../else');
    assert.equal((await fs.lstat(path.join(dir, 'ln'))).uid, 2001);
    await rejects(N.readlinkat(dfd, 'fifo', ROOT), 'EINVAL', 'readlinkat');
    await rejects(N.readlinkat(dfd, 'no-such', ROOT), 'ENOENT');
    await rejects(N.symlinkat('x', dfd, 'ln', ALICE), 'EEXIST', 'symlinkat');
  });

  test('linkat: a hard link; protected_hardlinks refuses a file the caller may not write (EPERM)', async () => {
    await fs.writeFile(path.join(dir, 'l1'), 'x', { mode: 0o644 });
    await N.linkat(dfd, 'l1', dfd, 'l2', ROOT);
    assert.equal((await fs.lstat(path.join(dir, 'l1'))).nlink, 2);
    await rejects(N.linkat(dfd, 'l1', dfd, 'l3', ALICE), 'EPERM', 'linkat');
    await rejects(N.linkat(dfd, 'l1', dfd, 'l2', ROOT), 'EEXIST');
  });

  test('unlinkat: file and directory; the sticky bit protects another user\'s entry', async () => {
    await fs.mkdir(path.join(dir, 'sticky'));
    await fs.chmod(path.join(dir, 'sticky'), 0o1777);
    const st = await N.openat2(dfd, 'sticky', K.O_PATH | K.O_DIRECTORY, 0, ROOT);
    try {
      const fd = await N.openat2(st, 'alices', K.O_WRONLY | K.O_CREAT, 0o666, ALICE);
      await N.close(fd);
      await rejects(N.unlinkat(st, 'alices', 0, BOB), 'EPERM', 'unlinkat');
      await N.unlinkat(st, 'alices', 0, ALICE);
      await N.mkdirat(st, 'sub', 0o755, ALICE);
      await N.mkdirat(st, 'sub/x', 0o755, ALICE);
      await rejects(N.unlinkat(st, 'sub', 0, ALICE), 'EISDIR');
      await rejects(N.unlinkat(st, 'sub', K.AT_REMOVEDIR, ALICE), 'ENOTEMPTY');
      await N.unlinkat(st, 'sub/x', K.AT_REMOVEDIR, ALICE);
      await N.unlinkat(st, 'sub', K.AT_REMOVEDIR, ALICE);
      await rejects(fs.lstat(path.join(dir, 'sticky', 'sub')), 'ENOENT');
    } finally {
      await N.close(st);
    }
  });

  test('renameat2: RENAME_NOREPLACE refuses to replace (EEXIST); a plain rename replaces', async () => {
    await fs.writeFile(path.join(dir, 'r1'), 'one');
    await fs.writeFile(path.join(dir, 'r2'), 'two');
    await rejects(N.renameat2(dfd, 'r1', dfd, 'r2', K.RENAME_NOREPLACE, ROOT), 'EEXIST', 'renameat2');
    assert.equal(await fs.readFile(path.join(dir, 'r2'), 'utf8'), 'two');
    await N.renameat2(dfd, 'r1', dfd, 'r3', K.RENAME_NOREPLACE, ROOT);
    await N.renameat2(dfd, 'r3', dfd, 'r2', 0, ROOT);
    assert.equal(await fs.readFile(path.join(dir, 'r2'), 'utf8'), 'one');
    await fs.mkdir(path.join(dir, 'locked'), { mode: 0o755 });
    await rejects(N.renameat2(dfd, 'r2', dfd, 'locked/r2', 0, ALICE), 'EACCES');
  });

  test('fchownat: root gives away, a user may not (EPERM); a chown clears set-ID bits', async () => {
    await fs.writeFile(path.join(dir, 'own'), 'x');
    await fs.chmod(path.join(dir, 'own'), 0o6755);
    await N.fchownat(dfd, 'own', 2001, -1, K.AT_SYMLINK_NOFOLLOW, ROOT);
    const st = await fs.lstat(path.join(dir, 'own'));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [2001, 0, 0o755]);
    await rejects(N.fchownat(dfd, 'own', 2002, -1, K.AT_SYMLINK_NOFOLLOW, ALICE), 'EPERM', 'fchownat');
    await N.fchownat(dfd, 'own', -1, 2100, K.AT_SYMLINK_NOFOLLOW, ALICE); // a group alice is in
    assert.equal((await fs.lstat(path.join(dir, 'own'))).gid, 2100);
    await rejects(N.fchownat(dfd, 'own', -1, 2002, K.AT_SYMLINK_NOFOLLOW, ALICE), 'EPERM');
  });

  test('fchmodat: owner only; setgid dropped for a group the caller is not in; never follows a symlink', async () => {
    await N.fchmodat(dfd, 'own', 0o2750, 0, ALICE); // group 2100: alice is in it
    assert.equal((await fs.lstat(path.join(dir, 'own'))).mode & 0o7777, 0o2750);
    await rejects(N.fchmodat(dfd, 'own', 0o777, 0, BOB), 'EPERM', 'fchmodat');
    await fs.chown(path.join(dir, 'own'), 2001, 2002);
    await N.fchmodat(dfd, 'own', 0o2750, 0, ALICE);
    assert.equal((await fs.lstat(path.join(dir, 'own'))).mode & 0o7777, 0o750, 'the kernel dropped S_ISGID');
    await rejects(N.fchmodat(dfd, 'ln', 0o600, K.AT_SYMLINK_NOFOLLOW, ALICE), 'EOPNOTSUPP');
  });

  test('utimensat: nanoseconds, UTIME_OMIT leaves a time alone, explicit times need the owner', async () => {
    await fs.writeFile(path.join(dir, 't'), 'x');
    await fs.chown(path.join(dir, 't'), 2001, 2001);
    const before = await N.statx(dfd, 't', 0, ROOT);
    await N.utimensat(dfd, 't', 'omit', { sec: 1_600_000_000, nsec: 123_456_789 }, K.AT_SYMLINK_NOFOLLOW, ALICE);
    const x = await N.statx(dfd, 't', 0, ROOT);
    assert.equal(x.mtimeNs, 1_600_000_000_123_456_789n);
    assert.equal(x.atimeNs, before.atimeNs);
    await N.utimensat(dfd, 't', { sec: 1_500_000_000, nsec: 1 }, 'omit', 0, ALICE);
    const y = await N.statx(dfd, 't', 0, ROOT);
    assert.equal(y.atimeNs, 1_500_000_000_000_000_001n);
    assert.equal(y.mtimeNs, x.mtimeNs);
    await rejects(N.utimensat(dfd, 't', 'omit', { sec: 1, nsec: 0 }, 0, BOB), 'EPERM', 'utimensat');
    // "now" needs write permission only: bob has none on a 0644 file.
    await rejects(N.utimensat(dfd, 't', 'now', 'now', 0, BOB), 'EACCES');
    // An empty name is the descriptor itself.
    const fd = await N.openat2(dfd, 't', K.O_RDONLY, 0, ROOT);
    await N.utimensat(fd, '', 'omit', { sec: 7, nsec: 8 }, 0, ROOT);
    assert.equal((await N.statx(fd, '', K.AT_EMPTY_PATH, ROOT)).mtimeNs, 7_000_000_008n);
    await N.close(fd);
  });

  test('statx: agrees with lstat; ENOENT; EACCES below a directory the caller may not search', async () => {
    const x = await N.statx(dfd, 'fifo', K.AT_SYMLINK_NOFOLLOW, ROOT);
    const l = await fs.lstat(path.join(dir, 'fifo'), { bigint: true });
    assert.equal(x.ino, l.ino);
    assert.equal(x.mode, Number(l.mode));
    assert.equal(x.uid, Number(l.uid));
    assert.equal(x.mtimeNs, l.mtimeNs);
    assert.equal(x.ctimeNs, l.ctimeNs);
    assert.equal(x.nlink, Number(l.nlink));
    assert.ok(x.btimeNs > 0n);
    await rejects(N.statx(dfd, 'no-such', 0, ROOT), 'ENOENT', 'statx');
    await fs.mkdir(path.join(dir, 'private'), { mode: 0o700 });
    await fs.writeFile(path.join(dir, 'private', 'f'), 'x');
    await rejects(N.statx(dfd, 'private/f', 0, ALICE), 'EACCES');
  });

  test('faccessat with AT_EACCESS checks the caller; accessMask answers R/W/X at once', async () => {
    await fs.writeFile(path.join(dir, 'acc'), 'x', { mode: 0o640 });
    await fs.chown(path.join(dir, 'acc'), 2002, 2100);
    await rejects(N.faccessat(dfd, 'acc', K.W_OK, K.AT_EACCESS, ALICE), 'EACCES', 'faccessat2');
    await N.faccessat(dfd, 'acc', K.R_OK, K.AT_EACCESS, ALICE);
    // Without AT_EACCESS the kernel uses the real uid (root): why the flag is needed.
    await N.faccessat(dfd, 'acc', K.W_OK, 0, ALICE);
    assert.equal(await N.accessMask(dfd, 'acc', K.AT_EACCESS, ALICE), 4);
    assert.equal(await N.accessMask(dfd, 'acc', K.AT_EACCESS, BOB), 6);
    assert.equal(await N.accessMask(dfd, 'acc', K.AT_EACCESS, u(2003)), 0);
    assert.equal(await N.accessMask(dfd, '', K.AT_EACCESS | K.AT_EMPTY_PATH, u(2003)), 7, 'the 0777 directory itself');
    await rejects(N.accessMask(dfd, 'no-such', K.AT_EACCESS, ALICE), 'ENOENT');
  });

  test('name_to_handle_at / open_by_handle_at: same object; only the root server may open by handle', async () => {
    let h: N.KernelHandle;
    try {
      h = await N.nameToHandleAt(dfd, 'acc', 0, ALICE);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EOPNOTSUPP') return; // a file system without handles
      throw e;
    }
    assert.ok(h.handle.length > 0);
    const fd = await N.openByHandleAt(dfd, h, K.O_RDONLY, ROOT);
    const a = await N.statx(fd, '', K.AT_EMPTY_PATH, ROOT);
    await N.close(fd);
    assert.equal(a.ino, (await fs.lstat(path.join(dir, 'acc'), { bigint: true })).ino);
    await rejects(N.openByHandleAt(dfd, h, K.O_RDONLY, ALICE), 'EPERM', 'open_by_handle_at');
    await rejects(N.openByHandleAt(dfd, { type: h.type, handle: Buffer.alloc(200) }, K.O_RDONLY, ROOT), 'EINVAL');
    await rejects(N.nameToHandleAt(dfd, 'no-such', 0, ROOT), 'ENOENT');
  });

  test('fsync, fdatasync, close: EBADF once closed', async () => {
    const fd = await N.openat2(dfd, 'sync', K.O_RDWR | K.O_CREAT, 0o600, ROOT);
    await fs.writeFile(`/proc/self/fd/${fd}`, 'data');
    await N.fsync(fd);
    await N.fdatasync(fd);
    await N.close(fd);
    await rejects(N.fsync(fd), 'EBADF', 'fsync');
    await rejects(N.fdatasync(fd), 'EBADF');
    await rejects(N.close(fd), 'EBADF');
  });

  describe('one trip per NFS call: inDir and renameIn', () => {
    // The directory as the local export names it: a path below the root descriptor, inode, birth time.
    const ref = async (rel: string): Promise<N.DirRef> => {
      const x = await N.statx(dfd, rel, K.AT_SYMLINK_NOFOLLOW, ROOT);
      return { rel, ino: x.ino, gen: x.btimeNs };
    };
    /** Rejects with `code` and, when `dirIno` is given, the directory's statx after the failure. */
    const rejectsWithDir = (p: Promise<unknown>, code: string, dirIno?: bigint) =>
      assert.rejects(p, (e: NodeJS.ErrnoException & { dir?: N.Statx }) => {
        assert.equal(e.code, code, e.message);
        if (dirIno === undefined) assert.equal(e.dir, undefined, 'no statx of a directory that failed its check');
        else assert.equal(e.dir?.ino, dirIno);
        return true;
      });

    before(async () => {
      await fs.mkdir(path.join(dir, 'one/p'), { recursive: true, mode: 0o777 });
      await fs.chmod(path.join(dir, 'one'), 0o777);
      await fs.chmod(path.join(dir, 'one/p'), 0o777);
      await fs.mkdir(path.join(dir, 'one/q'), { mode: 0o777 });
      await fs.chmod(path.join(dir, 'one/q'), 0o777);
      await fs.mkdir(path.join(dir, 'one/rootonly'), { mode: 0o755 });
    });

    test('create, mkdir, symlink, mknod, unlink: one job each, made as the caller, object and directory statted', async () => {
      const p = await ref('one/p');
      const j0 = N.info().jobs;
      const c = await N.inDir(dfd, p, { op: 'create', name: 'f', mode: 0o640 }, ALICE);
      assert.equal(N.info().jobs - j0, 1, 'one trip to a worker');
      assert.ok(c.fd >= 0);
      assert.deepEqual([c.obj?.uid, c.obj?.gid, (c.obj?.mode ?? 0) & 0o7777], [2001, 2001, 0o640]);
      const viaFd = await N.statx(c.fd, '', K.AT_EMPTY_PATH, ROOT);
      assert.equal(viaFd.ino, c.obj?.ino, 'the descriptor is the new file');
      await N.close(c.fd);
      assert.equal(c.dir?.ino, p.ino);
      assert.equal(c.dir?.mtimeNs, (await fs.stat(path.join(dir, 'one/p'), { bigint: true })).mtimeNs, 'the directory after the change');
      await rejectsWithDir(N.inDir(dfd, p, { op: 'create', name: 'f', mode: 0o640 }, ALICE), 'EEXIST', p.ino);

      const m = await N.inDir(dfd, p, { op: 'mkdir', name: 'd', mode: 0o750 }, BOB);
      assert.deepEqual([m.obj?.uid, (m.obj?.mode ?? 0) & 0o170777], [2002, K.S_IFDIR | 0o750]);
      const l = await N.inDir(dfd, p, { op: 'symlink', name: 'l', target: '../../../etc' }, ALICE);
      assert.deepEqual([l.obj?.uid, (l.obj?.mode ?? 0) & K.S_IFMT], [2001, K.S_IFLNK]);
      assert.equal(await fs.readlink(path.join(dir, 'one/p/l')), '../../../etc');
      const s = await N.inDir(dfd, p, { op: 'mknod', name: 's', mode: K.S_IFSOCK | 0o600, major: 0, minor: 0 }, ALICE);
      assert.deepEqual([s.obj?.uid, (s.obj?.mode ?? 0) & K.S_IFMT], [2001, K.S_IFSOCK]);
      await rejectsWithDir(N.inDir(dfd, p, { op: 'mknod', name: 'dev', mode: K.S_IFCHR | 0o600, major: 1, minor: 3 }, ALICE), 'EPERM', p.ino);

      // unlink: what the name held, as it was; the kernel checks the type as the caller.
      await rejectsWithDir(N.inDir(dfd, p, { op: 'unlink', name: 'd', flags: 0 }, BOB), 'EISDIR', p.ino);
      await rejectsWithDir(N.inDir(dfd, p, { op: 'unlink', name: 'f', flags: K.AT_REMOVEDIR }, ALICE), 'ENOTDIR', p.ino);
      const j1 = N.info().jobs;
      const u1 = await N.inDir(dfd, p, { op: 'unlink', name: 'f', flags: 0 }, ALICE);
      assert.equal(N.info().jobs - j1, 1, 'one trip to a worker');
      assert.equal(u1.obj?.ino, c.obj?.ino);
      assert.equal(u1.dir?.ino, p.ino);
      await N.inDir(dfd, p, { op: 'unlink', name: 'd', flags: K.AT_REMOVEDIR }, BOB);
      await rejectsWithDir(N.inDir(dfd, p, { op: 'unlink', name: 'f', flags: 0 }, ALICE), 'ENOENT', p.ino);
      assert.deepEqual((await fs.readdir(path.join(dir, 'one/p'))).sort(), ['l', 's']);
    });

    test('the caller\'s permissions decide (EACCES, the directory statted for wcc); the server opens the directory', async () => {
      const r = await ref('one/rootonly');
      await rejectsWithDir(N.inDir(dfd, r, { op: 'create', name: 'x', mode: 0o644 }, ALICE), 'EACCES', r.ino);
      await rejectsWithDir(N.inDir(dfd, r, { op: 'mkdir', name: 'x', mode: 0o755 }, ALICE), 'EACCES', r.ino);
      // A directory the caller may not search on the way: the server opens it, the caller acts inside.
      await fs.mkdir(path.join(dir, 'one/rootonly/open'), { mode: 0o777 });
      await fs.chmod(path.join(dir, 'one/rootonly/open'), 0o777);
      await fs.chmod(path.join(dir, 'one/rootonly'), 0o700);
      const o = await ref('one/rootonly/open');
      const c = await N.inDir(dfd, o, { op: 'create', name: 'mine', mode: 0o600 }, ALICE);
      await N.close(c.fd);
      assert.equal(c.obj?.uid, 2001);
    });

    test('another directory at the path (ESTALE), a path that leaves (EXDEV), a final symlink: nothing made anywhere', async () => {
      await fs.mkdir(path.join(dir, 'one/swap'), { mode: 0o777 });
      await fs.chmod(path.join(dir, 'one/swap'), 0o777);
      const before = await ref('one/swap');
      // Replaced by another directory under the same name: the handle's directory is gone.
      await fs.rename(path.join(dir, 'one/swap'), path.join(dir, 'one/swap.old'));
      await fs.mkdir(path.join(dir, 'one/swap'), { mode: 0o777 });
      await rejectsWithDir(N.inDir(dfd, before, { op: 'create', name: 'x', mode: 0o644 }, ROOT), 'ESTALE');
      // A component swapped for a symlink that leads out of the root.
      await fs.rm(path.join(dir, 'one/swap'), { recursive: true });
      await fs.symlink(top, path.join(dir, 'one/swap'));
      await rejectsWithDir(N.inDir(dfd, { ...before, rel: 'one/swap/x' }, { op: 'create', name: 'escaped', mode: 0o644 }, ROOT), 'EXDEV');
      await rejectsWithDir(N.inDir(dfd, { ...before, rel: '..' }, { op: 'mkdir', name: 'escaped', mode: 0o755 }, ROOT), 'EXDEV');
      // The final component a symlink (to a directory inside): not followed.
      await rejectsWithDir(N.inDir(dfd, { ...before, rel: 'one/swap' }, { op: 'create', name: 'escaped', mode: 0o644 }, ROOT), 'ENOTDIR');
      await assert.rejects(fs.lstat(path.join(top, 'escaped')), { code: 'ENOENT' });
      await assert.rejects(fs.lstat(path.join(top, 'x', 'escaped')), { code: 'ENOENT' });
      assert.deepEqual(await fs.readdir(path.join(dir, 'one/swap.old')), []);
    });

    test('renameIn: one job, both directories checked, both names statted before, both directories after', async () => {
      const p = await ref('one/p');
      const q = await ref('one/q');
      await fs.writeFile(path.join(dir, 'one/p/a'), 'a');
      await fs.writeFile(path.join(dir, 'one/q/b'), 'b');
      const a = await fs.lstat(path.join(dir, 'one/p/a'), { bigint: true });
      const b = await fs.lstat(path.join(dir, 'one/q/b'), { bigint: true });
      const j0 = N.info().jobs;
      const r = await N.renameIn(dfd, p, 'a', q, 'b', 0, ROOT);
      assert.equal(N.info().jobs - j0, 1, 'one trip to a worker');
      assert.deepEqual([r.obj?.ino, r.dst?.ino, r.dir?.ino, r.dir2?.ino], [a.ino, b.ino, p.ino, q.ino]);
      assert.equal(await fs.readFile(path.join(dir, 'one/q/b'), 'utf8'), 'a');
      // Within one directory: no second directory.
      const r2 = await N.renameIn(dfd, q, 'b', q, 'c', 0, ROOT);
      assert.deepEqual([r2.obj?.ino, r2.dst, r2.dir?.ino, r2.dir2], [a.ino, undefined, q.ino, undefined]);
      // As a caller without write permission on the target: EACCES with both directories for wcc.
      const ro = await ref('one/rootonly');
      await assert.rejects(N.renameIn(dfd, q, 'c', ro, 'c', 0, ALICE), (e: NodeJS.ErrnoException & { dir?: N.Statx; dir2?: N.Statx }) => {
        assert.equal(e.code, 'EACCES');
        assert.deepEqual([e.dir?.ino, e.dir2?.ino], [q.ino, ro.ino]);
        return true;
      });
      await rejectsWithDir(N.renameIn(dfd, { ...q, gen: q.gen + 1n }, 'c', p, 'c', 0, ROOT), 'ESTALE');
      await rejectsWithDir(N.renameIn(dfd, q, 'c', { ...p, rel: '../p' }, 'c', 0, ROOT), 'EXDEV');
      assert.deepEqual(await fs.readdir(path.join(dir, 'one/q')), ['c']);
    });

    test('syncIn: one job as the server; a file, a symlink (syncfs), a name gone already; the directory checked', async () => {
      const p = await ref('one/p');
      await fs.writeFile(path.join(dir, 'one/p/sy'), 's', { mode: 0o600 });
      await fs.symlink('sy', path.join(dir, 'one/p/syl'));
      const j0 = N.info().jobs;
      const r = await N.syncIn(dfd, p, 'sy');
      assert.equal(N.info().jobs - j0, 1, 'one trip to a worker');
      assert.equal(r.dir?.ino, p.ino, "the directory's statx afterwards");
      assert.equal((await N.syncIn(dfd, p, 'syl')).dir?.ino, p.ino);
      assert.equal((await N.syncIn(dfd, p, 'never-there')).dir?.ino, p.ino, 'a name removed since: nothing to sync');
      assert.equal((await N.syncIn(dfd, p)).dir?.ino, p.ino);
      await rejectsWithDir(N.syncIn(dfd, { ...p, gen: p.gen + 1n }, 'sy'), 'ESTALE');
      await rejectsWithDir(N.syncIn(dfd, { ...p, rel: '../p' }, 'sy'), 'EXDEV');
    });

    test('accessOf: R/W/X as the caller in one job, the object checked (ESTALE) and never followed', async () => {
      await fs.writeFile(path.join(dir, 'one/acc'), 'x', { mode: 0o640 });
      await fs.chmod(path.join(dir, 'one/acc'), 0o640);
      await fs.chown(path.join(dir, 'one/acc'), 2001, 2100);
      const o = await ref('one/acc');
      const j0 = N.info().jobs;
      assert.equal((await N.accessOf(dfd, o, ALICE)).mask, 6);
      assert.equal(N.info().jobs - j0, 1, 'one trip to a worker');
      assert.equal((await N.accessOf(dfd, o, u(2003, 2003, [2100]))).mask, 4, 'the group');
      const bob = await N.accessOf(dfd, o, BOB);
      assert.deepEqual([bob.mask, bob.obj?.ino], [0, o.ino]);
      await rejectsWithDir(N.accessOf(dfd, { ...o, gen: o.gen + 1n }, ALICE), 'ESTALE');
      await rejectsWithDir(N.accessOf(dfd, { ...o, rel: '../one/acc' }, ALICE), 'EXDEV');
      await fs.symlink('acc', path.join(dir, 'one/acc-link'));
      const l = await N.accessOf(dfd, await ref('one/acc-link'), ALICE);
      assert.equal(l.obj?.mode !== undefined && (l.obj.mode & K.S_IFMT) === K.S_IFLNK, true, 'the symlink itself');
    });

    test('identity restored after every one-trip job, also when the change failed', async () => {
      const p = await ref('one/p');
      const self = N.self();
      // Bob's jobs fail every time (the name exists before they start), whatever order the workers run them in.
      await N.inDir(dfd, p, { op: 'mkdir', name: 'taken', mode: 0o700 }, ALICE);
      const work: Array<Promise<unknown>> = [];
      for (let k = 0; k < 40; k++) {
        work.push(N.inDir(dfd, p, { op: 'mkdir', name: `a-${k}`, mode: 0o700 }, ALICE));
        work.push(assert.rejects(N.inDir(dfd, p, { op: 'mkdir', name: 'taken', mode: 0o700 }, BOB), /EEXIST|EACCES/));
        work.push(N.whoami(self).then((w) => assert.deepEqual([w.fsuid, w.fsgid, w.ngroups], [self.uid, self.gid, self.gids.length])));
        work.push(N.mkdirat(dfd, `one/p/self-${k}`, 0o700, self));
      }
      await Promise.all(work);
      for (let k = 0; k < 40; k++) {
        assert.equal((await fs.lstat(path.join(dir, `one/p/a-${k}`))).uid, 2001);
        assert.equal((await fs.lstat(path.join(dir, `one/p/self-${k}`))).uid, self.uid);
      }
    });
  });

  test('bad arguments throw at once (TypeError), never reach a worker', () => {
    assert.throws(() => N.mkdirat(dfd, 'a\0b', 0o755, ROOT), TypeError);
    assert.throws(() => N.mkdirat(dfd, 'x', 0o755, { uid: -1, gid: 0, gids: [] }), TypeError);
    assert.throws(() => N.mkdirat(dfd, 'x', 0o755, { uid: 0, gid: 0, gids: new Array(300).fill(1) }), TypeError);
    assert.throws(() => N.mkdirat(dfd, 'x', 0o755, null as unknown as N.NativeCreds), TypeError);
  });

  test('a blocked syscall holds a worker, not the event loop', async () => {
    await N.mknodat(dfd, 'pipe', K.S_IFIFO | 0o600, { major: 0, minor: 0 }, ROOT);
    // Opening a FIFO for reading blocks until a writer comes: the writer is opened from this same thread.
    const reader = N.openat2(dfd, 'pipe', K.O_RDONLY, 0, ROOT);
    const w = await fs.open(path.join(dir, 'pipe'), 'w');
    const rfd = await reader;
    await w.close();
    await N.close(rfd);
  });

  test('whenIdle: at once with nothing in flight, else once the last job has completed', async () => {
    await N.whenIdle();
    await N.mknodat(dfd, 'pipe2', K.S_IFIFO | 0o600, { major: 0, minor: 0 }, ROOT);
    // The reader's open blocks (a job in flight) until this thread opens a writer.
    const reader = N.openat2(dfd, 'pipe2', K.O_RDONLY, 0, ROOT);
    let idle = false;
    const idled = N.whenIdle().then(() => (idle = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(idle, false, 'whenIdle resolved with a job in flight');
    const w = await fs.open(path.join(dir, 'pipe2'), 'w');
    const rfd = await reader;
    await idled;
    await w.close();
    await N.close(rfd);
  });

  test('credentials never leak between concurrent calls of different callers', async () => {
    const callers = Array.from({ length: 8 }, (_, i) => u(3001 + i, 4001 + i, [5001 + i, 6001 + i]));
    await fs.mkdir(path.join(dir, 'many'), { mode: 0o777 });
    await fs.chmod(path.join(dir, 'many'), 0o777);
    const many = await N.openat2(dfd, 'many', K.O_PATH | K.O_DIRECTORY, 0, ROOT);
    const PER = 60;
    const self = N.self();
    const groupsBefore = process.getgroups!();
    const work: Array<Promise<unknown>> = [];
    // Interleaved: caller 0, 1, ... 7, 0, 1, ... with whoami probes and root's own node:fs calls between.
    for (let k = 0; k < PER; k++) {
      for (const c of callers) {
        work.push(N.mkdirat(many, `d-${c.uid}-${k}`, 0o700, c));
        work.push(
          N.openat2(many, `f-${c.uid}-${k}`, K.O_WRONLY | K.O_CREAT | K.O_EXCL, 0o600, c).then((fd) => N.close(fd)),
        );
        work.push(
          N.whoami(c).then((w) => assert.deepEqual(w, { fsuid: c.uid, fsgid: c.gid, ngroups: 2, group0: c.gids[0] })),
        );
      }
      work.push(N.whoami(ROOT).then((w) => assert.deepEqual([w.fsuid, w.fsgid, w.ngroups], [0, 0, 0])));
      // The process's own identity needs no switch: a worker must be back to it after every other caller.
      work.push(N.whoami(self).then((w) => assert.deepEqual([w.fsuid, w.fsgid, w.ngroups], [self.uid, self.gid, self.gids.length])));
      work.push(N.mkdirat(many, `self-${k}`, 0o700, self));
      // libuv's threads (node:fs) stay root all along.
      work.push(fs.writeFile(path.join(dir, 'many', `root-${k}`), 'x'));
    }
    await Promise.all(work);
    await N.close(many);
    const names = await fs.readdir(path.join(dir, 'many'));
    assert.equal(names.length, PER * callers.length * 2 + 2 * PER);
    // Node's own threads (and this one) never changed identity.
    assert.deepEqual(process.getgroups!(), groupsBefore);
    for (const n of names) {
      const st = await fs.lstat(path.join(dir, 'many', n));
      if (n.startsWith('root-') || n.startsWith('self-')) {
        assert.deepEqual([st.uid, st.gid], [0, 0], n);
        continue;
      }
      const uid = Number(n.split('-')[1]);
      assert.deepEqual([st.uid, st.gid], [uid, uid + 1000], n);
    }
  });
});
