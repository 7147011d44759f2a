import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SegmentedLru } from '../../../../src/wrappers/cache/eviction.js';

test('slru: victims come from probation first, oldest first; re-referenced blocks are protected', { timeout: 60_000 }, () => {
  const p = new SegmentedLru('slru');
  for (let i = 0; i < 10; i++) p.insert(`b${i}`, 10);
  p.touch('b0', true);
  p.touch('b1', true);
  p.touch('b2', false); // a hit that is not a re-reference: back of probation's queue
  assert.deepEqual(p.evict(50), ['b3', 'b4', 'b5', 'b6', 'b7']);
  assert.equal(p.used, 50);
  assert.deepEqual(p.protectedKeys(), ['b0', 'b1']);
  assert.ok(p.has('b2') && p.has('b8') && p.has('b9'));
});

test('slru: a scan of 20x the capacity leaves a hot set that stays in use', { timeout: 60_000 }, () => {
  const p = new SegmentedLru('slru');
  const hot = Array.from({ length: 5 }, (_, i) => `h${i}`);
  for (const k of hot) p.insert(k, 10);
  for (const k of hot) p.touch(k, true);
  for (let i = 0; i < 200; i++) {
    p.insert(`s${i}`, 10);
    assert.ok(p.evict(100).every((k) => k.startsWith('s')), 'only scan blocks are evicted');
    if (i % 10 === 0) for (const k of hot) p.touch(k, true);
  }
  assert.ok(p.used <= 100);
});

test('lru without re-use during the scan loses the hot set; slru keeps it', { timeout: 60_000 }, () => {
  for (const policy of ['slru', 'lru'] as const) {
    const p = new SegmentedLru(policy);
    for (let i = 0; i < 5; i++) p.insert(`h${i}`, 10);
    for (let i = 0; i < 5; i++) p.touch(`h${i}`, true);
    for (let i = 0; i < 200; i++) {
      p.insert(`s${i}`, 10);
      p.evict(100);
    }
    const kept = Array.from({ length: 5 }, (_, i) => p.has(`h${i}`)).filter(Boolean).length;
    assert.equal(kept, policy === 'slru' ? 5 : 0, policy);
  }
});

test('slru: protected is capped at its share; the overflow is demoted, not dropped', { timeout: 60_000 }, () => {
  const p = new SegmentedLru('slru', 0.5);
  for (let i = 0; i < 10; i++) p.insert(`b${i}`, 10);
  p.evict(100);
  for (let i = 0; i < 10; i++) p.touch(`b${i}`, true);
  assert.equal(p.protectedUsed, 50);
  assert.equal(p.count, 10);
  assert.deepEqual(p.evict(60), ['b0', 'b1', 'b2', 'b3']);
});

test('slru: remove and re-insert keep the byte count exact', { timeout: 60_000 }, () => {
  const p = new SegmentedLru('slru');
  p.insert('a', 7);
  p.insert('b', 5, true);
  p.insert('a', 9);
  assert.equal(p.used, 14);
  assert.ok(p.remove('b'));
  assert.ok(!p.remove('b'));
  assert.equal(p.used, 9);
});
