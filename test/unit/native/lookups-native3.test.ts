import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { constants as C, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import * as N from '../../../src/native/native.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';

const run = promisify(execFile);
const u = (uid: number, gid = uid, gids: number[] = []): N.NativeCreds => ({ uid, gid, gids });
const ALICE = u(2001);
const BOB = u(2002);

async function rejects(p: Promise<unknown>, code: string, syscall?: string): Promise<NodeJS.ErrnoException & { dir?: N.Statx }> {
  let err: (NodeJS.ErrnoException & { dir?: N.Statx }) | undefined;
  await assert.rejects(p, (e: NodeJS.ErrnoException & { dir?: N.Statx }) => {
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    assert.equal(e.errno, -(os.constants.errno as Record<string, number>)[code]);
    if (syscall) assert.equal(e.syscall, syscall);
    err = e;
    return true;
  });
  return err!;
}

/**
 * The read jobs of issue 17 step 3 (native/src/lookups.c): each opens its
 * object beneath the root's descriptor (checked against inode and birth
 * time) and reads through it; and the writes as the caller.
 */
describe('native: reads by descriptor and name, writes as the caller', { skip: requirePrereq(isRoot()), timeout: 120_000 }, () => {
  let top: string;
  let root: string;
  let rfd: number;
  const K = N.K;
  const ref = async (rel: string): Promise<N.DirRef> => {
    const st = await fs.lstat(path.join(root, rel), { bigint: true });
    return { rel, ino: st.ino, gen: st.birthtimeNs };
  };

  before(async () => {
    top = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-native3-'));
    await fs.chmod(top, 0o755);
    root = path.join(top, 'root');
    await fs.mkdir(path.join(root, 'd/e'), { recursive: true });
    await fs.writeFile(path.join(root, 'd/f'), 'data');
    await fs.symlink('../../outside', path.join(root, 'd/l'));
    await fs.writeFile(path.join(top, 'outside'), 'secret');
    await fs.mkdir(path.join(root, 'shut'), { mode: 0o700 });
    await fs.writeFile(path.join(root, 'shut/x'), '');
    await fs.symlink('..', path.join(root, 'up')); // a symlink leading out of the root
    await fs.symlink('loop', path.join(root, 'loop'));
    rfd = openSync(root, C.O_RDONLY | C.O_DIRECTORY);
  });
  after(async () => {
    if (rfd !== undefined) await N.close(rfd);
    await run('rm', ['-rf', top]);
  });

  test('statOf: the object (a symlink itself), checked (ESTALE); EXDEV out, ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG', async () => {
    const f = await ref('d/f');
    const x = await N.statOf(rfd, f);
    assert.deepEqual([x.ino, Number(x.size)], [f.ino, 4]);
    const l = await N.statOf(rfd, { rel: 'd/l', ino: 0n, gen: 0n }, false);
    assert.equal(l.mode & K.S_IFMT, K.S_IFLNK, 'a symlink is described, not followed');
    await rejects(N.statOf(rfd, { ...f, gen: f.gen + 1n }), 'ESTALE');
    await rejects(N.statOf(rfd, { rel: 'up/outside', ino: 0n, gen: 0n }, false), 'EXDEV');
    await rejects(N.statOf(rfd, { rel: '../outside', ino: 0n, gen: 0n }, false), 'EXDEV');
    await rejects(N.statOf(rfd, { rel: 'd/nope', ino: 0n, gen: 0n }, false), 'ENOENT');
    await rejects(N.statOf(rfd, { rel: 'd/f/x', ino: 0n, gen: 0n }, false), 'ENOTDIR');
    await rejects(N.statOf(rfd, { rel: 'loop/x', ino: 0n, gen: 0n }, false), 'ELOOP');
    await rejects(N.statOf(rfd, { rel: 'd/' + 'n'.repeat(256), ino: 0n, gen: 0n }, false), 'ENAMETOOLONG');
  });

  test('a path past PATH_MAX is opened in pieces beneath the root; a symlink on the way still cannot lead out', async () => {
    // 24 components of 200 bytes: 4824 bytes below the root, made by chdir steps (no long path string anywhere).
    const names = Array.from({ length: 24 }, (_, i) => `${i}`.padStart(3, '0') + 'y'.repeat(197));
    await run('python3', ['-c', `import os,sys\nos.chdir(sys.argv[1])\nfor n in sys.argv[2:]:\n os.mkdir(n); os.chdir(n)\nopen('f','w').write('far')`, root, ...names]);
    const rel = names.join('/');
    assert.ok(rel.length > 4096);
    const d = await N.statOf(rfd, { rel, ino: 0n, gen: 0n }, false);
    const dir = { rel, ino: d.ino, gen: d.btimeNs };
    const f = await N.lookupIn(rfd, dir, 'f', ALICE);
    assert.equal(Number(f.obj.size), 3);
    assert.deepEqual((await N.readdirOf(rfd, dir)).names, ['f']);
    // A directory deep down swapped for a symlink to the top of the root: refused, not followed out.
    await run('python3', ['-c', `import os,sys\nos.chdir(sys.argv[1])\nfor n in sys.argv[2:-1]: os.chdir(n)\nos.rename(sys.argv[-1], 'moved'); os.symlink('/', sys.argv[-1])`, root, ...names.slice(0, 22)]);
    await rejects(N.statOf(rfd, { rel, ino: 0n, gen: 0n }, false), 'EXDEV');
  });

  test('lookupIn: the name statted as the caller (EACCES without search permission, the directory still read); ENOENT; EINVAL for "..", ESTALE', async () => {
    const d = await ref('d');
    const r = await N.lookupIn(rfd, d, 'l', ALICE);
    assert.equal(r.obj.mode & K.S_IFMT, K.S_IFLNK, 'never followed');
    assert.equal(r.dir.ino, d.ino);
    const shut = await ref('shut');
    const e = await rejects(N.lookupIn(rfd, shut, 'x', ALICE), 'EACCES', 'statx');
    assert.equal(e.dir?.ino, shut.ino, 'the directory\'s attributes come with the refusal');
    assert.equal((await N.lookupIn(rfd, shut, 'x', N.self())).obj.uid, 0, 'the server itself may');
    await rejects(N.lookupIn(rfd, d, 'nope', ALICE), 'ENOENT');
    await rejects(N.lookupIn(rfd, d, '..', ALICE), 'EINVAL');
    await rejects(N.lookupIn(rfd, d, 'a/b', ALICE), 'EINVAL');
    await rejects(N.lookupIn(rfd, { ...d, ino: d.ino + 1n }, 'f', ALICE), 'ESTALE');
    await rejects(N.lookupIn(rfd, await ref('d/f'), 'x', ALICE), 'ENOTDIR');
  });

  test('readlinkOf: through the symlink\'s own descriptor; ENOENT on a file that is no symlink; ESTALE', async () => {
    const l = await ref('d/l');
    const r = await N.readlinkOf(rfd, l);
    assert.equal(r.target, '../../outside');
    assert.equal(r.obj.ino, l.ino);
    await rejects(N.readlinkOf(rfd, await ref('d/f')), 'ENOENT', 'readlinkat');
    await rejects(N.readlinkOf(rfd, { ...l, gen: 1n }), 'ESTALE');
    await rejects(N.readlinkOf(rfd, { rel: 'up', ino: 0n, gen: 0n }), 'ESTALE');
  });

  test('readdirOf: names and inode numbers by getdents64; read permission as the caller (EACCES); ENOTDIR on a symlink; ELOOP', async () => {
    const d = await ref('d');
    const r = await N.readdirOf(rfd, d);
    const want = (await fs.readdir(path.join(root, 'd'))).sort();
    assert.deepEqual([...r.names].sort(), want);
    for (let i = 0; i < r.names.length; i++) assert.equal(r.inos[i], (await fs.lstat(path.join(root, 'd', r.names[i]), { bigint: true })).ino);
    assert.equal(r.dir.ino, d.ino);
    await rejects(N.readdirOf(rfd, await ref('shut'), ALICE), 'EACCES', 'faccessat2');
    assert.deepEqual((await N.readdirOf(rfd, await ref('shut'), N.self())).names, ['x']);
    await rejects(N.readdirOf(rfd, await ref('d/f')), 'ENOTDIR');
    await rejects(N.readdirOf(rfd, { rel: 'up', ino: 0n, gen: 0n }), 'ENOTDIR', 'openat2');
    await rejects(N.readdirOf(rfd, { rel: 'loop/x', ino: 0n, gen: 0n }), 'ELOOP', 'openat2');
  });

  test('statNames: each name through the directory, a removed name as its errno; the directory checked', async () => {
    const d = await ref('d');
    const r = await N.statNames(rfd, d, ['f', 'gone', 'l', 'e']);
    assert.equal(r.list.length, 4);
    assert.equal((r.list[0] as N.Statx).ino, (await ref('d/f')).ino);
    assert.equal(r.list[1], -os.constants.errno.ENOENT);
    assert.equal(((r.list[2] as N.Statx).mode & K.S_IFMT), K.S_IFLNK);
    assert.equal(((r.list[3] as N.Statx).mode & K.S_IFMT), K.S_IFDIR);
    assert.deepEqual((await N.statNames(rfd, d, [])).list, []);
    await assert.rejects(N.statNames(rfd, d, ['a/b']), { code: 'EINVAL' });
    await rejects(N.statNames(rfd, { ...d, gen: 0n }, ['f']), 'ESTALE');
  });

  test('pwriteAs / ftruncateAs: the kernel clears set-ID bits for a caller, not for the server; EBADF; EINVAL', async () => {
    const p = path.join(root, 'suid');
    await fs.writeFile(p, 'x');
    await fs.chown(p, 2001, 2001);
    const fd = openSync(p, C.O_RDWR);
    try {
      await fs.chmod(p, 0o6755);
      let r = await N.pwriteAs(fd, Buffer.from('root'), 0, 'none', N.self());
      assert.equal(r.written, 4);
      assert.equal(r.obj!.mode & 0o7777, 0o6755, 'root (CAP_FSETID) keeps them');
      r = await N.pwriteAs(fd, Buffer.from('alice'), 4, 'data', ALICE);
      assert.deepEqual([r.written, Number(r.obj!.size), r.obj!.mode & 0o7777], [5, 9, 0o755]);
      assert.equal(await fs.readFile(p, 'utf8'), 'rootalice');
      await fs.chmod(p, 0o4755);
      const x = await N.ftruncateAs(fd, 2, BOB);
      assert.deepEqual([Number(x!.size), x!.mode & 0o7777], [2, 0o755]);
      await rejects(N.ftruncateAs(fd, -1, BOB), 'EINVAL');
    } finally {
      await N.close(fd);
    }
    await rejects(N.pwriteAs(fd, Buffer.from('x'), 0, 'file', ALICE), 'EBADF');
    const rd = openSync(p, C.O_RDONLY);
    await rejects(N.pwriteAs(rd, Buffer.from('x'), 0, 'none', ALICE), 'EBADF', 'pwrite');
    await N.close(rd);
    await assert.rejects(N.pwriteAs(1, 'x' as unknown as Buffer, 0, 'none', ALICE), TypeError);
  });
  test('preadAs: data and the statx in one job; short only at end of file; past EOF 0; EBADF; a write-only fd', async () => {
    const p = path.join(root, 'readme');
    const body = Buffer.alloc(200_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7 + 3) & 0xff;
    await fs.writeFile(p, body);
    const fd = openSync(p, C.O_RDONLY);
    try {
      const jobs = N.info().jobs;
      const buf = Buffer.alloc(65_536, 0xee);
      let r = await N.preadAs(fd, buf, 100_000, N.self());
      assert.equal(N.info().jobs - jobs, 1, 'one job for the data and the attributes');
      assert.equal(r.bytesRead, 65_536);
      assert.ok(buf.equals(body.subarray(100_000, 165_536)));
      assert.equal(Number(r.obj.size), 200_000);
      const st = await fs.stat(p, { bigint: true });
      assert.equal(r.obj.ino, st.ino);
      const tail = Buffer.alloc(65_536, 0xee);
      r = await N.preadAs(fd, tail, 180_000, N.self());
      assert.equal(r.bytesRead, 20_000, 'short only at the end');
      assert.ok(tail.subarray(0, 20_000).equals(body.subarray(180_000)));
      assert.equal(tail[20_000], 0xee, 'nothing written past what was read');
      r = await N.preadAs(fd, Buffer.alloc(10), 300_000, N.self());
      assert.equal(r.bytesRead, 0);
      r = await N.preadAs(fd, Buffer.alloc(0), 0, N.self());
      assert.equal(r.bytesRead, 0);
    } finally {
      await N.close(fd);
    }
    await rejects(N.preadAs(fd, Buffer.alloc(1), 0, N.self()), 'EBADF', 'pread');
    const wr = openSync(p, C.O_WRONLY);
    await rejects(N.preadAs(wr, Buffer.alloc(1), 0, N.self()), 'EBADF', 'pread');
    await N.close(wr);
    await assert.rejects(N.preadAs(1, 'x' as unknown as Buffer, 0, N.self()), TypeError);
  });
});
