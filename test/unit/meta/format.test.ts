import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import '../../helpers/fc-seed.js';
import {
  blockCount,
  blockHash,
  decodeMeta,
  encodeMeta,
  HASH_ALG,
  HASH_LEN,
  hashOf,
  HINTS,
  isZero,
  MAX_BLOCK,
  META_MAGIC,
  META_VERSION,
  MetaFormatError,
  metaFileName,
  MIN_BLOCK,
  sameVersion,
  zeroBlocks,
  type FileMeta,
  type MetaVersion,
} from '../../../src/meta/format.js';
import { XdrWriter } from '../../../src/xdr/index.js';
import { hex } from '../../helpers/xdr.js';

/**
 * The meta-data file format (src/meta/format.ts). The known-answer vector is
 * written by hand from the layout in the module's contract comment; the
 * malformed inputs are built field by field with the XDR primitives, never by
 * encodeMeta, so a bug in the encoder cannot hide one in the decoder.
 */

const H = (b: number) => Buffer.alloc(HASH_LEN, b);

function sample(over: Partial<FileMeta> = {}): FileMeta {
  return {
    fileid: 0x0102030405060708n,
    size: 5000,
    mtime: { sec: 0x11, nsec: 0x22 },
    ctime: { sec: 0x33, nsec: 0x44 },
    blockSize: 4096,
    hint: 'prefetch',
    zeroMap: Buffer.from([0x02]),
    hashes: Buffer.concat([H(0xaa), H(0)]),
    order: [1, 0],
    created: 1000,
    source: 'a/b',
    ...over,
  };
}

const SAMPLE_HEX = `
  47564d44                          # magic "GVMD"
  00000001                          # version 1
  0102030405060708                  # fileid
  0000000000001388                  # size 5000
  00000011 00000022                 # mtime
  00000033 00000044                 # ctime
  00001000                          # block size 4096
  00000002                          # hint: prefetch
  0000000a 7368613235362d313238 0000  # "sha256-128"
  00000001 02000000                 # zero map: block 1
  00000020 ${'aa'.repeat(16)} ${'00'.repeat(16)}  # hashes
  00000002 00000001 00000000        # order [1, 0]
  00000000000003e8                  # created 1000
  00000003 612f6200                 # source "a/b"
`;

/** Raw fields of a meta-data file, each overridable to make a malformed one. */
interface Raw {
  magic: number;
  version: number;
  fileid: bigint;
  size: number;
  blockSize: number;
  hint: number;
  alg: string;
  zeroMap: Buffer;
  hashes: Buffer;
  /** The order count as written (defaults to order.length). */
  count?: number;
  order: number[];
  created: number;
  source: string;
}

function build(over: Partial<Raw> = {}): Buffer {
  const f: Raw = {
    magic: META_MAGIC,
    version: META_VERSION,
    fileid: 7n,
    size: 3 * 4096,
    blockSize: 4096,
    hint: 0,
    alg: HASH_ALG,
    zeroMap: Buffer.from([0x01]),
    hashes: Buffer.concat([H(0), H(1), H(2)]),
    order: [2, 1],
    created: 5,
    source: 'f',
    ...over,
  };
  const w = new XdrWriter(16);
  w.u32(f.magic).u32(f.version).u64big(f.fileid).u64(f.size).u32(1).u32(2).u32(3).u32(4);
  w.u32(f.blockSize).u32(f.hint).string(f.alg).opaque(f.zeroMap).opaque(f.hashes);
  w.u32(f.count ?? f.order.length);
  for (const i of f.order) w.u32(i);
  w.u64(f.created).string(f.source);
  return w.toBuffer();
}

/** Any message: the case is refused, whichever check catches it first. */
const MetaFormatErrorAny = /./;

function rejects(buf: Buffer, re: RegExp): void {
  assert.throws(
    () => decodeMeta(buf),
    (e: unknown) => {
      assert.ok(e instanceof MetaFormatError, `expected MetaFormatError, got ${String(e)}`);
      assert.equal(e.name, 'MetaFormatError');
      assert.match(e.message, re);
      return true;
    },
  );
}

// ---------- encoding ----------

test('encodeMeta writes the documented layout (hand-written vector)', { timeout: 60_000 }, () => {
  assert.equal(encodeMeta(sample()).toString('hex'), hex(SAMPLE_HEX).toString('hex'));
});

test('decodeMeta reads the hand-written vector', { timeout: 60_000 }, () => {
  assert.deepEqual(decodeMeta(hex(SAMPLE_HEX)), sample());
});

