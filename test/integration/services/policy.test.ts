import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fuseSkip } from '../fuse/mount-helper.js';
import { aliceRequest, gvfs, makeExports, startCluster, type Cluster } from '../../helpers/services.js';

describe('live policy change (PATCH)', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster();
    await makeExports(c);
  });
  after(async () => {
    await c?.stop();
  });

  test('write-back → write-through while mounted: the backlog is delivered at once and later writes go straight to the server', async () => {
    const s = (await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'p', { cache: { mode: 'write-back', dirtyMaxAge: 3600 } }))).body;
    assert.equal(s.state, 'ready', JSON.stringify(s));
    const data = s.mounts[1];
    const server = path.join(c.hosts.data.exports, 'alice');
    await fs.writeFile(path.join(data, 'before.txt'), 'journalled');
    // Write-back: the server has the name (namespace operations go through) but not the data yet (an hour's dirty age).
    assert.equal(await fs.readFile(path.join(server, 'before.txt'), 'utf8'), '');
    const st = (await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body;
    assert.ok(st.stats.totals.dirtyBytes > 0);

    const p = await c.api(c.tokens.alice, 'PATCH', `/sessions/${s.id}`, { cache: { mode: 'write-through' }, attrTimeout: 0.5 });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.deepEqual(p.body.stats.mounts.map((m: any) => m.mode), ['write-through', 'write-through']);
    assert.equal(p.body.stats.totals.dirtyBytes, 0);
    assert.equal(await fs.readFile(path.join(server, 'before.txt'), 'utf8'), 'journalled');
    await fs.writeFile(path.join(data, 'after.txt'), 'straight through');
    assert.equal(await fs.readFile(path.join(server, 'after.txt'), 'utf8'), 'straight through');

    // Back to write-back for one mount only, from the command line.
    const back = JSON.parse((await gvfs(['session', 'set', s.id, '--mountpoint', data, '--cache', 'write-back', '--json'], c.env('alice'))).stdout);
    assert.deepEqual(back.stats.mounts.map((m: any) => m.mode), ['write-through', 'write-back']);
    await fs.writeFile(path.join(data, 'again.txt'), 'journalled again');
    assert.equal(await fs.readFile(path.join(server, 'again.txt'), 'utf8'), '');

    // What cannot change live is refused precisely.
    const bad = await c.api(c.tokens.alice, 'PATCH', `/sessions/${s.id}`, { cache: { mode: 'write-through', size: 1 << 30 } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'VALIDATION');
    assert.equal(bad.body.details[0].path, 'body/cache');
    assert.match(bad.body.details[0].message, /additional properties/);
    const none = await c.api(c.tokens.alice, 'PATCH', `/sessions/${s.id}`, { cache: { mode: 'none' } });
    assert.equal(none.status, 400);
    assert.equal(none.body.details[0].path, 'body/cache/mode');
    const where = await c.api(c.tokens.alice, 'PATCH', `/sessions/${s.id}`, { mountpoint: '/nowhere', attrTimeout: 1 });
    assert.equal(where.status, 400);
    assert.equal(where.body.code, 'UNKNOWN_MOUNTPOINT');

    // The teardown flushes what the write-back mount holds.
    assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`)).body.state, 'destroyed');
    assert.equal(await fs.readFile(path.join(server, 'again.txt'), 'utf8'), 'journalled again');
  });
});
