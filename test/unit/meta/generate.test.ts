import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  blockCount,
  blockHash,
  DEFAULT_BLOCK,
  decodeMeta,
  encodeMeta,
  HASH_LEN,
  hashOf,
  isZero,
  MAX_BLOCK,
  META_DIR,
  zeroBlocks,
  type FileMeta,
} from '../../../src/meta/format.js';
import { allZero, generateMeta, metaPathOf, metaRootOf, readMetaOf, versionOf, writeMetaFile } from '../../../src/meta/generate.js';
import { requirePrereq } from '../../helpers/prereq.js';

/** A fresh temp dir, removed when the test ends. */
async function tempDir(t: TestContext): Promise<string> {
  const d = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-meta-gen-')));
  t.after(() => fs.rm(d, { recursive: true, force: true }));
  return d;
}

/** A temp export root that already has its `.gvfs-meta/`. */
async function exportRoot(t: TestContext): Promise<string> {
  const d = await tempDir(t);
  await fs.mkdir(path.join(d, META_DIR));
  return d;
}

/** Blocks of `bs` bytes: null is an all-zero block, a number a block with that byte at one place. */
function blocks(bs: number, spec: Array<number | null | Buffer>): Buffer {
  return Buffer.concat(
    spec.map((s) => {
      if (Buffer.isBuffer(s)) return s;
      const b = Buffer.alloc(bs);
      if (s !== null) b[s % bs] = 0x5a;
      return b;
    }),
  );
}

/** What meta-data must say about `data`, computed here independently of generate.ts. */
function expectBlocks(meta: FileMeta, data: Buffer): void {
  const bs = meta.blockSize;
  const n = Math.ceil(data.length / bs);
  assert.equal(meta.size, data.length);
  assert.equal(blockCount(meta), n);
  assert.equal(meta.zeroMap.length, Math.ceil(n / 8));
  assert.equal(meta.hashes.length, n * HASH_LEN);
  for (let i = 0; i < n; i++) {
    const blk = data.subarray(i * bs, Math.min(data.length, (i + 1) * bs));
    const zero = blk.every((x) => x === 0);
    assert.equal(isZero(meta, i), zero, `block ${i} zero`);
    assert.deepEqual(hashOf(meta, i), zero ? Buffer.alloc(HASH_LEN) : blockHash(blk), `block ${i} hash`);
  }
  // Bits past the last block stay clear.
  for (let i = n; i < meta.zeroMap.length * 8; i++) assert.equal(isZero(meta, i), false, `padding bit ${i}`);
}

async function noTempLeft(root: string): Promise<void> {
  const names = await fs.readdir(path.join(root, META_DIR));
  assert.deepEqual(
    names.filter((n) => n.endsWith('.tmp')),
    [],
  );
}

test('zero blocks are detected exactly, hashes are blockHash of each block, a short last block included', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  const bs = 4096;
  for (const [name, tail] of [
    ['zero-tail', Buffer.alloc(100)],
    ['data-tail', Buffer.from([0, 0, 0, 1])],
    ['no-tail', Buffer.alloc(0)],
  ] as const) {
    // data, zero, a single non-zero byte at the block's last position, zero, random, then the tail.
    const data = Buffer.concat([blocks(bs, [0, null, bs - 1, null]), randomBytes(bs), tail]);
    const file = path.join(root, name);
    await fs.writeFile(file, data);
    const r = await generateMeta(file, { blockSize: bs });
    expectBlocks(r.meta, data);
    const zero = [1, 3, ...(name === 'zero-tail' ? [5] : [])];
    assert.equal(zeroBlocks(r.meta), zero.length, name);
    for (const i of zero) assert.ok(isZero(r.meta, i), `${name}: block ${i}`);
    assert.equal(isZero(r.meta, 2), false, 'one non-zero byte makes a data block');
    assert.equal(r.meta.blockSize, bs);
    assert.equal(r.meta.hint, 'ondemand');
    assert.deepEqual(r.meta.order, []);
    assert.equal(r.meta.source, name);
    assert.equal(r.file, file);
    // What was written is what was returned.
    assert.deepEqual(decodeMeta(await fs.readFile(r.metaPath)), r.meta);
  }
  await noTempLeft(root);
});

