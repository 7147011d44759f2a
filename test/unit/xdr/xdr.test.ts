import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import '../../helpers/fc-seed.js';
import { XdrError, XdrReader, XdrWriter, pad } from '../../../src/xdr/index.js';
import { hex } from '../../helpers/xdr.js';

/**
 * XDR primitives against RFC 4506. Vectors are written by hand from the RFC
 * text (big-endian 4-byte units, zero padding), never produced by our writer.
 */

const write = (f: (w: XdrWriter) => unknown): Buffer => {
  const w = new XdrWriter(8); // small initial buffer: exercises growth too
  f(w);
  return w.toBuffer();
};
const reader = (s: string): XdrReader => new XdrReader(hex(s));

// ---------- §4.1 Integer, §4.2 Unsigned Integer ----------

test('i32: two\'s complement, big-endian (RFC 4506 §4.1)', { timeout: 60_000 }, () => {
  const cases: Array<[number, string]> = [
    [0, '00000000'],
    [1, '00000001'],
    [-1, 'ffffffff'],
    [-2, 'fffffffe'],
    [2147483647, '7fffffff'],
    [-2147483648, '80000000'],
  ];
  for (const [v, h] of cases) {
    assert.deepEqual(write((w) => w.i32(v)), hex(h), `encode ${v}`);
    assert.equal(reader(h).i32(), v, `decode ${h}`);
  }
});

test('u32: big-endian, most significant byte first (RFC 4506 §4.2)', { timeout: 60_000 }, () => {
  const cases: Array<[number, string]> = [
    [0, '00000000'],
    [0x01020304, '01020304'],
    [0xdeadbeef, 'deadbeef'],
    [0xffffffff, 'ffffffff'],
  ];
  for (const [v, h] of cases) {
    assert.deepEqual(write((w) => w.u32(v)), hex(h), `encode ${v}`);
    assert.equal(reader(h).u32(), v, `decode ${h}`);
  }
});

// ---------- §4.4 Boolean ----------

test('bool: FALSE = 0, TRUE = 1 (RFC 4506 §4.4)', { timeout: 60_000 }, () => {
  assert.deepEqual(write((w) => w.bool(false).bool(true)), hex('00000000 00000001'));
  const r = reader('00000000 00000001');
  assert.equal(r.bool(), false);
  assert.equal(r.bool(), true);
});

test('bool: any value other than 0 or 1 is a decode error', { timeout: 60_000 }, () => {
  for (const h of ['00000002', '80000000', 'ffffffff', '00000100']) {
    assert.throws(() => reader(h).bool(), XdrError, h);
  }
});

// ---------- §4.5 Hyper Integer and Unsigned Hyper Integer ----------

test('u64 (number): 8 bytes, high word first, exact up to 2^53 - 1 (RFC 4506 §4.5)', { timeout: 60_000 }, () => {
  const cases: Array<[number, string]> = [
    [0, '00000000 00000000'],
    [0xffffffff, '00000000 ffffffff'],
    [2 ** 32, '00000001 00000000'],
    [2 ** 32 + 5, '00000001 00000005'],
    [1_000_000_000_000, '000000e8 d4a51000'],
    [Number.MAX_SAFE_INTEGER, '001fffff ffffffff'],
  ];
  for (const [v, h] of cases) {
    assert.deepEqual(write((w) => w.u64(v)), hex(h), `encode ${v}`);
    assert.equal(reader(h).u64(), v, `decode ${h}`);
  }
});

test('u64big (bigint): exact across the whole unsigned hyper range (RFC 4506 §4.5)', { timeout: 60_000 }, () => {
  const cases: Array<[bigint, string]> = [
    [0n, '00000000 00000000'],
    [2n ** 32n + 5n, '00000001 00000005'],
    [2n ** 53n + 1n, '00200000 00000001'], // not representable as a JS number
    [0x0123456789abcdefn, '01234567 89abcdef'],
    [0x8000000000000000n, '80000000 00000000'],
    [2n ** 64n - 1n, 'ffffffff ffffffff'],
  ];
  for (const [v, h] of cases) {
    assert.deepEqual(write((w) => w.u64big(v)), hex(h), `encode ${v}`);
    assert.equal(reader(h).u64big(), v, `decode ${h}`);
  }
});