test('the raw builder used for malformed inputs agrees with the decoder when well-formed', { timeout: 60_000 }, () => {
  const m = decodeMeta(build());
  assert.equal(m.fileid, 7n);
  assert.equal(m.size, 3 * 4096);
  assert.deepEqual(m.mtime, { sec: 1, nsec: 2 });
  assert.deepEqual(m.ctime, { sec: 3, nsec: 4 });
  assert.equal(m.hint, 'ondemand');
  assert.deepEqual(m.order, [2, 1]);
  assert.equal(m.source, 'f');
});

test('decoded buffers are copies: changing the input afterwards changes nothing', { timeout: 60_000 }, () => {
  const buf = encodeMeta(sample());
  const m = decodeMeta(buf);
  buf.fill(0xff);
  assert.deepEqual(m, sample());
});

/** decodeMeta returns plain objects; fc.record's default null prototype would fail deepEqual. */
const PLAIN = { noNullPrototype: true } as const;

const metaArb: fc.Arbitrary<FileMeta> = fc
  .record({
    k: fc.integer({ min: 1, max: MAX_BLOCK / MIN_BLOCK }),
    n: fc.integer({ min: 0, max: 70 }),
    tail: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
  })
  .chain(({ k, n, tail }) => {
    const blockSize = k * MIN_BLOCK;
    // The last block is anything from 1 byte to a whole block.
    const size = n === 0 ? 0 : (n - 1) * blockSize + 1 + Math.floor(tail * blockSize);
    return fc.record({
      fileid: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      size: fc.constant(size),
      mtime: fc.record({ sec: fc.nat({ max: 0xffffffff }), nsec: fc.nat({ max: 999_999_999 }) }, PLAIN),
      ctime: fc.record({ sec: fc.nat({ max: 0xffffffff }), nsec: fc.nat({ max: 999_999_999 }) }, PLAIN),
      blockSize: fc.constant(blockSize),
      hint: fc.constantFrom(...HINTS),
      zeroMap: fc.uint8Array({ minLength: Math.ceil(n / 8), maxLength: Math.ceil(n / 8) }).map((a) => Buffer.from(a)),
      hashes: fc.uint8Array({ minLength: n * HASH_LEN, maxLength: n * HASH_LEN }).map((a) => Buffer.from(a)),
      order: n === 0 ? fc.constant<number[]>([]) : fc.array(fc.nat({ max: n - 1 }), { maxLength: n }),
      created: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
      source: fc.string({ maxLength: 255 }),
    }, PLAIN);
  });

test('property: decodeMeta(encodeMeta(m)) equals m (block sizes, sizes, zero maps, hashes, orders, hints)', { timeout: 60_000 }, () => {
  fc.assert(
    fc.property(metaArb, (m) => {
      const buf = encodeMeta(m);
      assert.equal(buf.length % 4, 0, 'XDR output is whole 4-byte units');
      assert.deepEqual(decodeMeta(buf), m);
      assert.equal(blockCount(m), Math.ceil(m.size / m.blockSize));
    }),
    { numRuns: 300 },
  );
});

test('a source longer than 255 bytes of UTF-8 is cut at a character boundary, so the meta-data stays readable', { timeout: 60_000 }, () => {
  for (const source of ['é'.repeat(128), 'x'.repeat(254) + '😀', '映'.repeat(100)]) {
    const back = decodeMeta(encodeMeta(sample({ source }))).source;
    assert.ok(Buffer.byteLength(back) <= 255);
    assert.ok(source.startsWith(back));
    assert.ok(!/[\ud800-\udfff]$/.test(back), 'half a surrogate pair');
  }
});

test('non-ASCII sources round-trip (UTF-8 within the 255-byte bound)', { timeout: 60_000 }, () => {
  for (const source of ['données/été.img', '映像/ディスク.raw', '😀/x', 'é'.repeat(127)]) {
    assert.equal(decodeMeta(encodeMeta(sample({ source }))).source, source);
  }
});

test('a source longer than 255 characters is cut to 255', { timeout: 60_000 }, () => {
  const m = decodeMeta(encodeMeta(sample({ source: 'x'.repeat(300) })));
  assert.equal(m.source, 'x'.repeat(255));
});

test('the largest block size and a size beyond 4 GiB round-trip', { timeout: 60_000 }, () => {
  const size = 5 * 2 ** 32 + 17; // 20 GiB and a bit: u64, not u32
  const n = Math.ceil(size / MAX_BLOCK);
  const m = sample({ blockSize: MAX_BLOCK, size, zeroMap: Buffer.alloc(Math.ceil(n / 8), 0x55), hashes: Buffer.alloc(n * HASH_LEN, 3), order: [n - 1, 0] });
  assert.deepEqual(decodeMeta(encodeMeta(m)), m);
});

// ---------- malformed input ----------

