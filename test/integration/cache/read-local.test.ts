import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { read as fsRead } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { LocalRead } from '../../../src/backend/capabilities.js';
import { StableHow } from '../../../src/nfs3/constants.js';
import { ROOT, readAll, startCacheChain, type CacheChain } from './helpers.js';

const pread = promisify(fsRead);
const MiB = 1 << 20;

/** The bytes a local answer names, read from its descriptors (then released). */
async function bytesOf(r: LocalRead): Promise<Buffer> {
  try {
    const parts: Buffer[] = [];
    for (const x of r.extents) {
      const b = Buffer.alloc(x.len);
      const { bytesRead } = await pread(x.fd, b, 0, x.len, x.pos);
      assert.equal(bytesRead, x.len, 'an extent is all there');
      parts.push(b);
    }
    const all = Buffer.concat(parts);
    assert.equal(all.length, r.count);
    return all;
  } finally {
    r.release(true);
  }
}

/**
 * CacheBackend.readLocal (backend/capabilities.ts LocalReads), below any
 * front end: its answer is what `read` would give now, or nothing — the
 * server's current version only (attributes checked as read checks them),
 * never blocks under unflushed writes, never past the server's end of file.
 */
describe('cache: reads answered as ranges of block files (readLocal)', { timeout: 120_000 }, () => {
  let c: CacheChain;
  before(async () => {
    c = await startCacheChain();
  });
  after(() => c.stop());

  test('cached blocks, then a change on the server: never the old version, then the new one', async () => {
    const file = path.join(c.exportDir, 'v.bin');
    const v1 = randomBytes(2 * MiB + 5);
    await fs.writeFile(file, v1);
    const s = await c.startSession({ cacheDir: path.join(c.base, 'cache-v'), cache: { attrTimeoutMs: 0 } });
    const fh = await s.lookup('v.bin');
    assert.equal(await s.cache.readLocal(ROOT, fh, 0, MiB), undefined, 'nothing cached yet: no local answer');
    assert.ok((await readAll(s.client, fh, v1.length)).equals(v1));
    await s.cache.settle();
    for (const [off, len] of [[0, MiB], [MiB - 7, 100], [123, 2 * MiB], [2 * MiB, 5]]) {
      const r = await s.cache.readLocal(ROOT, fh, off, len);
      assert.ok(r, `${off}+${len}: local`);
      // (At most 1 MiB per answer, as read.)
      const want = v1.subarray(off, off + Math.min(len, MiB));
      assert.equal(r.count, want.length);
      assert.equal(r.eof, off + want.length >= v1.length);
      assert.ok((await bytesOf(r)).equals(want), `${off}+${len}: the bytes read would give`);
    }
    const past = await s.cache.readLocal(ROOT, fh, v1.length, 10);
    assert.equal(past, undefined, 'at the end of file: read answers that');
    // Same size, new bytes, behind the proxies' back.
    const v2 = randomBytes(v1.length);
    await fs.writeFile(file, v2);
    const r = await s.cache.readLocal(ROOT, fh, 0, MiB);
    if (r) assert.ok((await bytesOf(r)).equals(v2.subarray(0, MiB)), 'after a change: the new bytes or no local answer');
    assert.ok((await readAll(s.client, fh, v2.length)).equals(v2));
    await s.cache.settle();
    const r2 = await s.cache.readLocal(ROOT, fh, MiB, MiB);
    assert.ok(r2, 'the new version is cached');
    assert.ok((await bytesOf(r2)).equals(v2.subarray(MiB, 2 * MiB)));
    await s.stop();
  });

  test('small blocks: an answer of more pieces than the native layer takes is left to read; fewer are local', async () => {
    const file = path.join(c.exportDir, 's.bin');
    const data = randomBytes(MiB);
    await fs.writeFile(file, data);
    const s = await c.startSession({ cacheDir: path.join(c.base, 'cache-s'), cache: { blockSize: 4096 } });
    const fh = await s.lookup('s.bin');
    assert.ok((await readAll(s.client, fh, data.length)).equals(data));
    await s.cache.settle();
    assert.equal(await s.cache.readLocal(ROOT, fh, 0, MiB), undefined, '256 blocks of 4 KiB: read answers it');
    assert.equal(await s.cache.readLocal(ROOT, fh, 100, 64 * 4096), undefined, '65 blocks (unaligned): the same');
    const r = await s.cache.readLocal(ROOT, fh, 100, 63 * 4096);
    assert.ok(r && r.extents.length === 64, `64 blocks: local (${r?.extents.length})`);
    assert.ok((await bytesOf(r)).equals(data.subarray(100, 100 + 63 * 4096)));
    await s.stop();
  });

  test('write-back bytes over a range: no local answer there; elsewhere, the cached blocks', async () => {
    const file = path.join(c.exportDir, 'w.bin');
    const data = randomBytes(3 * MiB);
    await fs.writeFile(file, data);
    const s = await c.startSession({ cacheDir: path.join(c.base, 'cache-w'), cache: { writeBack: true } });
    const fh = await s.lookup('w.bin');
    assert.ok((await readAll(s.client, fh, data.length)).equals(data));
    await s.cache.settle();
    const patch = randomBytes(1000);
    await s.client.write(ROOT, fh, MiB + 10, patch, StableHow.UNSTABLE);
    assert.equal(await s.cache.readLocal(ROOT, fh, MiB, MiB), undefined, 'under unflushed writes: read overlays them');
    assert.equal(await s.cache.readLocal(ROOT, fh, MiB - 100, 1000), undefined, 'overlapping them: the same');
    const r = await s.cache.readLocal(ROOT, fh, 2 * MiB, MiB);
    assert.ok(r, 'a range without unflushed bytes');
    assert.ok((await bytesOf(r)).equals(data.subarray(2 * MiB)));
    await s.stop();
  });

  test('a file grown by unflushed writes: no local answer past the end on the server (read gives those bytes)', async () => {
    const file = path.join(c.exportDir, 'g.bin');
    const data = randomBytes(MiB + 5); // its last block: 5 bytes
    await fs.writeFile(file, data);
    const s = await c.startSession({ cacheDir: path.join(c.base, 'cache-g'), cache: { writeBack: true } });
    const fh = await s.lookup('g.bin');
    assert.ok((await readAll(s.client, fh, data.length)).equals(data));
    await s.cache.settle();
    const r = await s.cache.readLocal(ROOT, fh, MiB, 100);
    assert.ok(r && r.count === 5 && r.eof, 'before the write: the 5 bytes, end of file');
    assert.ok((await bytesOf(r)).equals(data.subarray(MiB)));
    await s.client.write(ROOT, fh, 2 * MiB, Buffer.from('tail'), StableHow.UNSTABLE);
    assert.equal(await s.cache.readLocal(ROOT, fh, MiB, 100), undefined, 'the 5 bytes and zeros after them: read gives those, not the block file');
    assert.equal(await s.cache.readLocal(ROOT, fh, MiB - 10, 100), undefined, 'the same from the block before');
    await s.stop();
  });
});