test('u64big encodes negative bigints as their 64-bit two\'s complement', { timeout: 60_000 }, () => {
  assert.deepEqual(write((w) => w.u64big(-1n)), hex('ffffffff ffffffff'));
});

// ---------- §4.9 Fixed-Length Opaque, §4.10 Variable-Length Opaque, §4.11 String ----------

test('pad(): residual zero bytes to the next multiple of four (RFC 4506 §4.9)', { timeout: 60_000 }, () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 8].map(pad), [0, 3, 2, 1, 0, 3, 2, 1, 0]);
});

test('fixed opaque: n bytes then (4 - n mod 4) mod 4 zero bytes (RFC 4506 §4.9)', { timeout: 60_000 }, () => {
  const cases: Array<[string, string]> = [
    ['', ''],
    ['aa', 'aa000000'],
    ['aabb', 'aabb0000'],
    ['aabbcc', 'aabbcc00'],
    ['aabbccdd', 'aabbccdd'],
    ['aabbccddee', 'aabbccdd ee000000'],
  ];
  for (const [data, h] of cases) {
    assert.deepEqual(write((w) => w.fixedOpaque(hex(data))), hex(h), `encode ${data}`);
    const r = reader(h);
    assert.deepEqual(r.fixedOpaque(data.length / 2), hex(data), `decode ${h}`);
    r.end();
  }
});

test('fixed opaque: missing padding is a decode error', { timeout: 60_000 }, () => {
  assert.throws(() => reader('aabbcc').fixedOpaque(3), XdrError);
  assert.throws(() => reader('aabbccdd ee').fixedOpaque(5), XdrError);
});

test('variable opaque: length word, bytes, zero padding (RFC 4506 §4.10)', { timeout: 60_000 }, () => {
  const vec = '00000005 aabbccdd ee000000';
  assert.deepEqual(write((w) => w.opaque(hex('aabbccddee'))), hex(vec));
  const r = reader(vec);
  assert.deepEqual(r.opaque(5), hex('aabbccddee'));
  r.end();
  assert.deepEqual(write((w) => w.opaque(Buffer.alloc(0))), hex('00000000'));
});

test('variable opaque: a length over the bound or over the input is rejected', { timeout: 60_000 }, () => {
  assert.throws(() => reader('00000005 aabbccdd ee000000').opaque(4), XdrError);
  assert.throws(() => reader('00000008 aabbccdd').opaque(64), XdrError);
  // A hostile length near 2^32 must fail on the input check, not try to allocate.
  assert.throws(() => reader('ffffffff 00000000').opaque(0xffffffff), XdrError);
});

test('string: UTF-8 bytes as variable opaque (RFC 4506 §4.11)', { timeout: 60_000 }, () => {
  assert.deepEqual(write((w) => w.string('sillyprog')), hex('00000009 73696c6c 7970726f 67000000'));
  assert.equal(reader('00000009 73696c6c 7970726f 67000000').string(255), 'sillyprog');
  // "é" is two bytes in UTF-8: the length counts bytes, not characters.
  assert.deepEqual(write((w) => w.string('é')), hex('00000002 c3a90000'));
  assert.throws(() => reader('00000009 73696c6c 7970726f 67000000').string(8), XdrError);
});

test('large opaque payloads are kept as their own chunk without copying', { timeout: 60_000 }, () => {
  const data = Buffer.alloc(8193, 0x5a);
  const w = new XdrWriter();
  w.u32(7).opaque(data).u32(9);
  assert.equal(w.length, 4 + 4 + 8193 + 3 + 4);
  const chunks = w.chunks();
  assert.ok(
    chunks.some((c) => c.buffer === data.buffer && c.byteOffset === data.byteOffset),
    'payload chunk shares memory with the caller buffer',
  );
  const out = Buffer.concat(chunks);
  assert.deepEqual(out.subarray(0, 8), hex('00000007 00002001'));
  assert.deepEqual(out.subarray(8, 8 + 8193), data);
  assert.deepEqual(out.subarray(8 + 8193), hex('000000 00000009'));
  assert.deepEqual(w.toBuffer(), out);
});

