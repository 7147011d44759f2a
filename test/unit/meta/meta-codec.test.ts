import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import '../../helpers/fc-seed.js';
import {
  bulkReadArgs,
  bulkReadRes,
  getMetaArgs,
  getMetaRes,
  MAX_ORDER,
  MAX_RANGES,
  MetaStatus,
  setOrderArgs,
  setOrderRes,
  type BulkReadArgs,
  type BulkReadRes,
  type GetMetaArgs,
  type GetMetaRes,
  type SetOrderArgs,
  type SetOrderRes,
} from '../../../src/ext/meta-codec.js';
import { HINTS, type MetaVersion } from '../../../src/meta/format.js';
import { XdrError, XdrReader, XdrWriter } from '../../../src/xdr/index.js';
import { decodeAll, encode, hex } from '../../helpers/xdr.js';

/** Codecs of the GVFS extension's meta-data procedures (src/ext/meta-codec.ts). */

const PLAIN = { noNullPrototype: true } as const;
const u32 = fc.nat({ max: 0xffffffff });
const u64 = fc.nat({ max: Number.MAX_SAFE_INTEGER });
const fh = fc.uint8Array({ minLength: 0, maxLength: 64 }).map((a) => Buffer.from(a));
const data = (max: number) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));
const versionArb: fc.Arbitrary<MetaVersion> = fc.record(
  {
    fileid: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    size: u64,
    mtime: fc.record({ sec: u32, nsec: fc.nat({ max: 999_999_999 }) }, PLAIN),
    ctime: fc.record({ sec: u32, nsec: fc.nat({ max: 999_999_999 }) }, PLAIN),
  },
  PLAIN,
);
const statusArb = fc.constantFrom(MetaStatus.OK, MetaStatus.NONE, MetaStatus.STALE, MetaStatus.NFSERR, MetaStatus.TOOBIG);

function roundTrips<T>(name: string, codec: { enc: (w: XdrWriter, v: T) => void; dec: (r: XdrReader) => T }, arb: fc.Arbitrary<T>): void {
  test(`${name}: property round trip through XdrWriter/XdrReader`, () => {
    fc.assert(
      fc.property(arb, (v) => {
        const b = encode(codec.enc, v);
        assert.equal(b.length % 4, 0);
        assert.deepEqual(decodeAll(codec.dec, b), v);
        // Every truncation fails to decode (the whole input is needed).
        for (const cut of [0, b.length >> 1, b.length - 4].filter((c) => c >= 0 && c < b.length)) {
          assert.throws(() => decodeAll(codec.dec, b.subarray(0, cut)));
        }
      }),
      { numRuns: 150 },
    );
  });
}

roundTrips<GetMetaArgs>('GET_META args', getMetaArgs, fc.record({ fh, offset: u32, count: u32 }, PLAIN));
roundTrips<GetMetaRes>('GET_META res', getMetaRes, fc.record({ status: statusArb, nfsstat: u32, total: u32, data: data(3000) }, PLAIN));
roundTrips<BulkReadArgs>(
  'BULK_READ args',
  bulkReadArgs,
  fc.record({ fh, version: versionArb, codec: fc.constantFrom(0, 1), ranges: fc.array(fc.record({ offset: u64, len: u32 }, PLAIN), { maxLength: MAX_RANGES }) }, PLAIN),
);
roundTrips<BulkReadRes>(
  'BULK_READ res',
  bulkReadRes,
  fc.record(
    {
      status: statusArb,
      nfsstat: u32,
      ranges: fc.array(fc.record({ offset: u64, rawLen: u32, codec: fc.constantFrom(0, 1), data: data(300) }, PLAIN), { maxLength: 20 }),
    },
    PLAIN,
  ),
);
roundTrips<SetOrderArgs>(
  'SET_ORDER args',
  setOrderArgs,
  fc.record({ fh, version: versionArb, hint: fc.constantFrom(...HINTS), order: fc.array(u32, { maxLength: 300 }) }, PLAIN),
);
roundTrips<SetOrderRes>('SET_ORDER res', setOrderRes, fc.record({ status: statusArb, nfsstat: u32 }, PLAIN));

// ---------- hand-written vectors ----------

