import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fuseSkip } from '../fuse/mount-helper.js';
import { aliceRequest, makeExports, mountsUnder, processesUnder, startCluster, until, type Cluster } from '../../helpers/services.js';

describe('faults: agents restarted, down, or refusing mid-creation', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster();
    await makeExports(c);
    await fs.writeFile(path.join(c.hosts.state.exports, 'vm', 'base.img'), randomBytes(1 << 20));
  });
  after(async () => {
    await c?.stop();
  });

  const components = async (host: string, id: string) => (await c.agentApi(host, 'GET', `/v1/sessions/${id}`)).body.components as any[];
  const nothingOn = async (id: string, hosts = ['state', 'data', 'compute']) => {
    for (const h of hosts) {
      assert.deepEqual(await components(h, id), [], `${h} still has components of ${id}`);
      assert.deepEqual(await fs.readdir(path.join(c.hosts[h].state, 'sessions')), [], `${h} still has a key of ${id}`);
    }
    assert.deepEqual(await mountsUnder(c.hosts.compute.mnt), []);
  };

  test('agents killed and restarted lose nothing: processes are re-attached, a dead proxy server comes back on its port, the teardown still flushes', async () => {
    const s = (await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'r', { cache: { mode: 'write-back', dirtyMaxAge: 3600 } }))).body;
    assert.equal(s.state, 'ready', JSON.stringify(s));
    const [vm, data] = s.mounts;
    const before = { compute: await components('compute', s.id), state: await components('state', s.id) };
    assert.equal(before.compute.length, 2);
    assert.ok(before.compute.every((x) => x.alive));

    await fs.writeFile(path.join(data, 'one.txt'), 'written before the agents died');
    await c.stopAgent('compute');
    await c.stopAgent('state');
    // The session goes on without its agents.
    assert.equal((await fs.readFile(path.join(vm, 'base.img'))).length, 1 << 20);
    await fs.writeFile(path.join(data, 'two.txt'), 'written while the agents were down');
    await c.startAgent('compute');
    await c.startAgent('state');
    const reattached = await components('compute', s.id);
    assert.deepEqual(reattached.map((x) => [x.name, x.pid, x.alive, x.restarts]), before.compute.map((x) => [x.name, x.pid, true, 0]));
    assert.deepEqual((await components('state', s.id)).map((x) => x.pid), before.state.map((x) => x.pid));

    // A proxy server that dies is restarted by its agent, on the same port; the mount's link dials it again.
    const ps = before.state[0];
    process.kill(ps.pid, 'SIGKILL');
    await until('the proxy server to be restarted', async () => {
      const now = (await components('state', s.id))[0];
      return now.alive && now.restarts === 1;
    });
    const now = (await components('state', s.id))[0];
    assert.equal(now.port, ps.port);
    assert.notEqual(now.pid, ps.pid);
    await fs.writeFile(path.join(c.hosts.state.exports, 'vm', 'later.txt'), 'made after the restart');
    await until('the new file to show through the mount', async () => (await fs.readdir(vm)).includes('later.txt'));
    assert.equal(await fs.readFile(path.join(vm, 'later.txt'), 'utf8'), 'made after the restart');

    // A mount process killed outright (its write-back journal on disk) is restarted too: the mount comes back with
    // the data it had acknowledged.
    assert.ok((await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body.stats.totals.dirtyBytes > 0, 'still in the write-back cache');
    const m1 = (await components('compute', s.id)).find((x) => x.name === 'm1');
    process.kill(m1.pid, 'SIGKILL');
    await until('the mount to be restarted', async () => {
      const now = (await components('compute', s.id)).find((x) => x.name === 'm1');
      return now.alive && now.restarts === 1;
    });
    await until('the mount to answer again', async () => (await fs.readdir(data).catch(() => [] as string[])).includes('two.txt'));
    assert.equal(await fs.readFile(path.join(data, 'two.txt'), 'utf8'), 'written while the agents were down');

    // The session service saw nothing of it (but counts the restart); the teardown delivers both files (the restarted
    // mount process began delivering its journal as it started).
    const g = (await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body;
    assert.equal(g.state, 'ready');
    assert.deepEqual(g.stats.mounts.map((m: any) => m.restarts), [0, 1]);
    assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`)).body.state, 'destroyed');
    const server = path.join(c.hosts.data.exports, 'alice');
    assert.equal(await fs.readFile(path.join(server, 'one.txt'), 'utf8'), 'written before the agents died');
    assert.equal(await fs.readFile(path.join(server, 'two.txt'), 'utf8'), 'written while the agents were down');
    await nothingOn(s.id);
  });

  test('an agent that is down makes the creation fail cleanly, with what was started on the others rolled back', async () => {
    await c.stopAgent('data');
    let id = '';
    try {
      const r = await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'down'));
      assert.equal(r.status, 502, JSON.stringify(r.body));
      assert.equal(r.body.code, 'AGENT_UNREACHABLE');
      assert.match(r.body.message, /host data: agent unreachable/);
      assert.match(r.body.message, /rolled back/);
      const failed = (await c.api(c.tokens.alice, 'GET', '/sessions?ended=true')).body.sessions.find((x: any) => x.state === 'failed');
      assert.ok(failed, 'the failed session is listed with ?ended=true');
      assert.deepEqual(failed.pending, []);
      id = failed.id;
      await nothingOn(id, ['state', 'compute']);
      assert.equal((await processesUnder(c.base)).length, 3, 'the two running agents and the session service');
    } finally {
      await c.startAgent('data');
    }
    await nothingOn(id);
  });

  test('an agent refusing mid-creation (mount point not allowed there) rolls back the proxy servers already started', async () => {
    const req = aliceRequest(c, 'refused');
    req.exports[1].mountpoint = path.join(c.base, 'elsewhere', 'data');
    const r = await c.api(c.tokens.alice, 'POST', '/sessions', req);
    assert.equal(r.status, 403, JSON.stringify(r.body));
    assert.equal(r.body.code, 'NOT_ALLOWED');
    assert.match(r.body.message, /host compute: .*does not allow mounts/);
    const failed = (await c.api(c.tokens.alice, 'GET', '/sessions?ended=true')).body.sessions.filter((x: any) => x.state === 'failed');
    for (const f of failed) await nothingOn(f.id);
    assert.equal((await processesUnder(c.base)).length, 4);
  });

  test('a teardown that cannot reach an agent keeps the session destroying (data already flushed), and finishes once the agent is back', async () => {
    const s = (await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'td'))).body;
    assert.equal(s.state, 'ready', JSON.stringify(s));
    await fs.writeFile(path.join(s.mounts[1], 'td.txt'), 'flushed before the servers stop');
    await c.stopAgent('state');
    try {
      const d = await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`);
      assert.equal(d.status, 502, JSON.stringify(d.body));
      assert.equal(d.body.code, 'AGENT_UNREACHABLE');
      const g = (await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body;
      assert.equal(g.state, 'destroying');
      assert.deepEqual(g.pending, ['state']);
      assert.match(g.error, /host state: agent unreachable/);
      // The compute host went first: flushed and unmounted.
      assert.equal(await fs.readFile(path.join(c.hosts.data.exports, 'alice', 'td.txt'), 'utf8'), 'flushed before the servers stop');
      assert.deepEqual(await mountsUnder(path.join(c.hosts.compute.mnt, 'td')), []);
    } finally {
      await c.startAgent('state');
    }
    await until('the service to finish the teardown', async () => (await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body.state === 'destroyed');
    await nothingOn(s.id);
  });

  test('a flush the server refuses stops the teardown with nothing lost; the owner may then discard', async () => {
    const s = (await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'refuse', { cache: { mode: 'write-back', dirtyMaxAge: 3600 } }))).body;
    assert.equal(s.state, 'ready', JSON.stringify(s));
    await fs.writeFile(path.join(s.mounts[1], 'doomed.txt'), 'the server will not take this');
    // Removed on the server behind the session's back: its journalled data has nowhere to go.
    await fs.rm(path.join(c.hosts.data.exports, 'alice', 'doomed.txt'));
    const d = await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`);
    assert.equal(d.status, 409, JSON.stringify(d.body));
    assert.equal(d.body.code, 'FLUSH_INCOMPLETE');
    assert.match(d.body.message, /could not be delivered/);
    const g = (await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body;
    assert.equal(g.state, 'destroying');
    assert.ok(g.stats.totals.dirtyBytes > 0, 'still held');
    assert.equal((await mountsUnder(path.join(c.hosts.compute.mnt, 'refuse'))).length, 2, 'nothing stopped');
    const forced = await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}?discard=true`);
    assert.equal(forced.status, 200, JSON.stringify(forced.body));
    assert.equal(forced.body.state, 'destroyed');
    assert.match(forced.body.reason, /discarded/);
    await nothingOn(s.id);
  });

  test('a compute agent killed in the middle of a creation: the creation fails, and once the agent is back nothing is left', async (t) => {
    const known = new Set((await c.agentApi('compute', 'GET', '/v1/sessions')).body.sessions);
    const fresh = async () => ((await c.agentApi('compute', 'GET', '/v1/sessions')).body.sessions as string[]).filter((x) => !known.has(x));
    const posted = c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'agentmid'));
    // Killed once it has begun a mount (recorded as starting, its process not yet mounted, as a rule).
    await until('a mount of the new session to begin', async () => (await fresh()).length > 0, 60_000);
    const [id] = await fresh();
    await c.stopAgent('compute');
    const r = await posted;
    let s;
    try {
      t.diagnostic(`creation answered ${r.status} ${r.body.code}`);
      if (r.status === 201) {
        // The mounts were up before the kill: a whole session, torn down below.
        assert.equal(r.body.state, 'ready');
      } else {
        assert.equal(r.status, 502, JSON.stringify(r.body));
        assert.match(r.body.code, /^AGENT_(UNREACHABLE|LOST)$/);
      }
    } finally {
      await c.startAgent('compute');
    }
    if (r.status === 201) assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${id}`)).body.state, 'destroyed');
    await until('the rollback to finish', async () => {
      s = (await c.api(c.tokens.alice, 'GET', `/sessions/${id}?stats=false`)).body;
      return s.pending.length === 0;
    });
    await nothingOn(id);
  });

  test('a session service killed in the middle of a creation rolls it back when it starts again', async (t) => {
    const known = new Set((await c.agentApi('state', 'GET', '/v1/sessions')).body.sessions);
    const fresh = async () => ((await c.agentApi('state', 'GET', '/v1/sessions')).body.sessions as string[]).filter((x) => !known.has(x));
    const posted = c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'mid')).catch((e: Error) => e);
    // Killed once the first proxy server runs (the mounts come after it).
    await until('a proxy server of the new session', async () => (await fresh()).length > 0);
    const [id] = await fresh();
    await c.restartSessiond();
    assert.ok((await posted) instanceof Error, 'the creation never answered');
    const s = (await c.api(c.tokens.alice, 'GET', `/sessions/${id}?stats=false`)).body;
    t.diagnostic(`the creation was ${s.state === 'ready' ? 'finished' : 'interrupted'} when the service was killed`);
    if (s.state === 'ready') {
      // It had just finished: then it is a whole session.
      assert.equal((await mountsUnder(path.join(c.hosts.compute.mnt, 'mid'))).length, 2);
      assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${id}`)).body.state, 'destroyed');
    } else {
      assert.equal(s.state, 'failed');
      assert.equal(s.reason, 'creation interrupted');
      await until('the rollback', async () => (await c.api(c.tokens.alice, 'GET', `/sessions/${id}?stats=false`)).body.pending.length === 0);
    }
    await nothingOn(id);
  });

  test('a session service restarted while sessions run keeps them; destroy is idempotent', async () => {
    const s = (await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'sd'))).body;
    assert.equal(s.state, 'ready');
    await c.restartSessiond();
    const g = (await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body;
    assert.equal(g.state, 'ready');
    assert.equal(g.expiresAt, s.expiresAt);
    assert.equal(g.stats.mounts.length, 2);
    const d1 = await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`);
    const d2 = await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`);
    assert.equal(d1.status, 200);
    assert.equal(d2.status, 200);
    assert.equal(d2.body.state, 'destroyed');
    assert.equal(d2.body.endedAt, d1.body.endedAt);
    await nothingOn(s.id);
  });
});
