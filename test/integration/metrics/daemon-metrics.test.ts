import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { makeSelfSignedCert } from '../../../src/channel/tls.js';
import { addUser } from '../../../src/services/sessiond/users.js';
import { runGvfs, spawnGvfs, type GvfsChild, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { keyFile } from '../../helpers/key-file.js';
import { tempDir } from '../../helpers/local-server.js';
import { get, sample, scrape, until } from './scrape.js';

const run = promisify(execFile);
const MiB = 1 << 20;

/** Every stderr line of a daemon is a JSON log line (pino: it has a numeric level). */
function assertJsonOnly(c: GvfsChild, who: string): void {
  assert.ok(c.lines.length > 0, `${who}: no log lines at all`);
  for (const l of c.lines) assert.equal(typeof l.level, 'number', `${who}: a stderr line that is not a JSON log line: ${JSON.stringify(l.raw)}`);
}

/**
 * Issue 23, metrics, health and logs: each daemon scraped over its
 * --metrics listener while real traffic (libnfs nfs-cat) goes through it.
 */
describe('metrics, health and logs of the daemons', { timeout: 420_000 }, () => {
  let base: string;
  let exp: string;
  let key: string;
  let ps: GvfsProcess; // proxy-server
  let pc: GvfsProcess; // proxy-client with a disk cache
  let sv: GvfsProcess; // serve --max-connections 1
  const all: Array<[string, GvfsChild]> = [];
  let psArgs: string[];
  const data = randomBytes(MiB);
  const url = (port: number, file: string) => `nfs://127.0.0.1//${file}?version=3&nfsport=${port}&mountport=${port}`;
  const nfsCat = async (port: number, file: string) => (await run('nfs-cat', [url(port, file)], { encoding: 'buffer', maxBuffer: 8 * MiB, timeout: 120_000 })).stdout;

  before(async () => {
    base = await tempDir('gvfs-metrics-');
    exp = path.join(base, 'export');
    await fs.mkdir(exp);
    await fs.writeFile(path.join(exp, 'data.bin'), data);
    await fs.writeFile(path.join(exp, 'hello.txt'), 'hello\n');
    key = (await keyFile(base, 'alice.key')).file;
    psArgs = ['proxy-server', '--export', `${exp}=/`, '--key', key, '--state-dir', path.join(base, 'ps-state'), '--metrics', '127.0.0.1:0'];
    ps = await spawnGvfs([...psArgs, '--listen', '127.0.0.1:0']);
    all.push(['proxy-server', ps]);
    pc = await spawnGvfs(['proxy-client', '--server', `127.0.0.1:${ps.port}`, '--key', key, '--cache-dir', path.join(base, 'cache'), '--metrics', '127.0.0.1:0']);
    all.push(['proxy-client', pc]);
    sv = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(base, 'sv-state'), '--max-connections', '1', '--metrics', '127.0.0.1:0']);
    all.push(['serve', sv]);
  });

  after(async () => {
    for (const [, c] of all) await c.stop().catch(() => undefined);
    if (base) await fs.rm(base, { recursive: true, force: true });
  });

  test('each daemon says where its metrics listen, on loopback', () => {
    for (const [who, c] of all) {
      const m = (c as GvfsProcess).info.metrics;
      assert.equal(m?.address, '127.0.0.1', `${who}: ${JSON.stringify((c as GvfsProcess).info)}`);
      assert.ok(m.port > 0);
    }
  });

  test('nfs-cat through the proxy client moves READ counts, latency, read bytes and channel bytes on both proxies', async () => {
    const c0 = await scrape(pc.info.metrics.port);
    const s0 = await scrape(ps.info.metrics.port);
    const out = await nfsCat(pc.port, 'data.bin');
    assert.ok(out.equals(data), 'nfs-cat returned other bytes');
    const c1 = await scrape(pc.info.metrics.port);
    const s1 = await scrape(ps.info.metrics.port);
    const d = (a: string, b: string, name: string, labels: Record<string, string> = {}) => (sample(b, name, labels) ?? 0) - (sample(a, name, labels) ?? 0);
    const read = { server: 'nfs', program: 'nfs3', procedure: 'READ' };
    assert.ok(d(c0, c1, 'gvfs_rpc_calls_total', read) >= 1, 'proxy client: no READ counted');
    assert.equal(sample(c1, 'gvfs_rpc_call_duration_seconds_count', read), sample(c1, 'gvfs_rpc_calls_total', read), 'a READ without a latency sample');
    assert.ok(d(c0, c1, 'gvfs_read_bytes_total') >= MiB, 'proxy client: read bytes did not grow by the file');
    assert.ok(d(c0, c1, 'gvfs_read_bytes_total', { source: 'channel' }) >= MiB, 'a cold read is a miss: its bytes came over the channel');
    assert.ok(d(c0, c1, 'gvfs_channel_bytes_total', { channel: 'link', kind: 'tcp', direction: 'in' }) >= MiB, 'link bytes in');
    assert.ok(d(c0, c1, 'gvfs_channel_bytes_total', { channel: 'nfs', direction: 'out' }) >= MiB, 'endpoint bytes out');
    assert.ok((sample(c1, 'gvfs_cache_bytes', { what: 'used' }) ?? 0) >= MiB, 'the cache holds the file');
    assert.ok(d(s0, s1, 'gvfs_rpc_calls_total', { server: 'proxy', program: 'nfs3', procedure: 'READ' }) >= 1, 'proxy server: no READ counted');
    assert.ok(d(s0, s1, 'gvfs_channel_bytes_total', { channel: 'proxy', kind: 'tcp', direction: 'out' }) >= MiB, 'proxy server bytes out');
    assert.ok((sample(s1, 'gvfs_rpc_connections', { state: 'proven' }) ?? 0) >= 1, 'the proxy client holds a proven connection');
    // Process metrics from prom-client's defaults.
    assert.ok((sample(c1, 'process_resident_memory_bytes') ?? 0) > 0);
    assert.notEqual(sample(c1, 'nodejs_eventloop_lag_seconds'), undefined);

    // Again: served from the cache, almost nothing crosses the link.
    await nfsCat(pc.port, 'data.bin');
    const c2 = await scrape(pc.info.metrics.port);
    assert.ok(d(c1, c2, 'gvfs_cache_hit_bytes_total') >= MiB, 'a warm read is a hit');
    assert.ok(d(c1, c2, 'gvfs_channel_bytes_total', { channel: 'link', direction: 'in' }) < MiB / 4, 'a warm read moved the file over the link again');
  });

  test('an NFS error is counted by procedure and status', async () => {
    const before = sample(await scrape(pc.info.metrics.port), 'gvfs_rpc_errors_total', { procedure: 'LOOKUP', status: 'NFS3ERR_NOENT' }) ?? 0;
    await assert.rejects(nfsCat(pc.port, 'no-such-file'));
    const after = sample(await scrape(pc.info.metrics.port), 'gvfs_rpc_errors_total', { procedure: 'LOOKUP', status: 'NFS3ERR_NOENT' }) ?? 0;
    assert.ok(after > before, `LOOKUP NFS3ERR_NOENT not counted (${before} → ${after})`);
  });

  test('a refused connection bumps the refused counter with its limit and logs a warning with peer and reason', async () => {
    const first = net.connect(sv.port, '127.0.0.1');
    const second = new net.Socket();
    try {
      await once(first, 'connect');
      await until('the first connection admitted', async () => sample(await scrape(sv.info.metrics.port), 'gvfs_rpc_connections', { state: 'proven' }) === 1);
      second.connect(sv.port, '127.0.0.1');
      second.on('error', () => undefined);
      await once(second, 'close');
      const m = await scrape(sv.info.metrics.port);
      assert.equal(sample(m, 'gvfs_rpc_connections_refused_total', { server: 'nfs', limit: 'maxConnections' }), 1);
      assert.equal(sample(m, 'gvfs_rpc_connections_refused_total', { server: 'nfs', limit: 'maxConnectionsPerPeer' }), 0);
      const line = await sv.waitLog((l) => l.reason === 'maxConnections', 30_000);
      assert.equal(line.level, 40, 'a refusal logs at warn');
      assert.equal(line.peer?.address, '127.0.0.1');
      assert.equal(typeof line.peer?.port, 'number');
    } finally {
      first.destroy();
      second.destroy();
    }
  });

  test('/healthz answers; /readyz names the failed check while the export is gone and recovers', async () => {
    assert.equal((await get(ps.info.metrics.port, '/healthz')).status, 200);
    const ok = await get(ps.info.metrics.port, '/readyz');
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ok.json.failed, []);
    const moved = `${exp}.away`;
    await fs.rename(exp, moved);
    try {
      const bad = await get(ps.info.metrics.port, '/readyz');
      assert.equal(bad.status, 503, bad.text);
      assert.deepEqual(bad.json.failed, [`export ${exp}`]);
      assert.match(bad.json.checks[`export ${exp}`].reason, /ENOENT/);
    } finally {
      await fs.rename(moved, exp);
    }
    assert.equal((await get(ps.info.metrics.port, '/readyz')).status, 200);
  });

  test("the proxy client's /readyz turns unready when its proxy server is killed and ready when it returns", async () => {
    const port = pc.info.metrics.port;
    const ready = await get(port, '/readyz');
    assert.equal(ready.status, 200, ready.text);
    assert.deepEqual(Object.keys(ready.json.checks).sort(), ['cache', 'journal', 'upstream']);
    const psPort = ps.port;
    ps.proc.kill('SIGKILL');
    await once(ps.proc, 'exit');
    let last: Awaited<ReturnType<typeof get>> | undefined;
    await until('readyz 503 with the upstream failed', async () => {
      last = await get(port, '/readyz');
      return last.status === 503;
    });
    assert.deepEqual(last!.json.failed, ['upstream'], last!.text);
    assert.ok(last!.json.checks.upstream.reason);
    assert.equal((await get(port, '/healthz')).status, 200, 'still alive while not ready');
    await pc.waitLog((l) => l.level === 40 && l.msg === 'not ready' && /upstream/.test(l.reason));
    const lost = await pc.waitLog((l) => l.level === 40 && /link lost/.test(l.msg ?? ''));
    assert.match(lost.peer, new RegExp(`127\\.0\\.0\\.1:${psPort}`));
    assert.ok(lost.reason, 'the lost link says why');
    ps = await spawnGvfs([...psArgs, '--listen', `127.0.0.1:${psPort}`]);
    all.push(['proxy-server (restarted)', ps]);
    await until('readyz 200 again', async () => (await get(port, '/readyz')).status === 200, 120_000);
    assert.ok((await nfsCat(pc.port, 'hello.txt')).equals(Buffer.from('hello\n')));
    const back = await pc.waitLog((l) => l.level === 40 && /link regained/.test(l.msg ?? ''));
    assert.equal(typeof back.downMs, 'number');
  });

  test('a non-loopback --metrics address is refused, with the reason, before the daemon starts', async () => {
    for (const args of [
      ['serve', '--export', exp, '--listen', '127.0.0.1:0', '--metrics', '192.0.2.1:0'],
      ['proxy-server', '--export', exp, '--key', key, '--listen', '127.0.0.1:0', '--metrics', '0.0.0.0:0'],
    ]) {
      const r = await runGvfs(args);
      assert.equal(r.code, 2, `${args[0]}: exit ${r.code}\n${r.stderr}`);
      assert.equal(r.stdout, '', 'no ready line');
      const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l));
      const fatal = lines.find((l) => l.level === 60);
      assert.match(fatal?.reason ?? '', /refusing --metrics on .*no authentication.*--metrics-public/);
    }
    const r = await runGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--metrics-public']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--metrics-public needs --metrics/);
  });

  test('the agent and the session service serve metrics: hosts up, sessions by state, process metrics', async () => {
    const sdTls = await makeSelfSignedCert(path.join(base, 'sd', 'tls'), 'gvfs-sessiond');
    const agent = await spawnGvfs(['agent', '--name', 'h1', '--state-dir', path.join(base, 'agent'), '--controller', sdTls.fingerprint, '--listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0']);
    all.push(['agent', agent]);
    const users = path.join(base, 'users.json');
    await addUser(users, 'alice', [{ uid: 0, gid: 0, gids: [] }], false);
    const sd = await spawnGvfs(['sessiond', '--state-dir', path.join(base, 'sd'), '--users', users, '--listen', '127.0.0.1:0', '--tls-cert', sdTls.cert, '--tls-key', sdTls.key, '--agent', `h1=${agent.info.url},${agent.info.fingerprint}`, '--metrics', '127.0.0.1:0']);
    all.push(['sessiond', sd]);
    const a = await scrape(agent.info.metrics.port);
    assert.equal(sample(a, 'gvfs_agent_sessions'), 0);
    assert.ok((sample(a, 'process_resident_memory_bytes') ?? 0) > 0);
    assert.equal((await get(agent.info.metrics.port, '/readyz')).status, 200);
    const s = await scrape(sd.info.metrics.port);
    assert.equal(sample(s, 'gvfs_host_up', { host: 'h1' }), 1);
    for (const state of ['creating', 'ready', 'destroying', 'destroyed', 'failed']) assert.equal(sample(s, 'gvfs_sessions', { state }), 0, state);
    assert.equal((await get(sd.info.metrics.port, '/readyz')).status, 200);
    await agent.stop();
    assert.equal(sample(await scrape(sd.info.metrics.port), 'gvfs_host_up', { host: 'h1' }), 0, 'a stopped agent shows as down');
  });

  test('every stderr line of every daemon is JSON, through start, traffic, refusals and SIGTERM', async () => {
    for (const [, c] of all) await c.stop();
    for (const [who, c] of all) assertJsonOnly(c, who);
    // The drain on SIGTERM is logged too (it used to be a plain-text line).
    assert.ok(pc.lines.some((l) => /SIGTERM, shutting down/.test(l.msg ?? '')), pc.log());
  });
});
