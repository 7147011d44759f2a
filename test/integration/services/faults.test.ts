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

  /** SIGSTOP/SIGCONT a process; a frozen one keeps its sockets open but answers nothing. */
  const freeze = (pid: number) => process.kill(pid, 'SIGSTOP');
  const thaw = (pid: number) => {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      /* gone */
    }
  };
  /** The id of the one session `host`'s agent holds that it did not hold before (`known`), once it has one. */
  const newSession = async (host: string, known: Set<string>) => {
    let id = '';
    await until(`${host} to hold a component of the new session`, async () => {
      id = ((await c.agentApi(host, 'GET', '/v1/sessions')).body.sessions as string[]).find((x) => !known.has(x)) ?? '';
      return id !== '';
    });
    return id;
  };
  const sessionsOn = async (host: string) => new Set<string>((await c.agentApi(host, 'GET', '/v1/sessions')).body.sessions);

  test('a compute agent killed while a mount of the creation is starting: the creation fails (AGENT_LOST), the rollback finishes once the agent is back, nothing is left', async (t) => {
    const frozen: number[] = [];
    const knownData = await sessionsOn('data');
    const knownCompute = await sessionsOn('compute');
    // The state host's agent frozen: the creation cannot get past its proxy servers until it is thawed.
    const stateAgent = c.agents.state.proc.pid!;
    freeze(stateAgent);
    frozen.push(stateAgent);
    let r;
    let id = '';
    try {
      const posted = c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'agentmid'));
      id = await newSession('data', knownData);
      let ps: any;
      await until('the data host\'s proxy server to run', async () => {
        ps = (await components('data', id))[0];
        return ps?.state === 'running' && ps.alive;
      });
      // Frozen, that proxy server never finishes a TLS handshake: the mount that dials it (m1) cannot come up.
      freeze(ps.pid);
      frozen.push(ps.pid);
      thaw(stateAgent);
      frozen.splice(frozen.indexOf(stateAgent), 1);
      assert.equal(await newSession('compute', knownCompute), id);
      let view: any[] = [];
      await until('mount m1 to be starting on the compute host', async () => {
        view = await components('compute', id);
        return view.some((x) => x.name === 'm1' && x.state === 'starting');
      });
      // m0 (the state mount, asked for first) is up already as a rule, or queued behind m1 (the agent runs one
      // operation of a session at a time).
      const m0 = view.find((x) => x.name === 'm0');
      t.diagnostic(`at the kill: m1 starting, m0 ${m0 ? `${m0.state} (pid ${m0.pid})` : 'not begun'}`);
      await c.stopAgent('compute');
      r = await posted;
      assert.equal(r.status, 502, JSON.stringify(r.body));
      assert.equal(r.body.code, 'AGENT_LOST', 'the agent went away while it was answering the mount request');
      assert.match(r.body.message, /session not created: host compute: agent did not answer.*; rollback pending on .*compute/);
      const s = (await c.api(c.tokens.alice, 'GET', `/sessions/${id}?stats=false`)).body;
      assert.equal(s.state, 'failed');
      assert.equal(s.reason, 'creation failed');
      assert.ok(s.pending.includes('compute'), `pending ${JSON.stringify(s.pending)}`);

      // The agent comes back while the session service is held still (no rollback yet): the half-started m1 is
      // gone (its process, which still waited for the frozen server, killed; its record dropped), a running m0 is
      // re-attached as it was, not killed with it.
      const sd = c.sessiond.proc.pid!;
      freeze(sd);
      frozen.push(sd);
      await c.startAgent('compute');
      const after = await components('compute', id);
      assert.equal(after.find((x) => x.name === 'm1'), undefined, 'the half-started mount is dropped');
      if (m0?.state === 'running') {
        const again = after.find((x) => x.name === 'm0');
        assert.deepEqual([again?.pid, again?.alive, again?.restarts], [m0.pid, true, 0], 'the running sibling mount is re-attached, not killed');
      }
      const left = (await processesUnder(path.join(c.hosts.compute.state, 'sessions', id))).length;
      assert.equal(left, m0?.state === 'running' ? 1 : 0, 'only the running mount still has a process');
    } finally {
      for (const pid of frozen) thaw(pid);
      const cp = c.agents.compute.proc;
      if (cp.exitCode !== null || cp.signalCode !== null) await c.startAgent('compute');
    }
    await until('the rollback to finish', async () => (await c.api(c.tokens.alice, 'GET', `/sessions/${id}?stats=false`)).body.pending.length === 0);
    await nothingOn(id);
    assert.equal((await processesUnder(c.base)).length, 4, 'the three agents and the session service, nothing else');
  });

  test('a session service killed in the middle of a creation (a proxy server running, the other being asked for, no mount begun) rolls it back when it starts again', async () => {
    const knownState = await sessionsOn('state');
    const knownCompute = await sessionsOn('compute');
    const dataAgent = c.agents.data.proc.pid!;
    // The data host's agent frozen: the service waits on it, with the state host's proxy server already running.
    freeze(dataAgent);
    let id = '';
    try {
      const posted = c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'mid')).catch((e: Error) => e);
      id = await newSession('state', knownState);
      await until('the state host\'s proxy server to run', async () => {
        const ps = (await components('state', id))[0];
        return ps?.state === 'running' && ps.alive;
      });
      const mid = (await c.api(c.tokens.alice, 'GET', `/sessions/${id}?stats=false`)).body;
      assert.equal(mid.state, 'creating');
      assert.deepEqual([...(await sessionsOn('compute'))].filter((x) => !knownCompute.has(x)), [], 'no mount begun');
      await c.restartSessiond();
      assert.ok((await posted) instanceof Error, 'the creation never answered');
    } finally {
      // Thawed only now: the request the dead service had begun never reached the agent (no TLS handshake).
      thaw(dataAgent);
    }
    const s = (await c.api(c.tokens.alice, 'GET', `/sessions/${id}?stats=false`)).body;
    assert.equal(s.state, 'failed');
    assert.equal(s.reason, 'creation interrupted');
    await until('the rollback', async () => (await c.api(c.tokens.alice, 'GET', `/sessions/${id}?stats=false`)).body.pending.length === 0);
    await nothingOn(id);
    assert.deepEqual(await fs.readdir(path.join(c.hosts.compute.mnt)).then((d) => d.filter((x) => x === 'mid')), [], 'no mount point made');
    assert.equal((await processesUnder(c.base)).length, 4, 'the three agents and the session service, nothing else');
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