test('the meta-data names the file\'s version and lives at .gvfs-meta/<fileid>.gvmeta', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  const file = path.join(root, 'f');
  await fs.writeFile(file, randomBytes(10_000));
  const before = Date.now();
  const r = await generateMeta(file, { blockSize: 4096 });
  const v = await versionOf(file);
  assert.equal(r.meta.fileid, v.fileid);
  assert.equal(r.meta.size, v.size);
  assert.deepEqual(r.meta.mtime, v.mtime);
  assert.deepEqual(r.meta.ctime, v.ctime);
  assert.equal(r.metaPath, path.join(root, META_DIR, `${v.fileid}.gvmeta`));
  assert.equal(await metaPathOf(file), r.metaPath);
  assert.ok(r.meta.created >= before && r.meta.created <= Date.now());
});

test('the default block size is DEFAULT_BLOCK; bad block sizes are refused', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  const file = path.join(root, 'f');
  await fs.writeFile(file, Buffer.alloc(3 * DEFAULT_BLOCK + 1, 1));
  const r = await generateMeta(file);
  assert.equal(r.meta.blockSize, DEFAULT_BLOCK);
  assert.equal(blockCount(r.meta), 4);
  for (const blockSize of [0, 1000, 4095, 4097, 6144, MAX_BLOCK + 4096]) {
    await assert.rejects(generateMeta(file, { blockSize }), /block size must be a multiple of 4096/, String(blockSize));
  }
});

test('a file of size 0 has no blocks', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  const file = path.join(root, 'empty');
  await fs.writeFile(file, '');
  const r = await generateMeta(file);
  assert.equal(r.meta.size, 0);
  assert.equal(blockCount(r.meta), 0);
  assert.equal(r.meta.zeroMap.length, 0);
  assert.equal(r.meta.hashes.length, 0);
  assert.equal(zeroBlocks(r.meta), 0);
  assert.deepEqual((await readMetaOf(file))?.meta, r.meta);
});

test('a sparse file made with ftruncate: holes are zero blocks, written blocks are not', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  const file = path.join(root, 'sparse');
  const bs = 64 << 10;
  const size = 16 * bs + 1000; // a short last block, also a hole
  const h = await fs.open(file, 'w');
  try {
    await h.truncate(size);
    await h.write(Buffer.from('x'), 0, 1, 5 * bs + 123);
    await h.write(Buffer.from('yy'), 0, 2, 9 * bs - 1); // the last byte of block 8 and the first of block 9
  } finally {
    await h.close();
  }
  const r = await generateMeta(file, { blockSize: bs });
  assert.equal(r.meta.size, size);
  assert.equal(blockCount(r.meta), 17);
  const data = Array.from({ length: 17 }, (_, i) => i).filter((i) => !isZero(r.meta, i));
  assert.deepEqual(data, [5, 8, 9]);
  expectBlocks(r.meta, await fs.readFile(file));
});

test('every zero-map and hash matches for random block layouts', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  for (let k = 0; k < 6; k++) {
    const bs = 4096 * (1 + (k % 3));
    const n = 1 + k * 5;
    const spec = Array.from({ length: n }, (_, i) => ((i * 7 + k) % 3 === 0 ? null : (i * 131 + k) % bs));
    const data = Buffer.concat([blocks(bs, spec), Buffer.alloc(k * 301, k % 2)]);
    const file = path.join(root, `r${k}`);
    await fs.writeFile(file, data);
    expectBlocks((await generateMeta(file, { blockSize: bs })).meta, data);
  }
});

test('--root creates .gvfs-meta and the meta-data goes there', { timeout: 60_000 }, async (t) => {
  const root = await tempDir(t);
  await fs.mkdir(path.join(root, 'sub'));
  const file = path.join(root, 'sub', 'f');
  await fs.writeFile(file, 'hello');
  await assert.rejects(fs.stat(path.join(root, META_DIR)), { code: 'ENOENT' });
  const r = await generateMeta(file, { root });
  assert.ok((await fs.stat(path.join(root, META_DIR))).isDirectory());
  assert.equal(path.dirname(r.metaPath), path.join(root, META_DIR));
  assert.equal(r.meta.source, path.join('sub', 'f'));
  assert.deepEqual((await readMetaOf(file))?.meta, r.meta, 'found again without --root');
  // A relative root works too.
  const r2 = await generateMeta(file, { root: path.relative(process.cwd(), root) });
  assert.equal(r2.metaPath, r.metaPath);
});

