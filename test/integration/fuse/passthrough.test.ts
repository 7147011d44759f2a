import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { until } from '../../helpers/services.js';
import { gvfsArgv } from '../../../src/cli/self.js';
import { checkReadsAt, dropPages, errCode, fuseSkip, run, startCachedMount, type CachedMount, type MountProc } from './mount-helper.js';

const MiB = 1 << 20;

/** A file's size now (-1: gone). */
function statSize(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return -1;
  }
}

/** Every file under `dir` whose name matches `re`. */
async function find(dir: string, re: RegExp): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile() && re.test(e.name)) out.push(path.join(e.parentPath ?? e.path, e.name));
  return out;
}

/**
 * A read-only `gvfs mount` with a disk cache hands the opens of files the
 * cache holds whole to the kernel (FUSE passthrough, frontends/fuse/
 * passthrough.ts): the bytes are one version of the file at a time, a change
 * on the server shows once its opens are closed, every change is refused, and the
 * kernel's rules for opens of one inode (one backing file; passed-through
 * and plain opens never at once) are kept whatever the order of opens.
 * That a read passed through is seen by changing a byte of the cache's whole
 * file behind the mount's back: only a read of that file shows it.
 */
describe('read-only mount: opens passed through to the disk cache\'s whole files', { skip: fuseSkip(), timeout: 300_000 }, () => {
  let exportDir: string;
  let cacheDir: string;
  let m: MountProc;
  let cm: CachedMount | undefined;

  before(async () => {
    cm = await startCachedMount('gvfs-passthrough-', ['--read-only', '--attr-timeout', '0']);
    ({ exportDir, cacheDir, m } = cm);
  });
  after(async () => {
    await cm?.close();
  });

  /** Read `name` through the mount until the cache holds it whole (the first read fills it; the whole file is made from its blocks). */
  const warm = async (name: string, data: Buffer) => {
    assert.ok((await fs.readFile(path.join(m.mnt, name))).equals(data), 'first read');
    await until(`the whole file of ${name}`, async () => {
      // (Each open asks for it: one made since the last open is found by the next.)
      const got = await fs.readFile(path.join(m.mnt, name));
      assert.ok(got.equals(data));
      // (The files here all differ in size.)
      for (const w of await find(cacheDir, /^w\./)) if ((await fs.stat(w).catch(() => undefined))?.size === data.length) return true;
      return false;
    });
  };

  test('a file the cache holds whole is read by the kernel from it: the same bytes, at any offset', async () => {
    const data = randomBytes(3 * MiB + 4321);
    await fs.writeFile(path.join(exportDir, 'big'), data);
    await warm('big', data);
    const f = path.join(m.mnt, 'big');
    const [whole] = await find(cacheDir, /^w\./);
    assert.equal((await fs.stat(whole)).size, data.length, 'the whole file holds the version\'s bytes');
    assert.ok((await fs.readFile(whole)).equals(data));
    // Behind the mount's back: one byte of the whole file changed. Only a read of that file shows it.
    const at = 2 * MiB + 17;
    const h = await fs.open(whole, 'r+');
    await h.write(Buffer.from([data[at] ^ 0xff]), 0, 1, at);
    await h.close();
    await dropPages(f);
    const seen = await fs.readFile(f);
    assert.equal(seen[at], data[at] ^ 0xff, 'the read went to the whole file (passthrough)');
    await fs.writeFile(whole, data); // restored (same inode)
    // What `gvfs cache stats` shows of it, apart from the blocks.
    const cs = JSON.parse((await run(process.execPath, gvfsArgv(['cache', 'stats', '--cache-dir', cacheDir, '--json']))).stdout);
    assert.deepEqual([cs.blocksOnDisk.wholeFiles, cs.blocksOnDisk.wholeBytes, cs.blocksOnDisk.blocks], [1, data.length, 4]);
    assert.match((await run(process.execPath, gvfsArgv(['cache', 'stats', '--cache-dir', cacheDir]))).stdout, /in 1 whole files \(for passthrough\)/);
    await dropPages(f);
    // cp (copy_file_range, then splice) and mmap read it too.
    const copy = path.join(cacheDir, '..', 'copy');
    await run('cp', [f, copy]);
    assert.ok((await fs.readFile(copy)).equals(data), 'cp');
    const mapped = (await run('python3', ['-c', 'import mmap,sys; f=open(sys.argv[1],"rb"); m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ); sys.stdout.write(m[2*1048576:2*1048576+64].hex())', f])).stdout;
    assert.equal(mapped, data.subarray(2 * MiB, 2 * MiB + 64).toString('hex'), 'mmap');
    await checkReadsAt(f, data, [[0, 1], [MiB - 3, 7], [123_456, 2 * MiB], [3 * MiB, 4321], [3 * MiB + 4000, 1000]]);
  });

  test('a one-block file passes through to its block at the second open', async () => {
    const data = randomBytes(100_000);
    await fs.writeFile(path.join(exportDir, 'small'), data);
    const f = path.join(m.mnt, 'small');
    assert.ok((await fs.readFile(f)).equals(data));
    await until('its block on disk', async () => (await find(cacheDir, /^0\./)).length >= 2);
    assert.ok((await fs.readFile(f)).equals(data));
  });

  test('a file with meta-data (gvfs meta gen) passes through too, once whole', async () => {
    const data = randomBytes(2 * MiB + 333);
    await fs.writeFile(path.join(exportDir, 'withmeta'), data);
    await run(process.execPath, gvfsArgv(['meta', 'gen', path.join(exportDir, 'withmeta'), '--root', exportDir]));
    await warm('withmeta', data);
    const f = path.join(m.mnt, 'withmeta');
    const w = (await find(cacheDir, /^w\./)).find((p) => p !== undefined && statSize(p) === data.length);
    assert.ok(w, 'its whole file');
    // Behind the mount's back again: only a passed-through read shows the changed byte.
    const h = await fs.open(w, 'r+');
    await h.write(Buffer.from([data[5] ^ 0xff]), 0, 1, 5);
    await h.close();
    await dropPages(f);
    assert.equal((await fs.readFile(f))[5], data[5] ^ 0xff, 'passed through');
    // While the order of reads is recorded (gvfs meta record), its opens are not handed over: read by the mount.
    await run(process.execPath, gvfsArgv(['meta', 'record', '--cache-dir', cacheDir, '--start']));
    try {
      await dropPages(f);
      assert.equal((await fs.readFile(f))[5], data[5], 'read through the mount while recording');
    } finally {
      await run(process.execPath, gvfsArgv(['meta', 'record', '--cache-dir', cacheDir, '--stop']));
    }
    await fs.writeFile(w, data);
  });

  test('every change is refused (EROFS), and nothing of the file changes', async () => {
    const f = path.join(m.mnt, 'big');
    assert.equal(await errCode(fs.open(f, 'r+')), 'EROFS');
    assert.equal(await errCode(fs.open(f, 'w')), 'EROFS');
    assert.equal(await errCode(fs.writeFile(path.join(m.mnt, 'new'), 'x')), 'EROFS');
    assert.equal(await errCode(fs.chmod(f, 0o600)), 'EROFS');
    assert.equal(await errCode(fs.truncate(f, 0)), 'EROFS');
    assert.equal((await fs.stat(path.join(exportDir, 'big'))).size, 3 * MiB + 4321);
  });

  test('opens of one file while others are held, in every order: none fails, each reads its version', async () => {
    const v1 = randomBytes(2 * MiB + 99);
    await fs.writeFile(path.join(exportDir, 'c'), v1);
    const f = path.join(m.mnt, 'c');
    // A plain open held (the file not yet whole): later opens cannot pass through, and do not fail.
    const plain = await fs.open(f, 'r');
    await warm('c', v1);
    const b1 = Buffer.alloc(v1.length);
    await plain.read(b1, 0, b1.length, 0);
    assert.ok(b1.equals(v1));
    await plain.close();
    // Now many at once, from nothing held: one backing for all.
    const many = await Promise.all(Array.from({ length: 8 }, () => fs.open(f, 'r')));
    const reads = await Promise.all(many.map(async (h, i) => {
      const b = Buffer.alloc(1000);
      await h.read(b, 0, 1000, i * 1000);
      return b;
    }));
    reads.forEach((b, i) => assert.ok(b.equals(v1.subarray(i * 1000, i * 1000 + 1000)), `open ${i}`));
    // The file changes on the server while they are held: every open reads one version at a time, so a new
    // open reads theirs (read and mmap alike: its backing is theirs), and the change shows once all are closed.
    const v2 = randomBytes(2 * MiB + 7);
    await fs.writeFile(path.join(exportDir, 'c'), v2);
    // (Written on the server's disk behind its back: its export learns of it within its attribute cache's 1 s.)
    await until('the server to show the new version', async () => (await fs.stat(f)).size === v2.length);
    const late = await fs.open(f, 'r');
    const b2 = Buffer.alloc(v1.length + 10);
    const { bytesRead } = await late.read(b2, 0, b2.length, 0);
    assert.equal(bytesRead, v1.length, 'the held version\'s length');
    assert.ok(b2.subarray(0, bytesRead).equals(v1), 'the held version\'s bytes');
    await late.close();
    for (const h of many) await h.close();
    // All closed: the next open reads the new version, and once it is whole, passes through to it.
    assert.ok((await fs.readFile(f)).equals(v2), 'the new version once all are closed');
    await warm('c', v2);
    assert.ok((await fs.readFile(f)).equals(v2));
  });

  test('O_DIRECT opens: never the first to pass through; beside one that does, their reads come to the mount', async () => {
    const f = path.join(m.mnt, 'big');
    const want = (await fs.readFile(path.join(exportDir, 'big'))).subarray(1, 101);
    // Unaligned, as a FUSE file allows (the cache's file opened O_DIRECT would refuse it: EINVAL).
    const direct = async () => Buffer.from((await run('python3', ['-c', 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY|os.O_DIRECT); sys.stdout.write(os.pread(fd, 100, 1).hex())', f])).stdout, 'hex');
    assert.ok((await direct()).equals(want), 'alone');
    const held = await fs.open(f, 'r');
    try {
      assert.ok((await direct()).equals(want), 'beside a passed-through open');
    } finally {
      await held.close();
    }
  });

  test('the mount counted the opens it handed over', async () => {
    await m.stop();
    const s = m.stats();
    assert.ok(s, 'stats logged');
    assert.ok(s.passthroughOpens >= 15, `passthrough opens: ${s.passthroughOpens}`);
    assert.ok(s.passthroughStaleOpens >= 1, `stale: ${s.passthroughStaleOpens}`);
    // Every open of a read-only mount is read-only: none is flushed at its close (FOPEN_NOFLUSH, also in the
    // answer of an open passed through, which the native layer builds itself).
    assert.equal(s.ops.flush ?? 0, 0, `FLUSHes: ${JSON.stringify(s.ops)}`);
  });
});

describe('read-only mount: a passed-through file evicted from the cache while open', { skip: fuseSkip(), timeout: 300_000 }, () => {
  let cm: CachedMount | undefined;
  before(async () => {
    cm = await startCachedMount('gvfs-passthrough-evict-', ['--read-only', '--attr-timeout', '0', '--cache-size', '32M']);
  });
  after(async () => {
    await cm?.close();
  });

  test('the open goes on reading its bytes; a later open reads them from the server', async () => {
    const { exportDir, cacheDir, m } = cm!;
    const a = randomBytes(4 * MiB + 3);
    await fs.writeFile(path.join(exportDir, 'a'), a);
    const f = path.join(m.mnt, 'a');
    assert.ok((await fs.readFile(f)).equals(a));
    await until('the whole file of a', async () => {
      assert.ok((await fs.readFile(f)).equals(a));
      return (await find(cacheDir, /^w\./)).length > 0;
    });
    const held = await fs.open(f, 'r');
    try {
      // Other files, each read twice (re-referenced, as a's were: scan resistance would keep a otherwise), until
      // a's whole file is evicted (deleted): which entries go first is the eviction policy's, so more pressure each
      // round rather than a fixed amount.
      let i = 0;
      await until('a to be evicted', async () => {
        const other = randomBytes(12 * MiB);
        const o = path.join(m.mnt, `o${i}`);
        await fs.writeFile(path.join(exportDir, `o${i++}`), other);
        for (let j = 0; j < 2; j++) {
          await dropPages(o);
          assert.ok((await fs.readFile(o)).equals(other));
        }
        return (await find(cacheDir, /^w\./)).length === 0;
      }, 120_000);
      await dropPages(f);
      const b = Buffer.alloc(a.length);
      const { bytesRead } = await held.read(b, 0, b.length, 0);
      assert.equal(bytesRead, a.length);
      assert.ok(b.equals(a), 'the held open: still its bytes');
    } finally {
      await held.close();
    }
    assert.ok((await fs.readFile(f)).equals(a), 'a later open');
  });
});
