import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { heldAnswersOf, type HeldAnswers } from '../../../src/backend/capabilities.js';
import { isFsError } from '../../../src/backend/errors.js';
import { until } from '../../helpers/services.js';
import { ROOT, startCacheChain, type CacheChain, type Session } from './helpers.js';

/**
 * The cache's held answers (backend/capabilities.ts HeldAnswers) under the
 * ttl model: how much longer it gives a name or attributes without asking,
 * counted from when the server said them, and renewing ahead — an answer
 * asked for in the second half of its trust is fetched again in the
 * background, so a caller asking again before the trust runs out never
 * waits for the server.
 */
describe('cache: held answers and renewing ahead (ttl)', { timeout: 120_000 }, () => {
  let c: CacheChain;
  let s: Session;
  let held: HeldAnswers;
  const TTL = 1000;

  before(async () => {
    c = await startCacheChain();
    s = await c.startSession({ cache: { writeBack: false, attrTimeoutMs: TTL } });
    held = heldAnswersOf(s.cache)!;
    await fs.writeFile(path.join(c.exportDir, 'f'), 'one');
    await fs.writeFile(path.join(c.exportDir, 'gone'), 'two');
  });
  after(async () => {
    await c?.stop();
  });

  const calls = () => ({ lookup: c.upstreamCalls('LOOKUP'), getattr: c.upstreamCalls('GETATTR') });

  it('declares the capability; trust starts at the budget when the server answers and runs down', async () => {
    assert.ok(held, 'the cache declares HeldAnswers');
    assert.equal(held.nameTrust(s.root, 'f'), 0, 'a name never looked up: not held');
    const t0 = Date.now();
    const { fh } = await s.cache.lookup(ROOT, s.root, 'f');
    const name = held.nameTrust(s.root, 'f');
    const attr = held.attrTrust(fh);
    const took = Date.now() - t0;
    for (const [what, v] of [['name', name], ['attributes', attr]] as const) {
      assert.ok(v <= TTL && v >= TTL - took - 5, `${what}: ${v} ms left, right after the answer (${took} ms)`);
    }
    await until('the trust to run down', () => held.nameTrust(s.root, 'f') < name - 50, 5000);
    // Both count whole milliseconds, read one after the other: the attributes' may be a tick behind the name's.
    const [nameNow, attrNow] = [held.nameTrust(s.root, 'f'), held.attrTrust(fh)];
    assert.ok(attrNow < attr - 40, `the attributes run down with it: ${attr} → ${attrNow} ms, the name ${name} → ${nameNow} ms`);
  });

  it('asked again every tenth of the budget for five budgets: renewed in the background, never a miss', async () => {
    const { fh } = await s.cache.lookup(ROOT, s.root, 'f');
    await s.cache.getattr(ROOT, fh);
    const st0 = s.cache.stats();
    const was = calls();
    const end = Date.now() + 5 * TTL;
    let asks = 0;
    while (Date.now() < end) {
      const x = await s.cache.lookup(ROOT, s.root, 'f');
      assert.deepEqual(x.fh, fh);
      assert.equal((await s.cache.getattr(ROOT, fh)).size, 3);
      asks++;
      await delay(TTL / 10);
    }
    const st = s.cache.stats();
    const now = calls();
    // A loaded machine may hold a step past the second half once; without renewing it would miss on every budget.
    assert.ok(st.lookupMisses - st0.lookupMisses <= 1, `name misses: ${st.lookupMisses - st0.lookupMisses} in ${asks} asks`);
    assert.ok(st.attrMisses - st0.attrMisses <= 1, `attribute misses: ${st.attrMisses - st0.attrMisses} in ${asks} asks`);
    assert.ok(st.renewals - st0.renewals >= 6, `renewals: ${st.renewals - st0.renewals}`);
    // Renewing is one call per answer per half budget at most, however often it is asked for.
    assert.ok(now.lookup - was.lookup <= 12 && now.getattr - was.getattr <= 12, `calls: ${JSON.stringify({ was, now })} in ${asks} asks`);
  });

  it('a name removed on the server: its renewal drops it, before its trust would have run out', async () => {
    const dir = s.root;
    await s.cache.lookup(ROOT, dir, 'gone');
    await until('the second half', () => held.nameTrust(dir, 'gone') <= TTL / 2, 5000);
    await fs.rm(path.join(c.exportDir, 'gone'));
    const was = calls().lookup;
    const runsOut = Date.now() + held.nameTrust(dir, 'gone');
    // Still answered (it is within its trust), and the answer starts the renewal.
    await s.cache.lookup(ROOT, dir, 'gone');
    await until('the renewal', () => calls().lookup > was, 5000);
    await until('the name dropped', () => held.nameTrust(dir, 'gone') === 0, 5000);
    assert.ok(Date.now() < runsOut, `dropped by the renewal's answer, ${runsOut - Date.now()} ms before it would have run out`);
    await assert.rejects(s.cache.lookup(ROOT, dir, 'gone'), (e: unknown) => isFsError(e, 'NOENT'));
  });

  it('attribute timeout 0: nothing held, nothing renewed', async () => {
    const z = await c.startSession({ cacheDir: path.join(c.base, 'cache-0'), cache: { writeBack: false, attrTimeoutMs: 0 } });
    try {
      const h = heldAnswersOf(z.cache)!;
      const { fh } = await z.cache.lookup(ROOT, z.root, 'f');
      await z.cache.getattr(ROOT, fh);
      assert.equal(h.nameTrust(z.root, 'f'), 0);
      assert.equal(h.attrTrust(fh), 0);
      await z.cache.getattr(ROOT, fh);
      assert.equal(z.cache.stats().renewals, 0);
    } finally {
      await z.stop();
    }
  });
});