test('metaRootOf finds the nearest ancestor with a .gvfs-meta directory', { timeout: 60_000 }, async (t) => {
  const top = await exportRoot(t);
  const inner = path.join(top, 'a');
  await fs.mkdir(path.join(inner, 'b', 'c'), { recursive: true });
  await fs.mkdir(path.join(inner, META_DIR));
  // A regular file named .gvfs-meta does not make a root.
  await fs.writeFile(path.join(inner, 'b', META_DIR), 'not a directory');
  await fs.mkdir(path.join(top, 'x'));
  assert.equal(await metaRootOf(path.join(inner, 'b', 'c', 'f')), inner);
  assert.equal(await metaRootOf(path.join(inner, 'b', 'f')), inner);
  assert.equal(await metaRootOf(path.join(inner, 'f')), inner);
  assert.equal(await metaRootOf(path.join(top, 'x', 'f')), top);
  assert.equal(await metaRootOf(path.join(top, 'f')), top);
  // A given root wins, resolved.
  assert.equal(await metaRootOf(path.join(inner, 'f'), path.relative(process.cwd(), top)), top);
});

test('metaRootOf without any .gvfs-meta above errors clearly', { timeout: 60_000 }, async (t) => {
  const d = await tempDir(t);
  for (let dir = d; ; dir = path.dirname(dir)) {
    if (await fs.stat(path.join(dir, META_DIR)).catch(() => undefined)) {
      const why = requirePrereq([`no ${META_DIR} in ${dir} (a test directory above which none exists)`, false]);
      return t.skip(why || undefined);
    }
    if (path.dirname(dir) === dir) break;
  }
  const file = path.join(d, 'f');
  await fs.writeFile(file, 'x');
  await assert.rejects(metaRootOf(file), (e: Error) => {
    assert.match(e.message, /no \.gvfs-meta directory above/);
    assert.ok(e.message.includes(file), 'names the file');
    assert.match(e.message, /--root/);
    return true;
  });
  await assert.rejects(generateMeta(file), /no \.gvfs-meta directory above/);
  await assert.rejects(readMetaOf(file), /no \.gvfs-meta directory above/);
});

test('a file outside the root is refused by metaPathOf and readMetaOf', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  const other = await tempDir(t);
  const file = path.join(other, 'f');
  await fs.writeFile(file, 'x');
  await assert.rejects(metaPathOf(file, root), /is not inside the export/);
  await assert.rejects(readMetaOf(file, root), /is not inside the export/);
  // A sibling whose name starts like the root is still outside.
  const sibling = `${root}-x`;
  await fs.mkdir(sibling);
  t.after(() => fs.rm(sibling, { recursive: true, force: true }));
  await fs.writeFile(path.join(sibling, 'f'), 'x');
  await assert.rejects(metaPathOf(path.join(sibling, 'f'), root), /is not inside the export/);
  // generateMeta refuses it too (it used to write meta-data with source "../other/f").
  await assert.rejects(generateMeta(file, { root }), /is not inside the export/);
  assert.deepEqual(await fs.readdir(path.join(root, '.gvfs-meta')).catch(() => []), []);
});

test('a file whose name starts with ".." inside the export is inside it, and keeps its order on regeneration', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  const file = path.join(root, '..notes');
  await fs.writeFile(file, Buffer.alloc(3 * 4096, 1));
  const g = await generateMeta(file, { root, blockSize: 4096, hint: 'prefetch' });
  assert.equal(g.meta.source, '..notes');
  assert.equal(await metaPathOf(file, root), g.metaPath);
  const m = (await readMetaOf(file, root))!.meta;
  m.order = [2, 0];
  await writeMetaFile(g.metaPath, encodeMeta(m));
  const again = await generateMeta(file, { root, blockSize: 4096 });
  assert.deepEqual(again.meta.order, [2, 0]);
  assert.equal(again.meta.hint, 'prefetch');
});

test('a regenerated file keeps its recorded order and hint', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  const file = path.join(root, 'f');
  const bs = 4096;
  await fs.writeFile(file, blocks(bs, [1, 2, null, 3, 4, 5]));
  const first = await generateMeta(file, { blockSize: bs });
  // Record an order and hint, as SET_ORDER would.
  await writeMetaFile(first.metaPath, encodeMeta({ ...first.meta, order: [4, 0, 5, 1], hint: 'prefetch' }));

  // The file changes in place (same inode): new version, new hashes, order and hint kept.
  const h = await fs.open(file, 'r+');
  await h.write(Buffer.from('changed'), 0, 7, 10);
  await h.close();
  const second = await generateMeta(file, { blockSize: bs });
  assert.equal(second.metaPath, first.metaPath);
  assert.deepEqual(second.meta.order, [4, 0, 5, 1]);
  assert.equal(second.meta.hint, 'prefetch');
  assert.notDeepEqual(hashOf(second.meta, 0), hashOf(first.meta, 0));
  expectBlocks(second.meta, await fs.readFile(file));

  // The file shrinks: entries past its end are dropped, the rest keep their order.
  await fs.truncate(file, 3 * bs + 1);
  const third = await generateMeta(file, { blockSize: bs });
  assert.deepEqual(third.meta.order, [0, 1]);
  assert.equal(third.meta.hint, 'prefetch');

  // An explicit hint wins; the order stays.
  const fourth = await generateMeta(file, { blockSize: bs, hint: 'whole' });
  assert.equal(fourth.meta.hint, 'whole');
  assert.deepEqual(fourth.meta.order, [0, 1]);

  // keepOrder false drops the order but keeps the hint.
  const fifth = await generateMeta(file, { blockSize: bs, keepOrder: false });
  assert.deepEqual(fifth.meta.order, []);
  assert.equal(fifth.meta.hint, 'whole');
  await noTempLeft(root);
});

