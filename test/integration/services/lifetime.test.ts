import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fuseSkip } from '../fuse/mount-helper.js';
import { aliceRequest, makeExports, mountsUnder, startCluster, until, type Cluster } from '../../helpers/services.js';

describe('lifetimes: expiry (flush first), renew, and a session service restart', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster();
    await makeExports(c);
  });
  after(async () => {
    await c?.stop();
  });

  const state = async (id: string) => (await c.api(c.tokens.alice, 'GET', `/sessions/${id}?stats=false`)).body.state;

  test('a renewed session outlives one that expires; the expired one is torn down with its write-back data flushed, across a restart of the session service', async () => {
    // Both made with a long lifetime (however slow their creation, neither can end early); then the renewals set
    // the expiries: B short, A short, B long again. B's short expiry comes before A's, so when A has ended,
    // B would have ended too, had its last renewal not counted.
    const b = (await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'b', { lifetime: 600 }))).body;
    assert.equal(b.state, 'ready', JSON.stringify(b));
    const a0 = (await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'a', { lifetime: 600, cache: { mode: 'write-back', dirtyMaxAge: 3600 } }))).body;
    assert.equal(a0.state, 'ready', JSON.stringify(a0));
    const short = await c.api(c.tokens.alice, 'POST', `/sessions/${b.id}/renew`, { lifetime: 10 });
    assert.equal(short.status, 200);
    assert.ok(short.body.timeLeft <= 10, JSON.stringify(short.body));
    const a = (await c.api(c.tokens.alice, 'POST', `/sessions/${a0.id}/renew`, { lifetime: 10 })).body;
    assert.ok(Date.parse(a.expiresAt) >= Date.parse(short.body.expiresAt));
    const renewed = await c.api(c.tokens.alice, 'POST', `/sessions/${b.id}/renew`, { lifetime: 600 });
    assert.equal(renewed.status, 200);
    assert.ok(renewed.body.timeLeft > 500, JSON.stringify(renewed.body));
    assert.equal(renewed.body.lifetime, 600);

    // Written through A's mount, held in its write-back cache (an hour's dirty age): only the teardown sends it.
    await fs.writeFile(path.join(a.mounts[1], 'expiring.txt'), 'flushed at expiry');
    const before = (await c.api(c.tokens.alice, 'GET', `/sessions/${a.id}`)).body;
    assert.ok(before.stats.totals.dirtyBytes > 0, JSON.stringify(before.stats));

    // The service restarts (killed): sessions and their expiry times are kept.
    await c.restartSessiond();
    const afterRestart = (await c.api(c.tokens.alice, 'GET', `/sessions/${a.id}?stats=false`)).body;
    assert.equal(afterRestart.expiresAt, a.expiresAt);
    assert.equal((await c.api(c.tokens.alice, 'GET', `/sessions/${b.id}?stats=false`)).body.expiresAt, renewed.body.expiresAt);

    await until('A to expire and be torn down', async () => (await state(a.id)) === 'destroyed', 60_000);
    const ended = (await c.api(c.tokens.alice, 'GET', `/sessions/${a.id}`)).body;
    assert.equal(ended.reason, 'lifetime expired');
    assert.equal(await fs.readFile(path.join(c.hosts.data.exports, 'alice', 'expiring.txt'), 'utf8'), 'flushed at expiry');
    assert.deepEqual(await mountsUnder(path.join(c.hosts.compute.mnt, 'a')), []);

    assert.equal(await state(b.id), 'ready');
    assert.equal((await mountsUnder(path.join(c.hosts.compute.mnt, 'b'))).length, 2);
    // Renewing an ended session is refused.
    const late = await c.api(c.tokens.alice, 'POST', `/sessions/${a.id}/renew`, {});
    assert.equal(late.status, 409);
    assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${b.id}`)).body.state, 'destroyed');
  });
});
