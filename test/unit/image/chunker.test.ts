import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import '../../helpers/fc-seed.js';
import { chunkAll, DEFAULT_CHUNKING, FIXED_CHUNKING, nextCut, type ChunkingParams } from '../../../src/image/chunker.js';
import { splitFile, ZERO_BLOCK } from '../../../src/image/split.js';
import { tempDir } from '../../helpers/local-server.js';

const SMALL: ChunkingParams = { kind: 'fastcdc', min: 256, avg: 1024, max: 4096 };
const hashes = (buf: Buffer, lens: number[]) => {
  const out: string[] = [];
  let s = 0;
  for (const n of lens) {
    out.push(createHash('sha256').update(buf.subarray(s, s + n)).digest('hex'));
    s += n;
  }
  return out;
};

describe('chunker', { timeout: 120_000 }, () => {
  test('chunks concatenate to the input and respect min/max (fastcdc and fixed)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40_000 }), fc.constantFrom(SMALL, { kind: 'fixed', min: 1000, avg: 1000, max: 1000 } as ChunkingParams), (data, p) => {
        const buf = Buffer.from(data);
        const lens = chunkAll(p, buf);
        assert.equal(lens.reduce((a, b) => a + b, 0), buf.length);
        lens.forEach((n, i) => {
          assert.ok(n <= p.max);
          if (i < lens.length - 1) assert.ok(n >= p.min, `chunk ${i} of ${n} < min`);
        });
      }),
      { numRuns: 200 },
    );
  });

  test('a cut never depends on data past max (streaming == whole buffer)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 5000, maxLength: 20_000 }), (data) => {
        const buf = Buffer.from(data);
        const whole = nextCut(SMALL, buf, 0, buf.length);
        assert.equal(nextCut(SMALL, buf, 0, SMALL.max), whole);
      }),
      { numRuns: 200 },
    );
  });

  test('content-defined boundaries resist an insertion; fixed ones do not', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 199_999 }), fc.uint8Array({ minLength: 1, maxLength: 100 }), (at, ins) => {
        const base = randomBytesSeeded(200_000, at);
        const changed = Buffer.concat([base.subarray(0, at), Buffer.from(ins), base.subarray(at)]);
        const shared = (p: ChunkingParams) => {
          const a = new Set(hashes(base, chunkAll(p, base)));
          const b = hashes(changed, chunkAll(p, changed));
          return b.filter((h) => a.has(h)).length / b.length;
        };
        const cdc = shared(SMALL);
        // All but the few chunks around the insertion survive (a moved cut can move the next one or two: the
        // search skips `min` bytes after each cut, so cuts resynchronise within a few chunks; 5 seen).
        const total = chunkAll(SMALL, changed).length;
        assert.ok(cdc >= (total - 8) / total, `fastcdc kept only ${cdc} of ${total}`);
        // Fixed 1 KiB: everything after the insertion shifts (unless it is a multiple of 1 KiB, impossible for <= 100 bytes).
        const fixed = shared({ kind: 'fixed', min: 1024, avg: 1024, max: 1024 });
        const before = Math.floor(at / 1024) / Math.ceil(changed.length / 1024);
        assert.ok(fixed <= before + 0.01, `fixed kept ${fixed}, expected at most ${before}`);
      }),
      { numRuns: 60 },
    );
  });

  test('average chunk size is near the target on random data', () => {
    const buf = randomBytes(8 << 20);
    const lens = chunkAll(DEFAULT_CHUNKING, buf);
    const avg = buf.length / lens.length;
    assert.ok(avg > 40_000 && avg < 110_000, `average ${avg}`);
  });
});

describe('splitFile', { timeout: 120_000 }, () => {
  test('pieces cover the file, zero blocks become zero runs, data equals the file', async () => {
    const dir = await tempDir();
    const parts = [randomBytes(100_000), Buffer.alloc(5 * ZERO_BLOCK + 123), randomBytes(ZERO_BLOCK * 3), Buffer.alloc(ZERO_BLOCK * 20), randomBytes(777)];
    const file = Buffer.concat(parts);
    const f = path.join(dir, 'f');
    await writeFile(f, file);
    for (const p of [DEFAULT_CHUNKING, FIXED_CHUNKING, SMALL]) {
      let at = 0;
      let zeros = 0;
      const rebuilt = Buffer.alloc(file.length, 0xff);
      for await (const x of splitFile(f, file.length, p)) {
        assert.equal(x.off, at);
        if ('zero' in x) {
          zeros += x.len;
          rebuilt.fill(0, x.off, x.off + x.len);
        } else {
          assert.ok(!x.data.every((b) => b === 0) || x.len < ZERO_BLOCK);
          x.data.copy(rebuilt, x.off);
        }
        at += x.len;
      }
      assert.equal(at, file.length);
      assert.ok(rebuilt.equals(file));
      // Zero blocks on the 4 KiB grid of file offsets: the parts are not aligned, so 4 of the first run's and 19 of the second's.
      assert.equal(zeros, 23 * ZERO_BLOCK);
    }
  });

  test('a large file splits the same however it is read (bounded buffer, cuts independent of reads)', async () => {
    const dir = await tempDir();
    const buf = randomBytes(12 << 20);
    const f = path.join(dir, 'big');
    await writeFile(f, buf);
    const lens: number[] = [];
    for await (const x of splitFile(f, buf.length, DEFAULT_CHUNKING)) lens.push(x.len);
    assert.deepEqual(lens, chunkAll(DEFAULT_CHUNKING, buf));
  });
});

function randomBytesSeeded(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let s = createHash('sha256').update(String(seed)).digest();
  for (let i = 0; i < n; i += 32) {
    s.copy(out, i, 0, Math.min(32, n - i));
    s = createHash('sha256').update(s).digest();
  }
  return out;
}