test('a different block size drops the recorded order (its indexes mean other blocks)', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  const file = path.join(root, 'f');
  await fs.writeFile(file, Buffer.alloc(8 * 8192, 1));
  const first = await generateMeta(file, { blockSize: 4096 });
  await writeMetaFile(first.metaPath, encodeMeta({ ...first.meta, order: [3, 1], hint: 'prefetch' }));
  const again = await generateMeta(file, { blockSize: 8192 });
  assert.deepEqual(again.meta.order, []);
  assert.equal(again.meta.hint, 'prefetch', 'the hint is kept either way');
});

test('unreadable old meta-data is replaced, not fatal', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  const file = path.join(root, 'f');
  await fs.writeFile(file, Buffer.alloc(5000, 2));
  const first = await generateMeta(file, { blockSize: 4096, hint: 'whole' });
  await fs.writeFile(first.metaPath, 'garbage');
  await assert.rejects(readMetaOf(file), { name: 'MetaFormatError' });
  const again = await generateMeta(file, { blockSize: 4096 });
  assert.equal(again.meta.hint, 'ondemand');
  assert.deepEqual((await readMetaOf(file))?.meta, again.meta);
});

test('readMetaOf returns undefined when the file has no meta-data', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  const file = path.join(root, 'f');
  await fs.writeFile(file, 'data');
  assert.equal(await readMetaOf(file), undefined);
  assert.equal(await readMetaOf(file, root), undefined);
  const r = await generateMeta(file);
  assert.deepEqual(await readMetaOf(file, root), { metaPath: r.metaPath, meta: r.meta });
});

test('a directory is not a regular file', { timeout: 60_000 }, async (t) => {
  const root = await exportRoot(t);
  await fs.mkdir(path.join(root, 'd'));
  await assert.rejects(generateMeta(path.join(root, 'd')), /is not a regular file/);
});

test('versionOf matches fs.stat: inode, size, mtime and ctime to the nanosecond', { timeout: 60_000 }, async (t) => {
  const d = await tempDir(t);
  const file = path.join(d, 'f');
  await fs.writeFile(file, randomBytes(12345));
  // A time with nanoseconds that a double-precision second would lose.
  await fs.utimes(file, 1_700_000_000.123456, 1_700_000_000.987654);
  const st = await fs.stat(file, { bigint: true });
  const v = await versionOf(file);
  assert.equal(v.fileid, st.ino);
  assert.equal(v.size, 12345);
  assert.equal(BigInt(v.mtime.sec) * 1_000_000_000n + BigInt(v.mtime.nsec), st.mtimeNs);
  assert.equal(BigInt(v.ctime.sec) * 1_000_000_000n + BigInt(v.ctime.nsec), st.ctimeNs);
  assert.equal(v.mtime.sec, 1_700_000_000);
  assert.ok(v.mtime.nsec >= 0 && v.mtime.nsec < 1e9 && v.ctime.nsec >= 0 && v.ctime.nsec < 1e9);
  // A change moves ctime; the version is no longer the same.
  await fs.chmod(file, 0o600);
  const st2 = await fs.stat(file, { bigint: true });
  const v2 = await versionOf(file);
  assert.equal(BigInt(v2.ctime.sec) * 1_000_000_000n + BigInt(v2.ctime.nsec), st2.ctimeNs);
});

test('allZero compares against zeros up to the largest block', { timeout: 60_000 }, () => {
  assert.ok(allZero(Buffer.alloc(0)));
  assert.ok(allZero(Buffer.alloc(MAX_BLOCK)));
  const b = Buffer.alloc(MAX_BLOCK);
  b[MAX_BLOCK - 1] = 1;
  assert.equal(allZero(b), false);
  assert.equal(allZero(Buffer.from([0, 0, 0x80])), false);
});
