import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { DIRECT_FRAGMENT_BYTES, RecordDecoder } from '../../../src/rpc/record.js';

/**
 * Direct reads (perf, issue 19): with `directReads`, a large fragment that
 * has not fully arrived gets its own buffer when its header is decoded; the
 * caller reads the rest of it into `directTarget()` and reports it with
 * `directFilled(n)`. The records delivered must be byte for byte those
 * sent, however the stream is cut between pushed chunks and direct reads,
 * and a single-fragment record must come out as that one buffer (no copy).
 */
const header = (len: number, last = true) => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(((last ? 0x8000_0000 : 0) + len) >>> 0);
  return h;
};

function decoder(direct = true) {
  const records: Buffer[] = [];
  const dec = new RecordDecoder((r) => records.push(r), 4 << 20);
  dec.directReads = direct;
  return { dec, records };
}

/** Feed `stream` as a socket with direct reads would: aimed reads of at most `step` bytes into the target, else chunks of `step`. */
function feed(dec: RecordDecoder, stream: Buffer, step: number): number {
  let off = 0;
  let aimed = 0;
  while (off < stream.length) {
    const t = dec.directTarget();
    if (t) {
      const n = Math.min(step, t.length, stream.length - off);
      stream.copy(t, 0, off, off + n);
      dec.directFilled(n);
      aimed += n;
      off += n;
    } else {
      const n = Math.min(step, stream.length - off);
      dec.push(Buffer.from(stream.subarray(off, off + n)));
      off += n;
    }
  }
  return aimed;
}

describe('record decoder: direct reads into large fragments', { timeout: 60_000 }, () => {
  test('a 1 MiB record read mostly into its own buffer arrives intact, as that one buffer, with the records around it', () => {
    const { dec, records } = decoder();
    const small1 = randomBytes(100);
    const big = randomBytes(1 << 20);
    const small2 = randomBytes(3000);
    const stream = Buffer.concat([header(small1.length), small1, header(big.length), big, header(small2.length), small2]);
    const aimed = feed(dec, stream, 65536);
    assert.equal(records.length, 3);
    assert.ok(records[0].equals(small1));
    assert.ok(records[1].equals(big), 'the large record differs from what was sent');
    assert.ok(records[2].equals(small2));
    assert.ok(aimed > big.length - 65536, `only ${aimed} of ${big.length} bytes were read directly`);
    assert.equal(dec.directBytes, aimed);
    // One buffer of exactly the fragment's length: not gathered from chunks.
    assert.equal(records[1].byteOffset, 0);
    assert.equal(records[1].buffer.byteLength, big.length);
    assert.equal(dec.partial, false);
  });

  test('odd read sizes, multi-fragment records mixing large and small fragments, and fragments just under the threshold', () => {
    for (const step of [1, 7, 4093, 65536, 200_000]) {
      const { dec, records } = decoder();
      const parts = [randomBytes(DIRECT_FRAGMENT_BYTES - 1), randomBytes(DIRECT_FRAGMENT_BYTES), randomBytes(10), randomBytes(300_000)];
      const rec2 = randomBytes(DIRECT_FRAGMENT_BYTES + 1);
      const stream = Buffer.concat([
        ...parts.flatMap((p, i) => [header(p.length, i === parts.length - 1), p]),
        header(rec2.length),
        rec2,
        header(0),
      ]);
      feed(dec, stream, step);
      assert.equal(records.length, 3, `step ${step}`);
      assert.ok(records[0].equals(Buffer.concat(parts)), `step ${step}: multi-fragment record differs`);
      assert.ok(records[1].equals(rec2), `step ${step}`);
      assert.equal(records[2].length, 0);
    }
  });

  test('without directReads (server side: untrusted peers), nothing is allocated ahead of the bytes: no target is offered', () => {
    const { dec, records } = decoder(false);
    const big = randomBytes(300_000);
    dec.push(Buffer.concat([header(big.length), big.subarray(0, 1000)]));
    assert.equal(dec.directTarget(), undefined);
    assert.equal(dec.buffered, 1000);
    dec.push(big.subarray(1000));
    assert.ok(records[0].equals(big));
    assert.throws(() => dec.directFilled(1), /without a matching directTarget/);
  });
});
