import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { errCode, fuseSkip, run, runAs, spawnMount, type MountProc } from './mount-helper.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const GiB = 1024 ** 3;

/**
 * POSIX behaviour through `gvfs mount` (its own process) over `gvfs serve`
 * (in this process), driven by ordinary tools and node:fs. This process only
 * touches the mount asynchronously and one call at a time: its libuv pool
 * also serves the upstream export.
 */
describe('gvfs mount: POSIX behaviour', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let s: LocalServer;
  let m: MountProc;
  let mnt: string;
  const at = (...p: string[]) => path.join(mnt, ...p);
  const up = (...p: string[]) => path.join(s.exportDir, ...p);

  before(async () => {
    s = await startLocalServer();
    // Other users reach the mount through these (mkdtemp makes 0700).
    await fs.chmod(s.dir, 0o755);
    await fs.chmod(s.exportDir, 0o755);
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'));
    mnt = m.mnt;
  });
  after(async () => {
    await m?.stop();
    await s?.stop();
  });

  test('mounted as fuse.gvfs, with the statfs of the export', async () => {
    const mi = await fs.readFile('/proc/self/mountinfo', 'utf8');
    assert.match(mi, new RegExp(` ${mnt} .* - fuse\\.gvfs gvfs:127\\.0\\.0\\.1:${s.port}/ `));
    const sf = await fs.statfs(mnt);
    const local = await fs.statfs(s.exportDir);
    assert.ok(sf.blocks > 0 && sf.bsize > 0);
    assert.ok(Math.abs(sf.blocks * sf.bsize - local.blocks * local.bsize) < 0.01 * local.blocks * local.bsize);
    const df = (await run('df', ['-P', mnt])).stdout;
    assert.match(df, /gvfs:127\.0\.0\.1/);
  });

  test('create, write, read, cat, cp in and out, byte-identical', async () => {
    await fs.writeFile(at('hello.txt'), 'hello, world\n');
    assert.equal((await run('cat', [at('hello.txt')])).stdout, 'hello, world\n');
    assert.equal(await fs.readFile(up('hello.txt'), 'utf8'), 'hello, world\n');
    const data = randomBytes(10 * 1024 * 1024 + 17);
    await fs.writeFile(path.join(s.dir, 'src.bin'), data);
    await run('cp', [path.join(s.dir, 'src.bin'), at('copy.bin')]);
    assert.equal(sha(await fs.readFile(up('copy.bin'))), sha(data));
    await run('cp', [at('copy.bin'), path.join(s.dir, 'back.bin')]);
    await run('cmp', [path.join(s.dir, 'back.bin'), path.join(s.dir, 'src.bin')]);
    const ls = (await run('ls', ['-l', mnt])).stdout;
    assert.match(ls, /10485777 .* copy\.bin/);
  });

  test('open flags: O_EXCL on an existing file is EEXIST, O_TRUNC truncates, O_APPEND appends', async () => {
    await fs.writeFile(at('flags.txt'), 'a long first content');
    assert.equal(await errCode(fs.open(at('flags.txt'), 'wx')), 'EEXIST');
    const fh = await fs.open(at('fresh.txt'), 'wx');
    await fh.write('x');
    await fh.close();
    await fs.writeFile(at('flags.txt'), 'short');
    assert.equal(await fs.readFile(up('flags.txt'), 'utf8'), 'short');
    await fs.appendFile(at('flags.txt'), '+1');
    await run('sh', ['-c', `printf '+2' >> '${at('flags.txt')}'`]);
    const a = await fs.open(at('flags.txt'), 'a');
    await a.write('+3', 0); // position is ignored under O_APPEND
    await a.close();
    assert.equal(await fs.readFile(at('flags.txt'), 'utf8'), 'short+1+2+3');
  });

  test('O_EXCL race: of 8 processes creating one name, exactly one wins', async () => {
    const script = `import os,sys\ntry:\n  os.close(os.open(sys.argv[1], os.O_CREAT|os.O_EXCL|os.O_WRONLY))\n  print('won')\nexcept FileExistsError:\n  print('lost')`;
    const outs = await Promise.all(Array.from({ length: 8 }, () => run('python3', ['-c', script, at('race.lock')])));
    const won = outs.filter((o) => o.stdout.trim() === 'won').length;
    assert.equal(won, 1);
    assert.equal(outs.filter((o) => o.stdout.trim() === 'lost').length, 7);
  });

  test('truncate, ftruncate, fsync, close', async () => {
    await fs.writeFile(at('t.bin'), Buffer.alloc(100, 7));
    await fs.truncate(at('t.bin'), 10);
    assert.equal((await fs.stat(at('t.bin'))).size, 10);
    const fh = await fs.open(at('t.bin'), 'r+');
    await fh.truncate(3);
    await fh.write(Buffer.from('zz'), 0, 2, 8);
    await fh.sync();
    assert.equal((await fh.stat()).size, 10);
    await fh.close();
    assert.deepEqual(await fs.readFile(up('t.bin')), Buffer.from([7, 7, 7, 0, 0, 0, 0, 0, 0x7a, 0x7a]));
    await run('truncate', ['-s', '5', at('t.bin')]);
    assert.equal((await fs.stat(up('t.bin'))).size, 5);
  });

  test('rename, also onto an existing file and onto a file still open', async () => {
    await fs.writeFile(at('r1'), 'one');
    await fs.writeFile(at('r2'), 'two');
    await run('mv', [at('r1'), at('r2')]);
    assert.equal(await fs.readFile(at('r2'), 'utf8'), 'one');
    assert.equal(await errCode(fs.stat(at('r1'))), 'ENOENT');
    await fs.writeFile(at('r3'), 'three');
    const open = await fs.open(at('r2'), 'r');
    await fs.rename(at('r3'), at('r2'));
    const old = Buffer.alloc(10);
    const { bytesRead } = await open.read(old, 0, 10, 0);
    assert.equal(old.subarray(0, bytesRead).toString(), 'one');
    await open.close();
    assert.equal(await fs.readFile(at('r2'), 'utf8'), 'three');
    await fs.mkdir(at('rd/sub'), { recursive: true });
    await fs.writeFile(at('rd/sub/f'), 'in a dir');
    await fs.rename(at('rd'), at('rd2'));
    assert.equal(await fs.readFile(at('rd2/sub/f'), 'utf8'), 'in a dir');
    assert.equal(await errCode(fs.stat(at('rd/sub/f'))), 'ENOENT');
  });

  test('unlink of an open file: reads still work through the open descriptor', async () => {
    const data = randomBytes(300_000);
    await fs.writeFile(at('gone.bin'), data);
    const fh = await fs.open(at('gone.bin'), 'r');
    await fs.unlink(at('gone.bin'));
    assert.equal(await errCode(fs.stat(at('gone.bin'))), 'ENOENT');
    assert.ok(!(await fs.readdir(mnt)).includes('gone.bin'));
    const buf = Buffer.alloc(data.length);
    assert.equal((await fh.read(buf, 0, buf.length, 0)).bytesRead, data.length);
    assert.ok(buf.equals(data));
    await fh.close();
    // The hidden name libfuse kept the file under goes once it is closed: the kernel sends RELEASE after close()
    // returns, so wait for it (bounded) rather than look at once (a loaded machine saw it still there).
    const hidden = async () => (await fs.readdir(mnt)).filter((n) => n.startsWith('.fuse_hidden'));
    for (const end = Date.now() + 20_000; (await hidden()).length && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await hidden(), []);
  });

  test('mkdir, rmdir, and ENOENT / EEXIST / ENOTEMPTY / ENOTDIR', async () => {
    await fs.mkdir(at('d1'));
    assert.equal(await errCode(fs.mkdir(at('d1'))), 'EEXIST');
    await fs.writeFile(at('d1/f'), 'x');
    assert.equal(await errCode(fs.rmdir(at('d1'))), 'ENOTEMPTY');
    assert.equal(await errCode(fs.readFile(at('nope/f'))), 'ENOENT');
    assert.equal(await errCode(fs.readFile(at('nope'))), 'ENOENT');
    assert.equal(await errCode(fs.mkdir(at('d1/f/x'))), 'ENOTDIR');
    await fs.unlink(at('d1/f'));
    await fs.rmdir(at('d1'));
    assert.equal(await errCode(fs.stat(up('d1'))), 'ENOENT');
    assert.match((await errCode(run('rmdir', [at('d1')]))), /No such file/);
  });

  test('symlink, readlink, link (one inode, two names), ln', async () => {
    await fs.writeFile(at('target.txt'), 'linked');
    await fs.symlink('target.txt', at('sym'));
    assert.equal(await fs.readlink(at('sym')), 'target.txt');
    assert.equal(await fs.readFile(at('sym'), 'utf8'), 'linked');
    assert.equal((await fs.lstat(at('sym'))).isSymbolicLink(), true);
    await run('ln', ['-s', '/some/absolute/path', at('abs')]);
    assert.equal((await run('readlink', [at('abs')])).stdout.trim(), '/some/absolute/path');
    await run('ln', [at('target.txt'), at('hard')]);
    const [a, b] = [await fs.stat(at('target.txt')), await fs.stat(at('hard'))];
    assert.equal(a.ino, b.ino);
    assert.equal(b.nlink, 2);
    assert.equal((await fs.stat(up('hard'))).ino, (await fs.stat(up('target.txt'))).ino);
  });

  test('chmod, chown, utimens (atime and mtime apart), mkfifo', async () => {
    await fs.writeFile(at('attrs'), 'a');
    await fs.chmod(at('attrs'), 0o640);
    assert.equal((await fs.stat(at('attrs'))).mode & 0o7777, 0o640);
    assert.equal((await fs.stat(up('attrs'))).mode & 0o7777, 0o640);
    await fs.chown(at('attrs'), 1234, 5678);
    const st = await fs.stat(at('attrs'));
    assert.deepEqual([st.uid, st.gid], [1234, 5678]);
    await run('chown', [':4321', at('attrs')]);
    assert.deepEqual([(await fs.stat(up('attrs'))).uid, (await fs.stat(up('attrs'))).gid], [1234, 4321]);
    await fs.utimes(at('attrs'), 1_000_000, 2_000_000);
    const t = await fs.stat(at('attrs'));
    assert.equal(t.atimeMs, 1_000_000_000);
    assert.equal(t.mtimeMs, 2_000_000_000);
    assert.equal((await fs.stat(up('attrs'))).mtimeMs, 2_000_000_000);
    await run('touch', ['-d', '2020-02-03 04:05:06Z', at('attrs')]);
    assert.equal((await fs.stat(up('attrs'))).mtime.toISOString(), '2020-02-03T04:05:06.000Z');
    await run('mkfifo', [at('fifo')]);
    assert.ok((await fs.stat(at('fifo'))).isFIFO());
    assert.ok((await fs.stat(up('fifo'))).isFIFO());
  });

  test('offsets beyond 4 GiB, and sparse files stay sparse', async () => {
    const chunk = randomBytes(65536);
    const fh = await fs.open(at('huge.bin'), 'w');
    await fh.write(chunk, 0, chunk.length, 5 * GiB);
    await fh.close();
    const st = await fs.stat(at('huge.bin'));
    assert.equal(st.size, 5 * GiB + 65536);
    assert.ok(st.blocks * 512 < 4 * 1024 * 1024, `st_blocks ${st.blocks} should be small`);
    assert.ok((await fs.stat(up('huge.bin'))).blocks * 512 < 4 * 1024 * 1024);
    const back = Buffer.alloc(65536);
    const r = await fs.open(at('huge.bin'), 'r');
    await r.read(back, 0, back.length, 5 * GiB);
    const hole = Buffer.alloc(4096, 1);
    await r.read(hole, 0, hole.length, 3 * GiB);
    await r.close();
    assert.ok(back.equals(chunk));
    assert.ok(hole.equals(Buffer.alloc(4096)));
    // dd with a seek past 4 GiB and a read back with skip
    await run('dd', [`if=${path.join(s.dir, 'src.bin')}`, `of=${at('huge.bin')}`, 'bs=1M', 'count=1', `seek=${6 * 1024}`, 'conv=notrunc', 'status=none']);
    const out = path.join(s.dir, 'dd.out');
    await run('dd', [`if=${at('huge.bin')}`, `of=${out}`, 'bs=1M', 'count=1', `skip=${6 * 1024}`, 'status=none']);
    assert.equal(sha(await fs.readFile(out)), sha((await fs.readFile(path.join(s.dir, 'src.bin'))).subarray(0, 1 << 20)));
    await run('truncate', ['-s', '2G', at('sparse')]);
    assert.equal((await fs.stat(at('sparse'))).size, 2 * GiB);
    assert.equal((await fs.stat(up('sparse'))).blocks, 0);
    await fs.rm(at('huge.bin'));
  });

  test('a tree 30 deep', async () => {
    const parts = Array.from({ length: 30 }, (_, i) => `level${i}`);
    await run('mkdir', ['-p', at(...parts)]);
    await fs.writeFile(at(...parts, 'leaf.txt'), 'deep');
    assert.equal((await run('cat', [at(...parts, 'leaf.txt')])).stdout, 'deep');
    assert.equal(await fs.readFile(up(...parts, 'leaf.txt'), 'utf8'), 'deep');
    const found = (await run('find', [at('level0')])).stdout.trim().split('\n');
    assert.equal(found.length, 31);
    await run('rm', ['-r', at('level0')]);
    assert.equal(await errCode(fs.stat(up('level0'))), 'ENOENT');
  });

  test('names of 255 bytes work, 256 is ENAMETOOLONG', async () => {
    const ok = 'n'.repeat(251) + '.txt';
    await fs.writeFile(at(ok), 'long');
    assert.equal(await fs.readFile(at(ok), 'utf8'), 'long');
    assert.ok((await fs.readdir(mnt)).includes(ok));
    assert.equal(await errCode(fs.writeFile(at('n'.repeat(256)), 'x')), 'ENAMETOOLONG');
    assert.equal(await errCode(fs.mkdir(at('é'.repeat(128)))), 'ENAMETOOLONG'); // 256 bytes in UTF-8
    assert.equal(await errCode(fs.stat(at('n'.repeat(300)))), 'ENAMETOOLONG');
  });

  test('2,000 entries in one directory are all listed', async () => {
    const script = `import os,sys\nd=sys.argv[1]\nos.mkdir(d)\nfor i in range(2000):\n  open(os.path.join(d,'entry-%05d'%i),'w').close()`;
    await run('python3', ['-c', script, at('many')]);
    const names = await fs.readdir(at('many'));
    assert.equal(names.length, 2000);
    assert.deepEqual(names.sort(), Array.from({ length: 2000 }, (_, i) => `entry-${String(i).padStart(5, '0')}`));
    const ls = (await run('ls', ['-f', at('many')], { maxBuffer: 1 << 20 })).stdout.trim().split('\n');
    assert.equal(ls.filter((n) => n.startsWith('entry-')).length, 2000);
    assert.equal((await fs.readdir(up('many'))).length, 2000);
    await run('rm', ['-r', at('many')]);
  });

  test('EACCES for another user: mode bits are enforced for every caller', async () => {
    await fs.writeFile(at('secret'), 'root only', { mode: 0o600 });
    await fs.chmod(at('secret'), 0o600);
    await fs.writeFile(at('public'), 'everyone', { mode: 0o644 });
    assert.equal((await runAs(1000, 'cat', [at('public')])).stdout, 'everyone');
    assert.match(await errCode(runAs(1000, 'cat', [at('secret')])), /Permission denied/);
    assert.match(await errCode(runAs(1000, 'touch', [at('new-by-1000')])), /Permission denied/);
    assert.match(await errCode(runAs(1000, 'rm', ['-f', at('public')])), /Permission denied/);
    await fs.mkdir(at('open-dir'), { mode: 0o777 });
    await fs.chmod(at('open-dir'), 0o777);
    await runAs(1000, 'sh', ['-c', `echo by-1000 > '${at('open-dir', 'mine')}'`]);
    assert.equal(await fs.readFile(up('open-dir', 'mine'), 'utf8'), 'by-1000\n');
  });

  test('shared writable mmap, O_DIRECT reads and writes', async () => {
    await fs.writeFile(at('mm.bin'), Buffer.alloc(8192));
    const script = `import mmap,os,sys\nfd=os.open(sys.argv[1],os.O_RDWR)\nm=mmap.mmap(fd,8192,mmap.MAP_SHARED)\nm[4096:4101]=b'mmap!'\nm.flush()\nm.close()\nos.close(fd)`;
    await run('python3', ['-c', script, at('mm.bin')]);
    const back = await fs.readFile(up('mm.bin'));
    assert.equal(back.subarray(4096, 4101).toString(), 'mmap!');
    await run('dd', [`if=${path.join(s.dir, 'src.bin')}`, `of=${at('direct.bin')}`, 'bs=1M', 'count=4', 'oflag=direct', 'status=none']);
    await run('dd', [`if=${at('direct.bin')}`, `of=${path.join(s.dir, 'direct.out')}`, 'bs=1M', 'iflag=direct', 'status=none']);
    const src = (await fs.readFile(path.join(s.dir, 'src.bin'))).subarray(0, 4 << 20);
    assert.equal(sha(await fs.readFile(path.join(s.dir, 'direct.out'))), sha(src));
    assert.equal(sha(await fs.readFile(up('direct.bin'))), sha(src));
  });

  test('tar unpacks a tree onto the mount and reads it back identical (cp -a, diff -r)', async () => {
    const tree = path.join(s.dir, 'tree');
    for (let i = 0; i < 20; i++) {
      await fs.mkdir(path.join(tree, `d${i}`), { recursive: true });
      for (let j = 0; j < 10; j++) await fs.writeFile(path.join(tree, `d${i}`, `f${j}`), randomBytes(100 + i * 37 + j));
    }
    await fs.writeFile(path.join(tree, 'ro.txt'), 'read-only file', { mode: 0o444 });
    await fs.symlink('d0/f0', path.join(tree, 'link'));
    await run('tar', ['-C', path.join(s.dir), '-cf', path.join(s.dir, 'tree.tar'), 'tree']);
    await run('tar', ['-C', mnt, '-xf', path.join(s.dir, 'tree.tar')]);
    await run('diff', ['-r', '--no-dereference', tree, at('tree')]);
    await run('cp', ['-a', at('tree'), path.join(s.dir, 'tree-back')]);
    await run('diff', ['-r', '--no-dereference', tree, path.join(s.dir, 'tree-back')]);
    assert.equal((await fs.stat(at('tree/ro.txt'))).mode & 0o777, 0o444);
  });

  test('tar restores modification times (it sets the mtime alone, atime UTIME_OMIT)', async () => {
    const local = Math.floor((await fs.stat(path.join(s.dir, 'tree/d3/f4'))).mtimeMs / 1000) * 1000;
    assert.equal((await fs.stat(at('tree/d3/f4'))).mtimeMs, local);
    await run('touch', ['-m', '-d', '2001-01-01 00:00:00Z', at('tree/d3/f4')]);
    assert.equal((await fs.stat(at('tree/d3/f4'))).mtime.toISOString(), '2001-01-01T00:00:00.000Z');
  });

  test('stays responsive: a child reading while another writes', async () => {
    const writer = spawn('dd', ['if=/dev/zero', `of=${at('busy.bin')}`, 'bs=1M', 'count=32', 'status=none']);
    // Listened for at once: dd may be done before the reads are (waiting for 'exit' afterwards hung the test).
    const written = new Promise((r) => writer.once('exit', r));
    const reads = await Promise.all([run('ls', ['-l', mnt]), run('cat', [at('hello.txt')])]);
    assert.equal(reads[1].stdout, 'hello, world\n');
    await written;
    assert.equal((await fs.stat(at('busy.bin'))).size, 32 << 20);
  });
});

