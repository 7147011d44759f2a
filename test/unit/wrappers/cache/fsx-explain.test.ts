import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { byteOf, explainMismatch, type FsxOp } from '../../../integration/cache/fsx-explain.js';

/** The bytes fsx.test.ts writes for op i (its data names the op). */
function opData(i: number, len: number): Buffer {
  const data = Buffer.alloc(len, i & 0xff);
  for (let k = 0; k + 4 <= len; k += 512) data.writeUInt32LE((i * 65537 + k) >>> 0, k);
  return data;
}

describe('fsx mismatch explanation', { timeout: 30_000 }, () => {
  test('byteOf regenerates what a write put at any offset', () => {
    const w: FsxOp = { i: 300, kind: 'write', off: 1000, len: 3000 };
    const d = opData(300, 3000);
    for (let k = 0; k < 3000; k++) assert.equal(byteOf(w, 1000 + k), d[k], `byte ${k}`);
  });

  test('a stale block from before a truncate is named: the op that wrote it, and what was expected', () => {
    const history: FsxOp[] = [
      { i: 5, kind: 'write', off: 100, len: 1000 },
      { i: 9, kind: 'write', off: 40_000, len: 2000 },
      { i: 12, kind: 'truncate', off: 0, len: 0, from: 42_000 },
      { i: 13, kind: 'truncate', off: 50_000, len: 0, from: 0 },
    ];
    const want = Buffer.alloc(50_000);
    const got = Buffer.alloc(50_000);
    opData(9, 2000).copy(got, 40_000); // op 9's bytes survived the truncate to 0
    const msg = explainMismatch(history, 0, got, want, 16_384);
    assert.match(msg, /first difference at file offset 40000 \(block 2 \+7232\)/);
    assert.match(msg, /expected there: zeros past truncate op 12/);
    assert.match(msg, /found there: write op 9 \(40000\+2000/);
    // A read that starts inside the region reports file offsets, not buffer offsets.
    const msg2 = explainMismatch(history, 39_000, got.subarray(39_000, 45_000), want.subarray(39_000, 45_000), 16_384);
    assert.match(msg2, /first difference at file offset 40000/);
    assert.match(msg2, /found there: write op 9/);
  });

  test('a lost write shows the older write (or zeros) found where the newer one should be', () => {
    const history: FsxOp[] = [
      { i: 1, kind: 'write', off: 0, len: 8192 },
      { i: 2, kind: 'write', off: 4096, len: 1000 },
    ];
    const want = opData(1, 8192);
    opData(2, 1000).copy(want, 4096);
    const got = opData(1, 8192); // op 2 never landed
    const msg = explainMismatch(history, 0, got, want, 16_384);
    assert.match(msg, /expected there: write op 2 \(4096\+1000/);
    assert.match(msg, /found there: write op 1 \(0\+8192/);
    assert.match(msg, /first differing run \d+ bytes/);
    assert.equal(explainMismatch(history, 0, want, want, 16_384), 'no difference');
  });
});
