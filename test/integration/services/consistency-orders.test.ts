import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fuseSkip } from '../fuse/mount-helper.js';
import { aliceRequest, makeExports, startCluster, type Cluster } from '../../helpers/services.js';

/** Issue 20 through the session service: the consistency model in the session spec, changed live, and invalidation orders. */
describe('session service: consistency model (PATCH) and invalidate / flush orders', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster();
    await makeExports(c);
  });
  after(async () => {
    await c?.stop();
  });

  const until = async (what: string, ok: () => Promise<boolean>, ms: number) => {
    for (const t0 = Date.now(); !(await ok()); await new Promise((r) => setTimeout(r, 50))) if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
  };

  test('a poll session: the model shows per mount, changes live, and an order makes a change on the server disk show', async () => {
    // A poll session without a cache is refused: the model lives in the cache.
    const refused = await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'nc', { cache: { mode: 'none' }, consistency: 'poll' }));
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'NO_CACHE');

    const s = (await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'cp', { consistency: 'poll', pollPeriod: 2 }))).body;
    assert.equal(s.state, 'ready', JSON.stringify(s));
    assert.equal(s.consistency, 'poll');
    const data = s.mounts[1];
    const server = path.join(c.hosts.data.exports, 'alice');
    await fs.writeFile(path.join(data, 'f.txt'), 'one');
    await c.api(c.tokens.alice, 'POST', `/sessions/${s.id}/flush`);
    assert.equal(await fs.readFile(path.join(server, 'f.txt'), 'utf8'), 'one');
    const st = (await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body;
    assert.deepEqual(st.stats.mounts.map((m: any) => m.consistency), ['poll', 'poll']);
    // The flush's own WRITE is in the change log: the next poll drops f.txt and the cache asks the server again. Wait
    // for two polls after the flush (one began after it), so that refetch happens before the server's copy changes.
    const polls = async () => (await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body.stats.mounts[1].polls as number;
    const p0 = await polls();
    await until('two polls after the flush', async () => (await polls()) >= p0 + 2, 30_000);

    // A change made on the server's own disk (not through GVFS) is not in the change log: the poll cache keeps the old
    // version... Read through a descriptor kept open: an open asks the server's ACCESS as the caller, and the
    // attributes that answer carries are news the cache takes (a new open past half the attribute timeout may show
    // the change); a read of an open file asks only GETATTR once the kernel's attributes are 1 s old.
    const fh = await fs.open(path.join(data, 'f.txt'), 'r');
    try {
      const text = async () => {
        const b = Buffer.alloc(64);
        const { bytesRead } = await fh.read(b, 0, 64, 0);
        return b.subarray(0, bytesRead).toString();
      };
      assert.equal(await text(), 'one');
      await fs.writeFile(path.join(server, 'f.txt'), 'two, written on the server');
      // Past the kernel's attribute timeout (1 s). The period is 2 s, not 0.5, because a poll more than a period late
      // makes the cache trust nothing and ask the server (which would show the change).
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(await text(), 'one', 'the poll cache was expected to trust its copy');
      // ... until the session service orders the mount to drop it: the cache drops it, the mount tells the kernel its
      // attributes are stale, and the kernel drops its pages when the next GETATTR shows the server's new size.
      const order = await c.api(c.tokens.alice, 'POST', `/sessions/${s.id}/invalidate`, { mountpoint: data, path: 'f.txt' });
      assert.equal(order.status, 200, JSON.stringify(order.body));
      assert.deepEqual(order.body.mounts.map((m: any) => m.invalidated), [1]);
      await until('the ordered invalidation shows through the open descriptor', async () => (await text()) === 'two, written on the server', 5_000);
    } finally {
      await fh.close();
    }

    // Live change of the model, then back.
    const p = await c.api(c.tokens.alice, 'PATCH', `/sessions/${s.id}`, { consistency: 'ttl' });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal(p.body.consistency, 'ttl');
    assert.deepEqual(p.body.stats.mounts.map((m: any) => m.consistency), ['ttl', 'ttl']);
    const q = await c.api(c.tokens.alice, 'PATCH', `/sessions/${s.id}`, { consistency: 'poll', pollPeriod: 1 });
    assert.deepEqual(q.body.stats.mounts.map((m: any) => m.consistency), ['poll', 'poll']);
    const cb = await c.api(c.tokens.alice, 'PATCH', `/sessions/${s.id}`, { consistency: 'callback' });
    assert.equal(cb.status, 400, 'callback is not built: refused by the schema');
    assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`)).body.state, 'destroyed');
  });
});