// ---------- §4.12 / §4.13 Arrays ----------

test('variable array: count then elements (RFC 4506 §4.13)', { timeout: 60_000 }, () => {
  const vec = '00000003 00000001 00000002 00000003';
  assert.deepEqual(write((w) => w.array([1, 2, 3], (x, v) => x.u32(v))), hex(vec));
  const r = reader(vec);
  assert.deepEqual(r.array(3, (x) => x.u32()), [1, 2, 3]);
  r.end();
});

test('array: a count over the bound is rejected before any element is read', { timeout: 60_000 }, () => {
  let items = 0;
  const item = (x: XdrReader) => (items++, x.u32());
  assert.throws(() => reader('00000011' + '00000000'.repeat(17)).array(16, item), XdrError);
  assert.equal(items, 0);
});

test('array: a count the input cannot hold is rejected without allocating', { timeout: 60_000 }, () => {
  let items = 0;
  const item = (x: XdrReader) => (items++, x.u32());
  // 2^32 - 1 elements announced, bound as large: only the remaining-input check stands in the way.
  assert.throws(() => reader('ffffffff 00000000').array(0xffffffff, item), XdrError);
  // 3 elements of at least 8 bytes cannot fit in 20 bytes.
  assert.throws(() => reader('00000003' + '00'.repeat(20)).array(100, item, 8), XdrError);
  assert.equal(items, 0);
});

// ---------- §4.19 Optional-Data ----------

test('optional: a boolean, then the value if TRUE (RFC 4506 §4.19)', { timeout: 60_000 }, () => {
  assert.deepEqual(write((w) => w.optional(undefined, (x, v: number) => x.u32(v))), hex('00000000'));
  assert.deepEqual(write((w) => w.optional(null, (x, v: number) => x.u32(v))), hex('00000000'));
  assert.deepEqual(write((w) => w.optional(7, (x, v) => x.u32(v))), hex('00000001 00000007'));
  assert.equal(reader('00000000').optional((x) => x.u32()), undefined);
  assert.equal(reader('00000001 00000007').optional((x) => x.u32()), 7);
  assert.throws(() => reader('00000002 00000007').optional((x) => x.u32()), XdrError);
});

test('list: the linked-list idiom of RFC 4506 §4.19 (*next as optional-data)', { timeout: 60_000 }, () => {
  // struct stringentry { string item<>; stringentry *next; }; preceded by the head pointer.
  const vec = '00000001 00000001 61000000  00000001 00000002 62630000  00000000';
  assert.deepEqual(write((w) => w.list(['a', 'bc'], (x, s) => x.string(s))), hex(vec));
  const r = reader(vec);
  assert.deepEqual(r.list(10, (x) => x.string(10)), ['a', 'bc']);
  r.end();
  assert.deepEqual(write((w) => w.list([], (x, s: string) => x.string(s))), hex('00000000'));
});

test('list: more entries than the bound is rejected', { timeout: 60_000 }, () => {
  let items = 0;
  const item = (x: XdrReader) => (items++, x.u32());
  const three = '00000001 00000001  00000001 00000002  00000001 00000003  00000000';
  assert.throws(() => reader(three).list(2, item), XdrError);
  assert.ok(items <= 2, `decoded ${items} items past the bound`);
  assert.deepEqual(reader(three).list(3, (x) => x.u32()), [1, 2, 3]);
});

// ---------- §7: the RFC's own worked example ----------

