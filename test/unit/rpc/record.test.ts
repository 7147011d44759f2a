import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import '../../helpers/fc-seed.js';
import { RecordDecoder, RecordTooLargeError, frameRecord } from '../../../src/rpc/record.js';
import { hex } from '../../helpers/xdr.js';

/**
 * Record marking (RFC 5531 §11): each fragment is a 4-byte big-endian header
 * (top bit = last fragment, low 31 bits = length) followed by that many bytes;
 * a record is the concatenation of its fragments up to the last one.
 * Streams are written by hand here, not with frameRecord.
 */

function collect(maxRecord = 1 << 16): { dec: RecordDecoder; records: Buffer[] } {
  const records: Buffer[] = [];
  const dec = new RecordDecoder((r) => records.push(Buffer.from(r)), maxRecord);
  return { dec, records };
}

/** Frame `data` as fragments split at `cuts` (sorted offsets; repeats make zero-length fragments). */
function fragments(data: Buffer, cuts: number[]): Buffer {
  const bounds = [0, ...cuts, data.length];
  const parts: Buffer[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const body = data.subarray(bounds[i], bounds[i + 1]);
    const h = Buffer.alloc(4);
    h.writeUInt32BE((i + 2 === bounds.length ? 0x8000_0000 : 0) + body.length); // top bit: last fragment
    parts.push(h, body);
  }
  return Buffer.concat(parts);
}

test('a single last fragment is one record (RFC 5531 §11)', { timeout: 60_000 }, () => {
  const { dec, records } = collect();
  dec.push(hex('80000005 68656c6c6f'));
  assert.deepEqual(records, [Buffer.from('hello')]);
  assert.equal(dec.partial, false);
});

test('fragments are concatenated until the one with the last-fragment bit', { timeout: 60_000 }, () => {
  const { dec, records } = collect();
  dec.push(hex('00000003 616263  00000001 64  80000002 6566'));
  assert.deepEqual(records, [Buffer.from('abcdef')]);
});

test('zero-length fragments: leading, trailing, and a zero-length record', { timeout: 60_000 }, () => {
  const { dec, records } = collect();
  dec.push(hex('00000000 80000003 78797a')); // empty first fragment, then "xyz"
  dec.push(hex('00000003 616263 80000000')); // "abc", then an empty last fragment
  dec.push(hex('80000000')); // an empty record
  dec.push(hex('00000000 00000000 80000000')); // an empty record in three empty fragments
  assert.deepEqual(records, [Buffer.from('xyz'), Buffer.from('abc'), Buffer.alloc(0), Buffer.alloc(0)]);
  assert.equal(dec.partial, false);
});

test('several records in one chunk come out in order', { timeout: 60_000 }, () => {
  const { dec, records } = collect();
  dec.push(hex('80000001 61  80000002 6263  00000001 64 80000001 65'));
  assert.deepEqual(records.map(String), ['a', 'bc', 'de']);
});

test('fed one byte at a time, records appear exactly when their last byte arrives', { timeout: 60_000 }, () => {
  const stream = hex('00000002 6162 80000001 63  80000000  80000004 64656667');
  const { dec, records } = collect();
  const seenAt: number[] = [];
  for (let i = 0; i < stream.length; i++) {
    const before = records.length;
    dec.push(stream.subarray(i, i + 1));
    if (records.length > before) seenAt.push(i);
  }
  assert.deepEqual(records.map(String), ['abc', '', 'defg']);
  assert.deepEqual(seenAt, [10, 14, 22]);
});

test('an empty chunk changes nothing', { timeout: 60_000 }, () => {
  const { dec, records } = collect();
  dec.push(Buffer.alloc(0));
  dec.push(hex('8000'));
  dec.push(Buffer.alloc(0));
  dec.push(hex('0001 7a'));
  assert.deepEqual(records.map(String), ['z']);
});

test('property: any split of a stream of framed records yields the same records', { timeout: 60_000 }, () => {
  const record = fc
    .uint8Array({ maxLength: 48 })
    .chain((d) =>
      fc.array(fc.integer({ min: 0, max: d.length }), { maxLength: 4 }).map((cuts) => ({
        data: Buffer.from(d),
        cuts: cuts.sort((a, b) => a - b),
      })),
    );
  const scenario = fc.array(record, { maxLength: 6 }).chain((recs) => {
    const stream = Buffer.concat(recs.map((r) => fragments(r.data, r.cuts)));
    return fc
      .array(fc.integer({ min: 0, max: stream.length }), { maxLength: 12 })
      .map((splits) => ({ recs, stream, splits: splits.sort((a, b) => a - b) }));
  });
  fc.assert(
    fc.property(scenario, ({ recs, stream, splits }) => {
      const { dec, records } = collect(1024);
      const bounds = [0, ...splits, stream.length];
      for (let i = 0; i + 1 < bounds.length; i++) dec.push(stream.subarray(bounds[i], bounds[i + 1]));
      assert.deepEqual(records, recs.map((r) => r.data));
      assert.equal(dec.partial, false);
      assert.equal(dec.buffered, 0);
    }),
  );
});

test('a record announced over maxRecord throws before any of its body is buffered', { timeout: 60_000 }, () => {
  const { dec, records } = collect(16);
  // Only the header arrives: the decoder must refuse on the announced length alone.
  assert.throws(
    () => dec.push(hex('80000011')),
    (e: unknown) => e instanceof RecordTooLargeError && e.size === 17 && e.max === 16,
  );
  assert.equal(dec.buffered, 0);
  assert.deepEqual(records, []);
});

