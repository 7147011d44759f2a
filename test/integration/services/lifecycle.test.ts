import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { fuseSkip } from '../fuse/mount-helper.js';
import { aliceRequest, gvfs, mountsUnder, processesUnder, startCluster, type Cluster } from '../../helpers/services.js';

const sh = promisify(execFile);

describe('session lifecycle across three agents (state, data, compute)', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster();
    await fs.mkdir(path.join(c.hosts.state.exports, 'vm'));
    await fs.mkdir(path.join(c.hosts.data.exports, 'alice'));
    await fs.writeFile(path.join(c.hosts.state.exports, 'vm', 'disk.img'), randomBytes(3 << 20));
    await fs.chown(path.join(c.hosts.data.exports, 'alice'), 2001, 2001);
  });
  after(async () => {
    await c?.stop();
  });

  test('create → used by cp, cat, ls → destroy flushes write-back data to the data server', async () => {
    const r = await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'life'));
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const s = r.body;
    assert.equal(s.state, 'ready');
    assert.equal(s.user, 'alice');
    assert.deepEqual(s.hosts.sort(), ['compute', 'data', 'state']);
    const [vm, data] = s.mounts;
    assert.deepEqual((await mountsUnder(path.join(c.hosts.compute.mnt, 'life'))).sort(), [vm, data].sort());

    // Ordinary tools through the mounts.
    const ls = (await sh('ls', ['-l', vm])).stdout;
    assert.match(ls, /disk\.img/);
    await sh('cp', [path.join(vm, 'disk.img'), path.join(data, 'copy.img')]);
    await sh('sh', ['-c', `echo hello from the session > ${path.join(data, 'note.txt')}`]);
    assert.equal((await sh('cat', [path.join(data, 'note.txt')])).stdout, 'hello from the session\n');
    const original = await fs.readFile(path.join(c.hosts.state.exports, 'vm', 'disk.img'));
    assert.ok((await fs.readFile(path.join(data, 'copy.img'))).equals(original));

    // Statistics: the state image was read through the cache.
    const g = await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`);
    assert.equal(g.status, 200);
    assert.equal(g.body.stats.mounts.length, 2);
    assert.ok(g.body.stats.totals.bytesMoved >= 3 << 20, JSON.stringify(g.body.stats));
    assert.ok(g.body.timeLeft > 0 && g.body.timeLeft <= 600);

    // The listing (and the CLI) show it.
    const list = await c.api(c.tokens.alice, 'GET', '/sessions');
    assert.deepEqual(list.body.sessions.map((x: any) => x.id), [s.id]);
    const cli = JSON.parse((await gvfs(['session', 'show', s.id, '--json'], c.env('alice'))).stdout);
    assert.equal(cli.id, s.id);
    assert.equal(cli.state, 'ready');

    // Destroy: write-back data reaches the data server, owned by alice's account; nothing is left running or mounted.
    const d = await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`);
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.equal(d.body.state, 'destroyed');
    const onServer = path.join(c.hosts.data.exports, 'alice');
    assert.ok((await fs.readFile(path.join(onServer, 'copy.img'))).equals(original));
    assert.equal(await fs.readFile(path.join(onServer, 'note.txt'), 'utf8'), 'hello from the session\n');
    assert.equal((await fs.stat(path.join(onServer, 'note.txt'))).uid, 2001);
    assert.deepEqual(await mountsUnder(path.join(c.hosts.compute.mnt, 'life')), []);
    const running = (await processesUnder(c.base)).length;
    assert.equal(running, 4, 'only the three agents and the session service run');
    // No key is left on any host.
    for (const h of Object.values(c.hosts)) assert.deepEqual(await fs.readdir(path.join(h.state, 'sessions')), []);

    // Destroy is idempotent.
    const again = await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`);
    assert.equal(again.status, 200);
    assert.equal(again.body.state, 'destroyed');
  });

  test('the command line: create, list, renew, destroy with --json', async () => {
    const env = c.env('alice');
    const mnt = path.join(c.hosts.compute.mnt, 'cli', 'data');
    const created = JSON.parse((await gvfs(['session', 'create', '--compute', 'compute', '--data', `data:${path.join(c.hosts.data.exports, 'alice')}=${mnt}`, '--cache', 'write-through', '--lifetime', '300', '--json'], env)).stdout);
    assert.equal(created.state, 'ready');
    assert.equal(created.cache.mode, 'write-through');
    await fs.writeFile(path.join(mnt, 'cli.txt'), 'through');
    assert.equal(await fs.readFile(path.join(c.hosts.data.exports, 'alice', 'cli.txt'), 'utf8'), 'through');
    const listed = JSON.parse((await gvfs(['session', 'list', '--json'], env)).stdout);
    assert.deepEqual(listed.sessions.map((x: any) => x.id), [created.id]);
    const renewed = JSON.parse((await gvfs(['session', 'renew', created.id, '--lifetime', '900', '--json'], env)).stdout);
    assert.ok(renewed.timeLeft > 300 && renewed.timeLeft <= 900);
    const text = (await gvfs(['session', 'show', created.id], env)).stdout;
    assert.match(text, new RegExp(`session ${created.id} \\(alice\\): ready`));
    const destroyed = JSON.parse((await gvfs(['session', 'destroy', created.id, '--json'], env)).stdout);
    assert.equal(destroyed.state, 'destroyed');
    assert.deepEqual(await mountsUnder(mnt), []);
  });
});
