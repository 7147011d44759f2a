import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fuseSkip } from '../fuse/mount-helper.js';
import { aliceRequest, makeExports, startCluster, type Cluster } from '../../helpers/services.js';
import { sample, scrape } from '../metrics/scrape.js';

const MiB = 1 << 20;

/**
 * Issue 23: the agent starts every proxy process of a session with its own
 * metrics listener (loopback, a free port) and its session view says where;
 * scraping the session's proxy server and mount shows that session's
 * traffic moving the counters. A real session: three agents and the
 * session service as processes, FUSE mounts on the compute host.
 */
describe('agent: each session proxy serves metrics, and the session view says where', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let c: Cluster;
  const data = randomBytes(3 * MiB);
  before(async () => {
    c = await startCluster();
    await makeExports(c);
    await fs.writeFile(path.join(c.hosts.state.exports, 'vm', 'disk.img'), data);
  });
  after(async () => {
    await c?.stop();
  });

  test('a read through the session moves the proxy server\'s and the mount\'s counters', async () => {
    const r = await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'metrics'));
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const s = r.body;
    const view = async (host: string) => (await c.agentApi<{ components: any[] }>(host, 'GET', `/v1/sessions/${s.id}`)).body.components;
    const ps = (await view('state')).find((x) => x.kind === 'proxy-server');
    const mounts = (await view('compute')).filter((x) => x.kind === 'mount');
    assert.ok(ps, 'no proxy server on the state host');
    assert.equal(mounts.length, 2);
    for (const x of [ps, ...mounts]) {
      assert.equal(x.metrics?.address, '127.0.0.1', `${x.name}: ${JSON.stringify(x)}`);
      assert.ok(x.metrics.port > 0);
    }
    assert.equal(new Set([ps, ...mounts].map((x) => x.metrics.port)).size, 3, 'one listener per process');
    const vmMount = mounts.find((m) => m.mountpoint === s.mounts[0]) ?? mounts[0];

    const s0 = await scrape(ps.metrics.port);
    const m0 = await scrape(vmMount.metrics.port);
    assert.equal(sample(s0, 'gvfs_process_info', { process: 'proxy-server' }), 1);
    assert.equal(sample(m0, 'gvfs_process_info', { process: 'mount' }), 1);
    const got = await fs.readFile(path.join(s.mounts[0], 'disk.img'));
    assert.ok(got.equals(data), 'the mount returned other bytes');
    const s1 = await scrape(ps.metrics.port);
    const m1 = await scrape(vmMount.metrics.port);
    const d = (a: string, b: string, name: string, labels: Record<string, string> = {}) => (sample(b, name, labels) ?? 0) - (sample(a, name, labels) ?? 0);
    assert.ok(d(s0, s1, 'gvfs_rpc_calls_total', { server: 'proxy', program: 'nfs3', procedure: 'READ' }) >= 1, 'proxy server: no READ counted');
    assert.ok(d(s0, s1, 'gvfs_channel_bytes_total', { channel: 'proxy', direction: 'out' }) >= data.length, 'proxy server: the file did not leave through its channel');
    assert.ok((sample(s1, 'gvfs_rpc_connections', { state: 'proven' }) ?? 0) >= 1, 'the session\'s mount holds a proven connection');
    assert.ok(d(m0, m1, 'gvfs_read_bytes_total') >= data.length, 'mount: read bytes did not grow by the file');

    // Health too, on the same listener.
    const ready = await fetch(`http://127.0.0.1:${ps.metrics.port}/readyz`, { signal: AbortSignal.timeout(30_000) });
    assert.equal(ready.status, 200, await ready.text());

    const del = await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
  });
});
