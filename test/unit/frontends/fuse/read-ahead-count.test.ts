import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ReadAhead, type ReadAheadOptions } from '../../../../src/frontends/fuse/read-ahead.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** The byte at position i of the test file. */
const byteAt = (i: number) => (i * 31 + (i >>> 12)) & 0xff;

/**
 * A backend behind one link of `rate` bytes per ms: calls queue on the link
 * (as on a real channel), and every byte asked for is counted.
 */
function countingBackend(size: number, rate: number) {
  let linkFree = 0;
  const stats = { bytesAsked: 0, bytesMoved: 0, calls: 0 };
  const fetch = async (offset: number, count: number) => {
    stats.calls++;
    stats.bytesAsked += count;
    const n = Math.max(0, Math.min(count, size - offset));
    const start = Math.max(Date.now(), linkFree);
    linkFree = start + Math.ceil(n / rate);
    await new Promise((r) => setTimeout(r, linkFree - Date.now()));
    stats.bytesMoved += n;
    const data = Buffer.alloc(n);
    for (let i = 0; i < n; i++) data[i] = byteAt(offset + i);
    return { data, eof: offset + n >= size };
  };
  return { fetch, stats };
}

/** Read the whole file as the kernel does: 128 KiB reads, `depth` of them in flight. */
async function readSequentially(ra: ReadAhead, size: number, depth: number): Promise<void> {
  const step = 128 * KiB;
  let next = 0;
  const worker = async () => {
    while (next < size + step) {
      const off = next;
      next += step;
      const got = await ra.read(off, step);
      const want = Math.max(0, Math.min(step, size - off));
      assert.equal(got.length, want, `read at ${off}`);
      for (let i = 0; i < got.length; i += 4093) assert.equal(got[i], byteAt(off + i), `byte ${off + i}`);
    }
  };
  await Promise.all(Array.from({ length: depth }, worker));
}

/**
 * The FUSE front end's read-ahead: one sequential read of a file asks the
 * backend for the file's bytes once — not chunks it already holds or has in
 * flight again (measured: a chunk's age counted from when its fetch was
 * issued made every chunk fetched ahead on a slow link "old" by the time it
 * was read, so it was fetched twice).
 */
describe('FUSE read-ahead: bytes asked of the backend', { timeout: 120_000 }, () => {
  const o: ReadAheadOptions = { chunk: MiB, window: 4, trigger: 256 * KiB, maxAgeMs: 200 };

  for (const [name, rate, depth] of [
    ['fast link, kernel depth 2', 200 * KiB, 2],
    ['slow link (window takes longer than maxAge to arrive), depth 2', 12 * KiB, 2],
    ['slow link, depth 4 (reads out of order)', 12 * KiB, 4],
  ] as const) {
    test(`${name}: bytes asked == file size (± one window)`, async () => {
      const size = 12 * MiB + 12345;
      const be = countingBackend(size, rate);
      const ra = new ReadAhead(o, be.fetch);
      await readSequentially(ra, size, depth);
      // Moved: the file once, plus the direct reads before streaming started (re-read by the first chunk).
      assert.ok(be.stats.bytesMoved >= size, `moved ${be.stats.bytesMoved} < size ${size}`);
      assert.ok(be.stats.bytesMoved <= size + o.trigger, `moved ${be.stats.bytesMoved} bytes for a ${size}-byte file (${be.stats.calls} calls): chunks read twice`);
      // Asked: whole chunks, and at most one window of them past the end (fetched ahead before the end was seen).
      const chunks = Math.ceil(size / o.chunk);
      assert.ok(be.stats.bytesAsked <= (chunks + o.window) * o.chunk + o.trigger, `asked ${be.stats.bytesAsked} bytes for a ${size}-byte file (${be.stats.calls} calls)`);
      assert.ok(ra.size <= o.window + 3, `${ra.size} chunks kept`);
    });
  }

  test('a chunk older than maxAgeMs is still fetched again (a change elsewhere shows up)', async () => {
    const size = 8 * MiB;
    const be = countingBackend(size, 1000 * KiB);
    const ra = new ReadAhead(o, be.fetch);
    for (let off = 0; off < 2 * MiB; off += 128 * KiB) await ra.read(off, 128 * KiB);
    const before = be.stats.bytesAsked;
    await ra.read(2 * MiB - 128 * KiB, 128 * KiB); // held: no new call
    assert.equal(be.stats.bytesAsked, before);
    await new Promise((r) => setTimeout(r, o.maxAgeMs + 100));
    await ra.read(2 * MiB - 128 * KiB, 128 * KiB);
    assert.ok(be.stats.bytesAsked > before, 'an old chunk was served without asking the backend again');
  });
});