test('bad magic is refused', { timeout: 60_000 }, () => {
  rejects(build({ magic: 0x47564d45 }), /not a GVFS meta-data file/);
  rejects(Buffer.from('not meta-data at all, just text'), /not a GVFS meta-data file/);
});

test('an unsupported version is refused and named', { timeout: 60_000 }, () => {
  rejects(build({ version: 2 }), /version 2 is not supported/);
  rejects(build({ version: 0 }), /version 0 is not supported/);
});

test('bad block sizes are refused', { timeout: 60_000 }, () => {
  for (const blockSize of [0, 512, MIN_BLOCK - 1, MIN_BLOCK + 1, 3 * MIN_BLOCK + 2048, MAX_BLOCK + MIN_BLOCK, 0xffffffff]) {
    rejects(build({ blockSize }), /bad block size/);
  }
});

test('an unknown hint or hash algorithm is refused', { timeout: 60_000 }, () => {
  rejects(build({ hint: HINTS.length }), /unknown transfer hint/);
  rejects(build({ hint: 0xffffffff }), /unknown transfer hint/);
  rejects(build({ alg: 'sha1' }), /unknown hash algorithm sha1/);
});

test('a zero map not matching the size is refused (short or long)', { timeout: 60_000 }, () => {
  // 3 blocks: the map is exactly 1 byte.
  rejects(build({ zeroMap: Buffer.alloc(0) }), MetaFormatErrorAny);
  rejects(build({ zeroMap: Buffer.alloc(2) }), MetaFormatErrorAny);
  // 9 blocks need 2 bytes.
  rejects(build({ size: 9 * 4096, zeroMap: Buffer.alloc(1), hashes: Buffer.alloc(9 * HASH_LEN), order: [] }), /zero map or hashes/);
});

test('hashes not matching the size are refused (short, long, not whole hashes)', { timeout: 60_000 }, () => {
  rejects(build({ hashes: Buffer.alloc(2 * HASH_LEN) }), /zero map or hashes/);
  rejects(build({ hashes: Buffer.alloc(3 * HASH_LEN - 1) }), /zero map or hashes/);
  rejects(build({ hashes: Buffer.alloc(4 * HASH_LEN) }), MetaFormatErrorAny);
  rejects(build({ hashes: Buffer.alloc(3 * HASH_LEN + 1) }), MetaFormatErrorAny);
});

test('a size whose last block is partial needs a hash for it', { timeout: 60_000 }, () => {
  // 3 blocks and one byte: 4 blocks.
  rejects(build({ size: 3 * 4096 + 1 }), /zero map or hashes/);
  assert.equal(decodeMeta(build({ size: 3 * 4096 + 1, hashes: Buffer.alloc(4 * HASH_LEN) })).size, 3 * 4096 + 1);
});

test('an order naming a block past the end is refused', { timeout: 60_000 }, () => {
  rejects(build({ order: [3] }), /names block 3 of 3/);
  rejects(build({ order: [0, 0xffffffff] }), /names block 4294967295 of 3/);
  rejects(build({ size: 0, zeroMap: Buffer.alloc(0), hashes: Buffer.alloc(0), order: [0] }), MetaFormatErrorAny);
});

test('an order longer than the block count is refused', { timeout: 60_000 }, () => {
  rejects(build({ order: [0, 1, 2, 0] }), /prefetch order longer than the file/);
  // A count far beyond the input: refused from the count, before anything is read or allocated.
  rejects(build({ count: 0xffffffff, order: [] }), /prefetch order longer than the file/);
});

test('an order count promising more entries than present is refused', { timeout: 60_000 }, () => {
  // What follows the one entry is read as more entries, then the input runs out.
  rejects(build({ count: 3, order: [0] }), MetaFormatErrorAny);
  rejects(build({ count: 3, order: [0], created: 0, source: '' }).subarray(0, -4), /malformed meta-data/);
});

test('trailing bytes are refused', { timeout: 60_000 }, () => {
  const good = build();
  for (const extra of [1, 3, 4, 8]) rejects(Buffer.concat([good, Buffer.alloc(extra)]), /malformed meta-data: .*trailing/);
  const enc = encodeMeta(sample());
  rejects(Buffer.concat([enc, Buffer.from([0, 0, 0, 0])]), /trailing/);
});

test('every truncation of a valid file is refused with MetaFormatError', { timeout: 60_000 }, () => {
  const full = encodeMeta(sample({ order: [1, 0], source: 'some/path/name' }));
  assert.deepEqual(decodeMeta(full).source, 'some/path/name');
  for (let cut = 0; cut < full.length; cut++) rejects(full.subarray(0, cut), MetaFormatErrorAny);
});

