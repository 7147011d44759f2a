import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import { Relay } from '../../helpers/relay.js';
import { ROOT, startCacheChain, type CacheChain, type Session } from './helpers.js';

/**
 * Callback model, leases (issue 20, step 2) with a short lease: an idle
 * holder renews (one RENEW per third of a lease, whatever it holds) and so
 * is recalled, not revoked; delegations go back when the cache drops the
 * file (an invalidate order, the session's end); a holder cut off by a
 * frozen relay stops trusting its delegations before the server's lease
 * ends, never answers from its cache after that, and its late flush is
 * refused.
 */
const LEASE_MS = 2000;

async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('callback: RENEW, RETURN and the client-side lease', { timeout: 240_000 }, () => {
  let c: CacheChain;
  let b: Session;
  const cache = { consistency: 'callback' as const, writeBack: true, maxDirtyAgeMs: 3_600_000, attrTimeoutMs: 3_600_000 };
  const onServer = (name: string) => fs.readFile(path.join(c.exportDir, name), 'utf8');

  before(async () => {
    c = await startCacheChain({ delegationLeaseMs: LEASE_MS });
    b = await c.startSession({ cacheDir: path.join(c.base, 'cache-b'), cache });
  });
  after(async () => {
    await c?.stop();
  });

  it('the cache gives delegations back when it drops files: an invalidate order, the end of the session', async () => {
    const a = await c.startSession({ cacheDir: path.join(c.base, 'cache-a0'), cache });
    const base = c.proxyServer.delegations.delegatedFiles;
    const x = (await a.client.create(ROOT, a.root, 'x', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
    await a.client.getattr(ROOT, x);
    assert.ok(c.proxyServer.delegations.delegatedFiles > base, 'A holds delegations');
    await a.cache.invalidateOrder();
    assert.equal(c.proxyServer.delegations.delegatedFiles, base, 'given back on the order');
    await a.client.getattr(ROOT, x);
    await a.client.write(ROOT, x, 0, Buffer.from('x by A'), StableHow.UNSTABLE);
    assert.ok(c.proxyServer.delegations.delegatedFiles > base);
    await a.stop();
    assert.equal(c.proxyServer.delegations.delegatedFiles, base, 'given back at the end of the session, after the flush');
    assert.equal(await onServer('x'), 'x by A');
  });

  it('an idle holder renews all its leases with one call per period, and is recalled (not revoked) long after its grant', async () => {
    const a = await c.startSession({ cacheDir: path.join(c.base, 'cache-a1'), cache });
    const names = ['i1', 'i2', 'i3', 'i4'];
    for (const n of names) {
      const fh = (await a.client.create(ROOT, a.root, n, { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } })).fh!;
      await a.client.write(ROOT, fh, 0, Buffer.from(`${n} by A\n`), StableHow.UNSTABLE);
    }
    assert.equal(await onServer('i1'), '');
    // A's own RENEW calls (the server's count would include other sessions').
    const renewCalls = () => a.cache.held!.c.renewals + a.cache.held!.c.renewFailures;
    const r0 = renewCalls();
    const t0 = Date.now();
    // Idle for three leases.
    await new Promise((r) => setTimeout(r, 3 * LEASE_MS));
    const calls = renewCalls() - r0;
    const periods = (Date.now() - t0) / (LEASE_MS / 3);
    assert.ok(calls >= 3, `A renewed (${calls} RENEW calls)`);
    assert.ok(calls <= periods + 2, `one RENEW per period for the ${names.length} files, not one per file (${calls} calls in ${periods.toFixed(1)} periods)`);
    const revoked = c.proxyServer.delegations.c.revoked;
    const recalled = c.proxyServer.delegations.c.recalled;
    const fb = await b.lookup('i1');
    const got = (await b.client.read(ROOT, fb, 0, 100)).data.toString();
    assert.equal(got, 'i1 by A\n', "B reads A's bytes: A was recalled and flushed");
    assert.equal(c.proxyServer.delegations.c.revoked, revoked, 'not revoked');
    assert.ok(c.proxyServer.delegations.c.recalled > recalled);
    await a.stop();
  });

  it('a holder cut off stops trusting before the server lease ends: no stale answer, and its late flush is refused', async () => {
    const relay = new Relay(() => c.proxyServerPort);
    await relay.listen();
    // The cache's calls to the proxy server give up after 2 s (a frozen link must fail the call, not hang it).
    const a = await c.startSession({ port: relay.port, cacheDir: path.join(c.base, 'cache-a2'), cache, timeoutMs: 2000 });
    try {
      const p = (await a.client.create(ROOT, a.root, 'p', { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } })).fh!;
      const q = (await a.client.create(ROOT, a.root, 'q', { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } })).fh!;
      const pBefore = await a.client.getattr(ROOT, p); // read delegation of p
      await a.client.write(ROOT, q, 0, Buffer.from('q by A, late\n'), StableHow.UNSTABLE); // write delegation of q, bytes in the journal
      const held = a.cache.held!;
      await until('A holds its delegations', () => held.trusted() && held.count >= 2);
      relay.freeze();
      await until('A stops trusting its delegations', () => !held.trusted(), 30_000);
      const end = c.proxyServer.delegations.leaseEnd(a.key.id)!;
      assert.ok(Date.now() < end, `A stopped trusting ${end - Date.now()} ms before the server's lease ends`);
      // B changes both files: A does not answer, its lease ends, it is revoked.
      const fp = await b.lookup('p');
      const fq = await b.lookup('q');
      await b.client.write(ROOT, fp, 0, Buffer.from('p by B, newer\n'), StableHow.FILE_SYNC);
      await b.client.write(ROOT, fq, 0, Buffer.from('q by B, newer\n'), StableHow.FILE_SYNC);
      await b.cache.flush();
      assert.equal(await onServer('p'), 'p by B, newer\n');
      assert.ok(c.proxyServer.delegations.c.revoked >= 2);
      // A, still cut off, never answers p's attributes from its cache.
      await assert.rejects(a.client.getattr(ROOT, p), 'A asks the server (unreachable) instead of trusting its cache');
      relay.thaw();
      const pNow = await a.client.getattr(ROOT, p);
      assert.notEqual(Number(pNow.size), Number(pBefore.size), 'A sees the new p once it can ask');
      const r = await a.cache.flush();
      assert.equal(r.failed.length, 1, "A's late flush of q is refused");
      assert.equal(r.failed[0].code, 'ACCES');
      assert.equal(await onServer('q'), 'q by B, newer\n', 'no late overwrite');
      assert.ok(a.cache.stats().dirtyBytes > 0, "A's bytes are kept in its journal (and reported), not dropped silently");
      await a.cache.flush({ discard: true });
    } finally {
      relay.close();
      await a.stop().catch(() => undefined);
    }
  });
});
