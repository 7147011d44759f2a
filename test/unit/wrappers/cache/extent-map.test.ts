import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import '../../../helpers/fc-seed.js';
import { ExtentMap } from '../../../../src/wrappers/cache/extent-map.js';

/** Model: per byte, the seq of the write that wrote it last (0: never). */
function model(writes: Array<{ start: number; len: number }>, upTo = 0): number[] {
  const m = new Array(300).fill(0);
  writes.forEach((w, i) => {
    for (let b = w.start; b < w.start + w.len; b++) m[b] = i + 1;
  });
  return m.map((s) => (s > upTo ? s : 0));
}

function fromMap(x: ExtentMap): number[] {
  const m = new Array(300).fill(0);
  for (const e of x.all()) {
    for (let b = e.start; b < e.end; b++) {
      assert.equal(m[b], 0, 'extents overlap');
      m[b] = e.seq;
      // pos moves with start: the byte's journal position is pos0 of its write + (b - write start)
      assert.equal(e.pos + (b - e.start), e.seq * 1000 + b);
    }
  }
  return m;
}

test('property: newest write wins per byte; positions follow the bytes; dropUpTo forgets delivered records', { timeout: 60_000 }, () => {
  fc.assert(
    fc.property(fc.array(fc.record({ start: fc.nat(250), len: fc.integer({ min: 1, max: 49 }) }), { maxLength: 40 }), fc.nat(45), (writes, upTo) => {
      const x = new ExtentMap();
      writes.forEach((w, i) => x.insert({ start: w.start, end: w.start + w.len, seq: i + 1, seg: 1, pos: (i + 1) * 1000 + w.start }));
      assert.deepEqual(fromMap(x), model(writes));
      assert.equal(x.bytes, model(writes).filter(Boolean).length);
      assert.equal(x.maxEnd, Math.max(0, ...writes.map((w) => w.start + w.len)));
      const q = x.query(40, 120);
      for (const e of q) assert.ok(e.start >= 40 && e.end <= 120);
      x.dropUpTo(upTo);
      assert.deepEqual(fromMap(x), model(writes, upTo));
      assert.equal(x.bytes, model(writes, upTo).filter(Boolean).length);
    }),
  );
});