describe('gvfs mount: a read-only export', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let s: LocalServer;
  let m: MountProc;
  before(async () => {
    s = await startLocalServer({ readOnly: true });
    await fs.writeFile(path.join(s.exportDir, 'existing'), 'can read');
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'));
  });
  after(async () => {
    await m?.stop();
    await s?.stop();
  });

  test('reads work, every change is EROFS', async () => {
    assert.equal(await fs.readFile(path.join(m.mnt, 'existing'), 'utf8'), 'can read');
    assert.equal(await errCode(fs.writeFile(path.join(m.mnt, 'new'), 'x')), 'EROFS');
    assert.equal(await errCode(fs.mkdir(path.join(m.mnt, 'dir'))), 'EROFS');
    assert.equal(await errCode(fs.unlink(path.join(m.mnt, 'existing'))), 'EROFS');
    assert.equal(await errCode(fs.chmod(path.join(m.mnt, 'existing'), 0o600)), 'EROFS');
    // O_RDWR opens for reading (QEMU maps golden RAM files so, privately); any write through it is EROFS.
    const fh = await fs.open(path.join(m.mnt, 'existing'), 'r+');
    try {
      assert.equal(await errCode(fh.write(Buffer.from('x'), 0, 1, 0).then(() => fh.sync())), 'EROFS');
    } finally {
      await fh.close().catch(() => undefined);
    }
    assert.equal(await errCode(fs.open(path.join(m.mnt, 'existing'), 'w')), 'EROFS');
    assert.equal(await fs.readFile(path.join(s.exportDir, 'existing'), 'utf8'), 'can read');
    assert.match(await errCode(run('touch', [path.join(m.mnt, 'existing')])), /Read-only file system/);
  });
});
