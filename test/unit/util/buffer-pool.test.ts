import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BufferPool, sizeClass } from '../../../src/util/buffer-pool.js';

describe('BufferPool', () => {
  test('hands out exact lengths; a buffer given back is handed out again (same memory)', () => {
    const pool = new BufferPool(1024, 1 << 20, 4 << 20);
    assert.equal(pool.take(1023), undefined, 'below the pooled sizes');
    assert.equal(pool.take((1 << 20) + 1), undefined, 'above them');
    const a = pool.take(5000)!;
    assert.equal(a.length, 5000);
    assert.equal(a.buffer.byteLength, 8192, 'its own ArrayBuffer, of its size class');
    pool.give(a);
    assert.equal(pool.held, 8192);
    const b = pool.take(7000)!;
    assert.equal(b.buffer, a.buffer, 'the same memory again');
    assert.equal(pool.reused, 1);
    assert.equal(pool.held, 0);
    const c = pool.take(7000)!;
    assert.notEqual(c.buffer, b.buffer, 'one holder per buffer');
  });

  test('a buffer given twice, or never handed out, is ignored: never two holders', () => {
    const pool = new BufferPool(1024, 1 << 20, 4 << 20);
    const a = pool.take(4096)!;
    pool.give(a);
    pool.give(a);
    pool.give(Buffer.alloc(4096));
    assert.equal(pool.held, 4096);
    const x = pool.take(4096)!;
    const y = pool.take(4096)!;
    assert.equal(x.buffer, a.buffer);
    assert.notEqual(y.buffer, x.buffer);
  });

  test('size classes: an eighth of the power of two, so a 1 MiB payload plus its header is not handed 2 MiB', () => {
    assert.equal(sizeClass(1), 4096);
    assert.equal(sizeClass(4096), 4096);
    assert.equal(sizeClass(5000), 8192);
    assert.equal(sizeClass(1 << 20), 1 << 20);
    assert.equal(sizeClass((1 << 20) + 120), (1 << 20) + (1 << 17));
    assert.equal(sizeClass((1 << 20) + 200), sizeClass((1 << 20) + 120), 'replies of one payload size share a class');
    for (let n = 1; n < 1 << 24; n = Math.ceil(n * 1.37)) {
      const c = sizeClass(n);
      assert.ok(c >= n && (c - n) / n <= 0.125 + 4096 / n, `${n} → ${c}`);
    }
    const pool = new BufferPool(64 * 1024, 4 << 20, 8 << 20);
    const r = pool.take((1 << 20) + 120)!;
    assert.equal(r.buffer.byteLength, (1 << 20) + (1 << 17));
    pool.give(r);
    assert.equal(pool.take((1 << 20) + 150)!.buffer, r.buffer);
  });

  test('keeps at most maxBytes of free buffers', () => {
    const pool = new BufferPool(1024, 1 << 20, 3 << 20);
    const bufs = [1, 2, 3, 4, 5].map(() => pool.take(1 << 20)!);
    for (const b of bufs) pool.give(b);
    assert.equal(pool.held, 3 << 20);
  });
});
