import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fuseSkip } from '../fuse/mount-helper.js';
import { aliceRequest, makeExports, startCluster, type Cluster } from '../../helpers/services.js';

/** Issue 20, step 4: "consistency":"callback" in the session spec (refused without a cache), shown per mount, and the mounts work under it. */
describe('session service: a session created with the callback model', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster();
    await makeExports(c);
  });
  after(async () => {
    await c?.stop();
  });

  test('created with consistency callback: every mount runs it; writes land on the server at the flush and at the end', async () => {
    const refused = await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'ncb', { cache: { mode: 'none' }, consistency: 'callback' }));
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'NO_CACHE');

    const s = (await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'cb', { consistency: 'callback' }))).body;
    assert.equal(s.state, 'ready', JSON.stringify(s));
    assert.equal(s.consistency, 'callback');
    const st = (await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body;
    assert.deepEqual(st.stats.mounts.map((m: any) => m.consistency), ['callback', 'callback']);
    const data = s.mounts[1];
    const server = path.join(c.hosts.data.exports, 'alice');
    await fs.writeFile(path.join(data, 'cb.txt'), 'under a write delegation');
    assert.equal(await fs.readFile(path.join(data, 'cb.txt'), 'utf8'), 'under a write delegation');
    const fl = await c.api(c.tokens.alice, 'POST', `/sessions/${s.id}/flush`);
    assert.equal(fl.status, 200, JSON.stringify(fl.body));
    assert.equal(await fs.readFile(path.join(server, 'cb.txt'), 'utf8'), 'under a write delegation');
    await fs.writeFile(path.join(data, 'cb2.txt'), 'delivered at the end');
    assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`)).body.state, 'destroyed');
    assert.equal(await fs.readFile(path.join(server, 'cb2.txt'), 'utf8'), 'delivered at the end');
  });
});