test('RFC 4506 §7 example: the "sillyprog" file record, byte for byte', { timeout: 60_000 }, () => {
  // struct file { string filename<255>; filetype type; string owner<32>; opaque data<65535>; }
  // union filetype switch (filekind kind) { case TEXT: void; case DATA: string creator<255>; case EXEC: string interpretor<255>; }
  const vec = hex(`
    00000009 73696c6c 7970726f 67000000
    00000002 00000004 6c697370
    00000004 6a6f686e
    00000006 28717569 74290000`);
  assert.equal(vec.length, 48);
  const EXEC = 2;
  const enc = write((w) => {
    w.string('sillyprog');
    w.u32(EXEC).string('lisp');
    w.string('john');
    w.opaque(Buffer.from('(quit)'));
  });
  assert.deepEqual(enc, vec);

  const r = new XdrReader(vec);
  assert.equal(r.string(255), 'sillyprog');
  assert.equal(r.u32(), EXEC);
  assert.equal(r.string(255), 'lisp');
  assert.equal(r.string(32), 'john');
  assert.equal(r.opaque(65535).toString(), '(quit)');
  r.end();
});

// ---------- truncation and trailing bytes ----------

test('truncated input raises XdrError for every primitive', { timeout: 60_000 }, () => {
  assert.throws(() => reader('').u32(), XdrError);
  assert.throws(() => reader('000000').u32(), XdrError);
  assert.throws(() => reader('ffffff').i32(), XdrError);
  assert.throws(() => reader('000000').bool(), XdrError);
  assert.throws(() => reader('00000000 000000').u64(), XdrError);
  assert.throws(() => reader('00000000 000000').u64big(), XdrError);
  assert.throws(() => reader('aabb').fixedOpaque(4), XdrError);
  assert.throws(() => reader('000000').opaque(10), XdrError);
  assert.throws(() => reader('00000003 6162').string(10), XdrError);
  assert.throws(() => reader('00000002 00000001').array(5, (x) => x.u32()), XdrError);
  assert.throws(() => reader('00000001').optional((x) => x.u32()), XdrError);
  assert.throws(() => reader('00000001 00000001').list(5, (x) => x.u32()), XdrError);
});

test('offset and remaining track the position', { timeout: 60_000 }, () => {
  const r = reader('00000001 00000002 03');
  assert.equal(r.offset, 0);
  assert.equal(r.remaining, 9);
  r.u32();
  assert.equal(r.offset, 4);
  assert.equal(r.remaining, 5);
  assert.deepEqual(r.rest(), hex('00000002 03'));
  assert.equal(r.remaining, 0);
  r.end();
});

test('end() rejects trailing bytes and accepts exact consumption', { timeout: 60_000 }, () => {
  const r = reader('00000001 00000002');
  r.u32();
  assert.throws(() => r.end(), XdrError);
  r.u32();
  r.end();
  assert.throws(() => reader('00').end(), XdrError);
});

test('a reader may start at an offset', { timeout: 60_000 }, () => {
  const r = new XdrReader(hex('ffffffff 0000002a'), 4);
  assert.equal(r.u32(), 42);
  r.end();
});

// ---------- property: every primitive round-trips ----------

test('property: primitives round-trip through writer and reader', { timeout: 60_000 }, () => {
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  const i32 = fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff });
  const u64big = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
  const bytes = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a));
  const str = fc.string({ unit: 'grapheme', maxLength: 20 });
  fc.assert(
    fc.property(u32, i32, fc.boolean(), fc.maxSafeNat(), u64big, bytes, str, fc.array(u32, { maxLength: 8 }), fc.option(u32, { nil: undefined }),
      (a, b, c, d, e, f, g, h, i) => {
        const buf = write((w) => {
          w.u32(a).i32(b).bool(c).u64(d).u64big(e).opaque(f).string(g);
          w.array(h, (x, v) => x.u32(v)).list(h, (x, v) => x.u32(v)).optional(i, (x, v) => x.u32(v));
        });
        assert.equal(buf.length % 4, 0);
        const r = new XdrReader(buf);
        assert.equal(r.u32(), a);
        assert.equal(r.i32(), b);
        assert.equal(r.bool(), c);
        assert.equal(r.u64(), d);
        assert.equal(r.u64big(), e);
        assert.deepEqual(r.opaque(40), f);
        assert.equal(r.string(1000), g);
        assert.deepEqual(r.array(8, (x) => x.u32()), h);
        assert.deepEqual(r.list(8, (x) => x.u32()), h);
        assert.equal(r.optional((x) => x.u32()), i);
        r.end();
      }),
  );
});