test('the limit applies to the sum of fragments, checked at each fragment header', { timeout: 60_000 }, () => {
  const { dec } = collect(16);
  dec.push(hex('0000000a' + '00'.repeat(10)));
  assert.equal(dec.buffered, 10);
  assert.throws(() => dec.push(hex('80000007')), (e: unknown) => e instanceof RecordTooLargeError && e.size === 17);
  assert.equal(dec.buffered, 10, 'nothing of the oversized fragment was buffered');
});

test('a record of exactly maxRecord bytes is accepted', { timeout: 60_000 }, () => {
  const { dec, records } = collect(16);
  dec.push(hex('00000008' + '11'.repeat(8) + '80000008' + '22'.repeat(8)));
  assert.equal(records.length, 1);
  assert.equal(records[0].length, 16);
});

test('the largest announceable length (2^31 - 1) is refused without allocating', { timeout: 60_000 }, () => {
  const { dec } = collect(1 << 20);
  assert.throws(() => dec.push(hex('ffffffff')), RecordTooLargeError);
});

test('partial: false when idle, true mid-header, mid-body and between fragments', { timeout: 60_000 }, () => {
  const { dec, records } = collect();
  assert.equal(dec.partial, false);
  dec.push(hex('00'));
  assert.equal(dec.partial, true, 'one header byte');
  dec.push(hex('000002 61'));
  assert.equal(dec.partial, true, 'mid-body');
  assert.equal(dec.buffered, 1);
  dec.push(hex('62'));
  assert.equal(dec.partial, true, 'after a complete non-last fragment');
  dec.push(hex('80000001'));
  assert.equal(dec.partial, true, 'last fragment header, body pending');
  dec.push(hex('63'));
  assert.equal(dec.partial, false, 'record delivered');
  assert.equal(dec.buffered, 0);
  assert.deepEqual(records.map(String), ['abc']);
});

test(
  'partial: true after a zero-length non-last fragment (a record has begun)',
  { timeout: 60_000 },
  () => {
    const { dec } = collect();
    dec.push(hex('00000000'));
    assert.equal(dec.partial, true);
  },
);

test('frameRecord: one last-fragment header carrying the total length, chunks unchanged', { timeout: 60_000 }, () => {
  const a = Buffer.from('abc');
  const b = Buffer.from('defgh');
  const out = frameRecord([a, b]);
  assert.deepEqual(out[0], hex('80000008'));
  assert.equal(out[1], a);
  assert.equal(out[2], b);
  assert.deepEqual(frameRecord([]), [hex('80000000')]);
  const { dec, records } = collect();
  dec.push(Buffer.concat(out));
  assert.deepEqual(records.map(String), ['abcdefgh']);
});

test('a consumer that returns false stops the decoder: the rest of the chunk is held as raw bytes until resume()', () => {
  const got: string[] = [];
  let take = 1;
  const dec = new RecordDecoder((r) => {
    got.push(r.toString());
    return --take > 0;
  }, 1 << 16);
  const stream = Buffer.concat(['a', 'bb', 'ccc', 'dddd'].map((s) => fragments(Buffer.from(s), [])));
  dec.push(stream);
  assert.deepEqual(got, ['a']);
  assert.equal(dec.holding, stream.length - 5, 'the undecoded rest is held');
  assert.throws(() => dec.push(Buffer.alloc(1)), /holding/, 'no push while holding (the stream must be paused)');
  take = 2;
  dec.resume();
  assert.deepEqual(got, ['a', 'bb', 'ccc']);
  take = 10;
  dec.resume();
  assert.deepEqual(got, ['a', 'bb', 'ccc', 'dddd']);
  assert.equal(dec.holding, 0);
});

test('a record in thousands of 1-byte fragments comes out whole (pieces past the first few are copied, not kept as views)', () => {
  const { dec, records } = collect(1 << 16);
  const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => i & 0xff));
  const cuts = Array.from({ length: data.length - 1 }, (_, i) => i + 1);
  const stream = fragments(data, cuts);
  for (let off = 0; off < stream.length; off += 7) dec.push(stream.subarray(off, off + 7));
  assert.equal(records.length, 1);
  assert.deepEqual(records[0], data);
});

test('a record gathered from several pieces goes into the buffer alloc gives (exact length); one piece stays a view; no alloc: a fresh one', () => {
  const body = Buffer.alloc(100_000);
  for (let i = 0; i < body.length; i++) body[i] = (i * 31) & 0xff;
  const given: Buffer[] = [];
  const got: Buffer[] = [];
  const dec = new RecordDecoder((r) => got.push(r), 1 << 20, (n) => {
    const b = Buffer.alloc(n, 0xee);
    given.push(b);
    return b;
  });
  // Two fragments, delivered in 7 KiB chunks: many pieces.
  const stream = fragments(body, [40_000]);
  for (let off = 0; off < stream.length; off += 7 * 1024) dec.push(stream.subarray(off, off + 7 * 1024));
  assert.equal(given.length, 1);
  assert.equal(got[0], given[0], 'the record is the buffer alloc gave');
  assert.ok(got[0].equals(body));
  // One record in one chunk: a view of the chunk, nothing allocated.
  const one = fragments(Buffer.from('small record'), []);
  dec.push(one);
  assert.equal(given.length, 1);
  assert.equal(got[1].toString(), 'small record');
  // alloc declines (undefined): gathered into a buffer of the decoder's own.
  const plain = new RecordDecoder((r) => got.push(r), 1 << 20, () => undefined);
  for (let off = 0; off < stream.length; off += 7 * 1024) plain.push(stream.subarray(off, off + 7 * 1024));
  assert.ok(got[2].equals(body));
});