test('property: random bytes never decode to anything but a value or a MetaFormatError', { timeout: 60_000 }, () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (a) => {
      const b = Buffer.concat([Buffer.from('GVMD'), Buffer.from([0, 0, 0, 1]), Buffer.from(a)]);
      try {
        decodeMeta(b);
      } catch (e) {
        assert.ok(e instanceof MetaFormatError, String(e));
      }
    }),
    { numRuns: 300 },
  );
});

// ---------- helpers ----------

test('blockCount rounds up', { timeout: 60_000 }, () => {
  assert.equal(blockCount({ size: 0, blockSize: 4096 }), 0);
  assert.equal(blockCount({ size: 1, blockSize: 4096 }), 1);
  assert.equal(blockCount({ size: 4096, blockSize: 4096 }), 1);
  assert.equal(blockCount({ size: 4097, blockSize: 4096 }), 2);
  assert.equal(blockCount({ size: 10 * 65536, blockSize: 65536 }), 10);
});

test('isZero reads bit i of the zero map, least significant bit first', { timeout: 60_000 }, () => {
  const m = { zeroMap: Buffer.from([0b0000_0101, 0b1000_0000]) };
  const zero = Array.from({ length: 16 }, (_, i) => isZero(m, i));
  assert.deepEqual(
    zero.flatMap((z, i) => (z ? [i] : [])),
    [0, 2, 15],
  );
});

test('zeroBlocks counts zero bits among the file\'s blocks only (padding bits ignored)', { timeout: 60_000 }, () => {
  const m = sample({ size: 3 * 4096, zeroMap: Buffer.from([0xff]), hashes: Buffer.alloc(3 * HASH_LEN), order: [] });
  assert.equal(zeroBlocks(m), 3);
  assert.equal(zeroBlocks(sample()), 1);
  assert.equal(zeroBlocks(sample({ size: 0, zeroMap: Buffer.alloc(0), hashes: Buffer.alloc(0), order: [] })), 0);
  assert.equal(zeroBlocks(sample({ size: 10 * 4096, zeroMap: Buffer.from([0b1010_1010, 0b11]) })), 6);
});

test('blockHash is SHA-256 cut to its first 16 bytes (FIPS 180-2 vectors)', { timeout: 60_000 }, () => {
  assert.equal(blockHash(Buffer.alloc(0)).toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb924');
  assert.equal(blockHash(Buffer.from('abc')).toString('hex'), 'ba7816bf8f01cfea414140de5dae2223');
  const b = Buffer.alloc(4096, 7);
  assert.deepEqual(blockHash(b), createHash('sha256').update(b).digest().subarray(0, 16));
  assert.equal(blockHash(b).length, HASH_LEN);
  assert.notDeepEqual(blockHash(Buffer.alloc(4096)), blockHash(Buffer.concat([Buffer.alloc(4095), Buffer.from([1])])));
});

test('hashOf returns block i\'s 16 bytes', { timeout: 60_000 }, () => {
  const hashes = Buffer.concat([H(1), H(2), H(3)]);
  assert.deepEqual(hashOf({ hashes }, 0), H(1));
  assert.deepEqual(hashOf({ hashes }, 1), H(2));
  assert.deepEqual(hashOf({ hashes }, 2), H(3));
  assert.equal(hashOf({ hashes }, 3).length, 0);
});

test('sameVersion compares fileid, size and both times to the nanosecond', { timeout: 60_000 }, () => {
  const v: MetaVersion = { fileid: 5n, size: 100, mtime: { sec: 10, nsec: 20 }, ctime: { sec: 30, nsec: 40 } };
  assert.ok(sameVersion(v, structuredClone(v)));
  assert.ok(sameVersion(v, sample({ ...v })), 'extra FileMeta fields do not matter');
  const changes: Array<Partial<MetaVersion>> = [
    { fileid: 6n },
    { size: 101 },
    { mtime: { sec: 11, nsec: 20 } },
    { mtime: { sec: 10, nsec: 21 } },
    { ctime: { sec: 31, nsec: 40 } },
    { ctime: { sec: 30, nsec: 41 } },
  ];
  for (const c of changes) {
    assert.equal(sameVersion(v, { ...v, ...c }), false, JSON.stringify(c, (_, x) => (typeof x === 'bigint' ? String(x) : x)));
    assert.equal(sameVersion({ ...v, ...c }, v), false);
  }
});

test('metaFileName is <fileid>.gvmeta, exact for 64-bit ids', { timeout: 60_000 }, () => {
  assert.equal(metaFileName(42n), '42.gvmeta');
  assert.equal(metaFileName((1n << 64n) - 1n), '18446744073709551615.gvmeta');
});
