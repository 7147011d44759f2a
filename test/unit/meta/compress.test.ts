import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import '../../helpers/fc-seed.js';
import { Codec, DEFAULT_LEVEL, pack, unpack } from '../../../src/meta/compress.js';

/** Compressible data like a memory image: zero runs and repeated text. */
function imageLike(len: number): Buffer {
  const b = Buffer.alloc(len);
  const text = Buffer.from('GVFS proxy data block; ');
  for (let at = 0; at < len; at += 8192) text.copy(b, at, 0, Math.min(text.length, len - at));
  return b;
}

// zstd frame magic (RFC 8878 §3.1.1), little-endian 0xFD2FB528.
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

test('ZSTD: compressible data is compressed and unpacks to the same bytes', { timeout: 60_000 }, () => {
  for (const len of [64, 4096, 65536, 1 << 20]) {
    const raw = imageLike(len);
    const p = pack(raw, Codec.ZSTD);
    assert.equal(p.codec, Codec.ZSTD, `len ${len}`);
    assert.ok(p.data.length < raw.length, `len ${len}: ${p.data.length} < ${raw.length}`);
    assert.deepEqual(p.data.subarray(0, 4), ZSTD_MAGIC, 'a real zstd frame');
    assert.deepEqual(unpack(p.data, p.codec, raw.length), raw);
  }
});

test('ZSTD at other levels round-trips too', { timeout: 60_000 }, () => {
  const raw = imageLike(100_000);
  for (const level of [DEFAULT_LEVEL, 3, 9, 19, -5]) {
    const p = pack(raw, Codec.ZSTD, level);
    assert.equal(p.codec, Codec.ZSTD);
    assert.deepEqual(unpack(p.data, p.codec, raw.length), raw, `level ${level}`);
  }
});

test('NONE: data is sent as it is', { timeout: 60_000 }, () => {
  const raw = imageLike(10_000);
  const p = pack(raw, Codec.NONE);
  assert.equal(p.codec, Codec.NONE);
  assert.deepEqual(p.data, raw);
  assert.deepEqual(unpack(p.data, Codec.NONE, raw.length), raw);
});

test('incompressible data asked for ZSTD is sent as NONE, unchanged', { timeout: 60_000 }, () => {
  for (const len of [64, 1000, 65536, 1 << 20]) {
    const raw = randomBytes(len);
    const p = pack(raw, Codec.ZSTD);
    assert.equal(p.codec, Codec.NONE, `len ${len}`);
    assert.deepEqual(p.data, raw);
    assert.deepEqual(unpack(p.data, p.codec, len), raw);
  }
});

test('data under 64 bytes is never compressed, even when it would shrink', { timeout: 60_000 }, () => {
  for (const len of [0, 1, 63]) {
    const raw = Buffer.alloc(len);
    const p = pack(raw, Codec.ZSTD);
    assert.equal(p.codec, Codec.NONE, `len ${len}`);
    assert.deepEqual(p.data, raw);
    assert.deepEqual(unpack(p.data, p.codec, len), raw);
  }
  assert.equal(pack(Buffer.alloc(64), Codec.ZSTD).codec, Codec.ZSTD);
});

test('property: unpack(pack(x)) === x for both codecs, and pack never grows data', { timeout: 60_000 }, () => {
  const data = fc.oneof(
    fc.uint8Array({ maxLength: 5000 }).map((a) => Buffer.from(a)),
    // Runs of a few byte values: compressible.
    fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 500 })), { maxLength: 40 }).map((runs) => Buffer.concat(runs.map(([v, n]) => Buffer.alloc(n, v)))),
  );
  fc.assert(
    fc.property(data, fc.constantFrom(Codec.NONE, Codec.ZSTD), (raw, codec) => {
      const p = pack(raw, codec);
      assert.ok(p.codec === Codec.NONE || p.codec === Codec.ZSTD);
      if (codec === Codec.NONE) assert.equal(p.codec, Codec.NONE);
      assert.ok(p.data.length <= raw.length);
      if (p.codec === Codec.NONE) assert.deepEqual(p.data, raw);
      assert.deepEqual(unpack(p.data, p.codec, raw.length), raw);
    }),
    { numRuns: 200 },
  );
});

test('unpack with the wrong raw length throws, for both codecs', { timeout: 60_000 }, () => {
  const raw = imageLike(8192);
  const z = pack(raw, Codec.ZSTD);
  assert.equal(z.codec, Codec.ZSTD);
  for (const len of [0, 8191, 8193, 16384]) {
    assert.throws(() => unpack(z.data, Codec.ZSTD, len), /range decodes to 8192 bytes, \d+ expected/);
    assert.throws(() => unpack(raw, Codec.NONE, len), /range decodes to 8192 bytes, \d+ expected/);
  }
});

test('corrupt zstd data throws', { timeout: 60_000 }, () => {
  const raw = imageLike(65536);
  const z = pack(raw, Codec.ZSTD).data;
  // Not a zstd frame at all.
  assert.throws(() => unpack(Buffer.from('this is not a zstd frame, just some text'), Codec.ZSTD, 40));
  assert.throws(() => unpack(randomBytes(1000), Codec.ZSTD, 65536));
  // A damaged magic number.
  const badMagic = Buffer.from(z);
  badMagic[0] ^= 0xff;
  assert.throws(() => unpack(badMagic, Codec.ZSTD, raw.length));
  // Cut short: a truncated frame never yields the whole range.
  for (const cut of [0, 4, Math.floor(z.length / 2), z.length - 1]) {
    assert.throws(() => unpack(z.subarray(0, cut), Codec.ZSTD, raw.length), `cut at ${cut}`);
  }
});

test('an unknown codec throws', { timeout: 60_000 }, () => {
  assert.throws(() => unpack(Buffer.alloc(4), 7 as Codec, 4), /unknown codec 7/);
});