const V: MetaVersion = { fileid: 0x1122334455667788n, size: 0x1_0000_0005, mtime: { sec: 1, nsec: 2 }, ctime: { sec: 3, nsec: 4 } };
const V_HEX = `
  1122334455667788                  # fileid
  0000000100000005                  # size 2^32 + 5
  00000001 00000002 00000003 00000004  # mtime, ctime
`;

test('BULK_READ args: hand-written vector', { timeout: 60_000 }, () => {
  const a: BulkReadArgs = { fh: Buffer.from([0xab, 0xcd, 0xef]), version: V, codec: 1, ranges: [{ offset: 0x2_0000_0000, len: 65536 }, { offset: 4096, len: 1 }] };
  const vec = hex(`
    00000003 abcdef00                 # fh
    ${V_HEX}
    00000001                          # codec zstd
    00000002                          # two ranges
    0000000200000000 00010000         # offset 2^33, len 65536
    0000000000001000 00000001         # offset 4096, len 1
  `);
  assert.deepEqual(encode(bulkReadArgs.enc, a), vec);
  assert.deepEqual(decodeAll(bulkReadArgs.dec, vec), a);
});

test('BULK_READ res: hand-written vector', { timeout: 60_000 }, () => {
  const v: BulkReadRes = { status: MetaStatus.OK, nfsstat: 0, ranges: [{ offset: 8192, rawLen: 4096, codec: 0, data: Buffer.from('hello') }] };
  const vec = hex(`
    00000000 00000000                 # status OK, nfsstat 0
    00000001                          # one range
    0000000000002000 00001000 00000000  # offset 8192, rawLen 4096, codec none
    00000005 68656c6c6f000000         # "hello"
  `);
  assert.deepEqual(encode(bulkReadRes.enc, v), vec);
  assert.deepEqual(decodeAll(bulkReadRes.dec, vec), v);
});

test('SET_ORDER args: hand-written vector; hints are ondemand 0, whole 1, prefetch 2', { timeout: 60_000 }, () => {
  const vec = (h: string) =>
    hex(`
    00000000                          # empty fh
    ${V_HEX}
    ${h}                              # hint
    00000003 00000007 00000000 ffffffff  # order [7, 0, 2^32-1]
  `);
  for (const [hint, h] of [['ondemand', '00000000'], ['whole', '00000001'], ['prefetch', '00000002']] as const) {
    const a: SetOrderArgs = { fh: Buffer.alloc(0), version: V, hint, order: [7, 0, 0xffffffff] };
    assert.deepEqual(encode(setOrderArgs.enc, a), vec(h));
    assert.deepEqual(decodeAll(setOrderArgs.dec, vec(h)), a);
  }
});

test('GET_META args and res: hand-written vectors', { timeout: 60_000 }, () => {
  const args = hex('00000002 0102 0000  00000010  00100000');
  assert.deepEqual(decodeAll(getMetaArgs.dec, args), { fh: Buffer.from([1, 2]), offset: 16, count: 1 << 20 });
  assert.deepEqual(encode(getMetaArgs.enc, { fh: Buffer.from([1, 2]), offset: 16, count: 1 << 20 }), args);
  const res = hex('00000002 00000000 00000000 00000000');
  assert.deepEqual(decodeAll(getMetaRes.dec, res), { status: MetaStatus.STALE, nfsstat: 0, total: 0, data: Buffer.alloc(0) });
  assert.deepEqual(decodeAll(setOrderRes.dec, hex('00000003 0000000d')), { status: MetaStatus.NFSERR, nfsstat: 13 });
});

// ---------- limits ----------

function bulkArgsWith(n: number, present = n): Buffer {
  const w = new XdrWriter();
  w.opaque(Buffer.alloc(8));
  w.u64big(1n).u64(0).u32(0).u32(0).u32(0).u32(0);
  w.u32(0).u32(n);
  for (let i = 0; i < present; i++) w.u64(i * 4096).u32(4096);
  return w.toBuffer();
}

