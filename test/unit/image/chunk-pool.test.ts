import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { compress } from 'zstd-napi';
import { ChunkPool } from '../../../src/image/chunk-pool.js';
import { ChunkError, decodeChunk, encodeChunk } from '../../../src/image/layout.js';
import { Codec, pack, unpack } from '../../../src/meta/compress.js';
import { blockHash } from '../../../src/meta/format.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** CPU time of this process's main thread (the event loop's), in ms: the first field of its schedstat (ns). */
const mainThreadCpuMs = () => Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
/** Compressible but not trivial: random words repeated with variation (zstd has real work to do). */
function sample(n: number, seed: number): Buffer {
  const words = Array.from({ length: 64 }, () => randomBytes(8 + (seed % 7)));
  const out = Buffer.alloc(n);
  for (let off = 0, i = seed; off < n; i++) off += words[(i * 2654435761) % 64 >>> 0].copy(out, off);
  return out;
}

describe('chunk pool: zstd + SHA-256 off the event loop', { timeout: 180_000 }, () => {
  const pool = new ChunkPool({ threads: 2 });
  after(() => pool.close());

  test('decodes to the exact bytes; verify and verifyRaw accept the right chunk', async () => {
    const raws = Array.from({ length: 24 }, (_, i) => sample(1000 + i * 11_000, i));
    // Stored forms as views into one larger buffer (as they arrive inside an RPC record).
    const stored = raws.map((r) => encodeChunk(r));
    const record = Buffer.concat(stored.map((s) => Buffer.concat([randomBytes(7), s])));
    let off = 0;
    const views = stored.map((s) => record.subarray((off += 7 + s.length) - s.length, off));
    const got = await Promise.all(views.map((v, i) => pool.decode(v, sha(raws[i]), raws[i].length)));
    got.forEach((g, i) => assert.ok(g.equals(raws[i]), `chunk ${i} differs`));
    await Promise.all(views.map((v, i) => pool.verify(v, sha(raws[i]), raws[i].length)));
    await Promise.all(raws.map((r) => pool.verifyRaw(r, sha(r), r.length)));
    // The caller's record is untouched (the pool works on copies).
    assert.ok(record.subarray(7, 7 + stored[0].length).equals(stored[0]));
  });

  test('refuses altered content, a wrong length, a lying frame and garbage, with ChunkError', async () => {
    const raw = sample(70_000, 3);
    const good = encodeChunk(raw);
    const h = sha(raw);
    const flipped = Buffer.from(raw);
    flipped[100] ^= 1;
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['altered content', () => pool.decode(encodeChunk(flipped), h, raw.length)],
      ['wrong length', () => pool.verify(good, h, raw.length + 1)],
      // A frame declaring a large size for a tiny chunk (a decompression bomb) is refused before decoding.
      ['lying frame', () => pool.decode(Buffer.concat([Buffer.from([1]), compress(Buffer.alloc(8 << 20))]), h, raw.length)],
      ['unknown codec', () => pool.decode(Buffer.concat([Buffer.from([9]), raw]), h, raw.length)],
      ['empty', () => pool.verify(Buffer.alloc(0), h, raw.length)],
      ['raw altered', () => pool.verifyRaw(flipped, h, raw.length)],
    ];
    for (const [what, p] of cases) await assert.rejects(p(), (e: Error) => e instanceof ChunkError, what);
    // The pool still serves after refusals.
    assert.ok((await pool.decode(good, h, raw.length)).equals(raw));
  });

  test('the event loop stays free: its CPU time is a fraction of decoding the same chunks synchronously', async () => {
    const raws = Array.from({ length: 48 }, (_, i) => sample(1 << 20, 100 + i));
    const stored = raws.map((r) => encodeChunk(r));
    const hashes = raws.map(sha);
    // Warm up both paths (thread start, JIT).
    await pool.decode(stored[0], hashes[0], raws[0].length);
    decodeChunk(stored[0], hashes[0], raws[0].length);

    // The event loop thread's own CPU time, not its busy wall time: on a loaded machine a thread waiting for
    // a CPU counts as busy, and the pool's threads compete with it (0.53 of the synchronous time once, beside
    // another test run).
    const cpu0 = mainThreadCpuMs();
    for (let i = 0; i < raws.length; i++) decodeChunk(stored[i], hashes[i], raws[i].length);
    const syncCpu = mainThreadCpuMs() - cpu0;

    // Four calls at a time, like a server with a few requests in flight.
    const cpu1 = mainThreadCpuMs();
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < raws.length; i = next++) await pool.decode(stored[i], hashes[i], raws[i].length);
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    const poolCpu = mainThreadCpuMs() - cpu1;
    assert.ok(poolCpu < syncCpu * 0.5, `event loop thread's CPU ${poolCpu.toFixed(1)} ms through the pool vs ${syncCpu.toFixed(1)} ms synchronous`);
  });

  test('bulk transfers: pack and unpack on the pool give what meta/compress.ts gives; a wrong length is refused', async () => {
    for (const data of [sample(1 << 20, 7), Buffer.alloc(300_000), randomBytes(100_000)]) {
      const p = await pool.pack(data, Codec.ZSTD, 1);
      const ref = pack(data, Codec.ZSTD, 1);
      assert.equal(p.codec, ref.codec);
      assert.ok(p.data.equals(ref.data), 'same frames as the synchronous pack');
      assert.ok((await pool.unpack(p.data, p.codec, data.length)).equals(unpack(ref.data, ref.codec, data.length)));
      assert.ok((await pool.unpack(p.data, p.codec, data.length)).equals(data));
      await assert.rejects(pool.unpack(p.data, p.codec, data.length - 1), /expected/);
      // With block hashes (the meta-data check of bulk transfers): one per 64 KiB block, the last one short.
      const h = await pool.unpackHashed(p.data, p.codec, data.length, 65536);
      assert.ok(h.raw.equals(data));
      const want = [];
      for (let at = 0; at < data.length; at += 65536) want.push(blockHash(data.subarray(at, at + 65536)));
      assert.ok(h.hashes.equals(Buffer.concat(want)));
    }
  });

  test('one thread, one request at a time: every request completes, in order of submission', async () => {
    const p1 = new ChunkPool({ threads: 1, depth: 1 });
    try {
      const raws = Array.from({ length: 40 }, (_, i) => sample(5000 + i, i));
      const done: number[] = [];
      await Promise.all(raws.map((r, i) => p1.decode(encodeChunk(r), sha(r), r.length).then((g) => (assert.ok(g.equals(r)), done.push(i)))));
      assert.deepEqual(done, raws.map((_, i) => i));
    } finally {
      await p1.close();
    }
  });

  test('a closed pool refuses new work', async () => {
    const p2 = new ChunkPool({ threads: 1 });
    const r = sample(3000, 1);
    await p2.decode(encodeChunk(r), sha(r), r.length);
    await p2.close();
    await assert.rejects(p2.decode(encodeChunk(r), sha(r), r.length), ChunkError);
  });
});