test('BULK_READ args: more than MAX_RANGES ranges are refused before reading them', { timeout: 60_000 }, () => {
  assert.equal(decodeAll(bulkReadArgs.dec, bulkArgsWith(MAX_RANGES)).ranges.length, MAX_RANGES);
  assert.throws(() => bulkReadArgs.dec(new XdrReader(bulkArgsWith(MAX_RANGES + 1))), RangeError);
  assert.throws(() => bulkReadArgs.dec(new XdrReader(bulkArgsWith(0xffffffff, 0))), /4294967295 ranges \(at most 256\)/);
});

test('BULK_READ res: more than MAX_RANGES ranges are refused', { timeout: 60_000 }, () => {
  const res = (n: number) => {
    const w = new XdrWriter();
    w.u32(0).u32(0).u32(n);
    for (let i = 0; i < n; i++) w.u64(i).u32(0).u32(0).opaque(Buffer.alloc(0));
    return w.toBuffer();
  };
  assert.equal(decodeAll(bulkReadRes.dec, res(MAX_RANGES)).ranges.length, MAX_RANGES);
  assert.throws(() => bulkReadRes.dec(new XdrReader(res(MAX_RANGES + 1))), RangeError);
  assert.throws(() => bulkReadRes.dec(new XdrReader(hex('00000000 00000000 ffffffff'))), /ranges \(at most 256\)/);
});

function orderArgsWith(hint: number, n: number, present = n): Buffer {
  const w = new XdrWriter();
  w.opaque(Buffer.alloc(0));
  w.u64big(1n).u64(0).u32(0).u32(0).u32(0).u32(0);
  w.u32(hint).u32(n);
  for (let i = 0; i < present; i++) w.u32(i);
  return w.toBuffer();
}

test('SET_ORDER args: more than MAX_ORDER entries are refused', { timeout: 60_000 }, () => {
  assert.equal(decodeAll(setOrderArgs.dec, orderArgsWith(2, MAX_ORDER)).order.length, MAX_ORDER);
  assert.throws(() => setOrderArgs.dec(new XdrReader(orderArgsWith(2, MAX_ORDER + 1))), RangeError);
  assert.throws(() => setOrderArgs.dec(new XdrReader(orderArgsWith(0, 0xffffffff, 0))), /order of 4294967295 blocks \(at most 200000\)/);
});

test('SET_ORDER args: an unknown hint is refused', { timeout: 60_000 }, () => {
  for (const h of [3, 4, 0xffffffff]) assert.throws(() => setOrderArgs.dec(new XdrReader(orderArgsWith(h, 1))), /unknown hint/);
  for (let h = 0; h < HINTS.length; h++) assert.equal(decodeAll(setOrderArgs.dec, orderArgsWith(h, 1)).hint, HINTS[h]);
});

test('file handles longer than 64 bytes are refused (NFSv3 FHSIZE)', { timeout: 60_000 }, () => {
  const w = new XdrWriter();
  getMetaArgs.enc(w, { fh: Buffer.alloc(65), offset: 0, count: 0 });
  assert.throws(() => getMetaArgs.dec(new XdrReader(w.toBuffer())), XdrError);
  const w2 = new XdrWriter();
  bulkReadArgs.enc(w2, { fh: Buffer.alloc(65), version: V, codec: 0, ranges: [] });
  assert.throws(() => bulkReadArgs.dec(new XdrReader(w2.toBuffer())), XdrError);
  const w3 = new XdrWriter();
  setOrderArgs.enc(w3, { fh: Buffer.alloc(65), version: V, hint: 'whole', order: [] });
  assert.throws(() => setOrderArgs.dec(new XdrReader(w3.toBuffer())), XdrError);
});

test('decoded buffers are copies, not views into the record', { timeout: 60_000 }, () => {
  const b = encode(bulkReadRes.enc, { status: 0, nfsstat: 0, ranges: [{ offset: 0, rawLen: 3, codec: 0, data: Buffer.from('abc') }] });
  const v = bulkReadRes.dec(new XdrReader(b));
  b.fill(0);
  assert.deepEqual(v.ranges[0].data, Buffer.from('abc'));
  const g = encode(getMetaArgs.enc, { fh: Buffer.from('handle'), offset: 0, count: 1 });
  const ga = getMetaArgs.dec(new XdrReader(g));
  g.fill(0);
  assert.deepEqual(ga.fh, Buffer.from('handle'));
});
