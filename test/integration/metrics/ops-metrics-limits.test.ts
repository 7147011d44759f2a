import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { METRICS_LIMITS as L } from '../../../src/metrics/http.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { tempDir } from '../../helpers/local-server.js';
import { sample, scrape, until } from './scrape.js';

const run = promisify(execFile);
const MiB = 1 << 20;

/** A raw connection to the metrics port from `from` (another loopback address: another peer), its close time recorded. */
function connect(port: number, from: string): Promise<{ s: net.Socket; closed: Promise<number>; got: () => string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    let data = '';
    s.on('data', (d) => (data += d.toString('latin1')));
    const closed = new Promise<number>((r) => s.once('close', () => r(Date.now())));
    s.once('error', () => undefined);
    s.once('connect', () => resolve({ s, closed, got: () => data }));
    s.once('error', reject);
  });
}

const isClosed = async (c: { closed: Promise<number> }, ms: number) => Promise.race([c.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

/**
 * Issue 23: the metrics listener is network-facing (any local user reaches
 * loopback; --metrics-public reaches further). A hostile client — many idle
 * connections, slowloris headers, huge headers, methods and bodies a
 * scraper never sends — is refused within METRICS_LIMITS, and the daemon's
 * own service (NFS through libnfs) goes on unharmed meanwhile.
 */
describe('metrics listener limits under a hostile client', { timeout: 300_000 }, () => {
  let base: string;
  let sv: GvfsProcess;
  let mport: number;
  const data = randomBytes(2 * MiB);
  const open: net.Socket[] = [];
  const nfsCat = async () => (await run('nfs-cat', [`nfs://127.0.0.1//data.bin?version=3&nfsport=${sv.port}&mountport=${sv.port}`], { encoding: 'buffer', maxBuffer: 8 * MiB, timeout: 60_000 })).stdout;

  before(async () => {
    base = await tempDir('gvfs-metrics-limits-');
    const exp = path.join(base, 'export');
    await fs.mkdir(exp);
    await fs.writeFile(path.join(exp, 'data.bin'), data);
    // --metrics-public: the same limits hold whatever the address (loopback here: tests talk to loopback only).
    sv = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(base, 'state'), '--metrics', '127.0.0.1:0', '--metrics-public']);
    mport = sv.info.metrics.port;
  });
  after(async () => {
    for (const s of open) s.destroy();
    await sv?.stop();
    if (base) await fs.rm(base, { recursive: true, force: true });
  });

  test('idle connections: per peer and in total capped, the rest closed on accept; NFS unharmed; all closed when idle', async () => {
    // One peer (127.0.0.2) opens far more than its share.
    const one = await Promise.all(Array.from({ length: 40 }, () => connect(mport, '127.0.0.2')));
    open.push(...one.map((c) => c.s));
    const oneOpen = (await Promise.all(one.map((c) => isClosed(c, 2_000)))).filter((x) => !x).length;
    assert.equal(oneOpen, L.maxConnectionsPerPeer, `one peer holds ${oneOpen} connections`);
    // A scraper from another address still gets its answer.
    assert.match(await scrape(mport), /gvfs_process_info/);
    // Many peers together: never more than maxConnections held.
    const many = (await Promise.all(Array.from({ length: 8 }, (_, i) => Array.from({ length: 8 }, () => connect(mport, `127.0.0.${10 + i}`).catch(() => undefined))).flat())).filter((c) => c !== undefined);
    open.push(...many.map((c) => c.s));
    const all = [...one, ...many];
    const held = (await Promise.all(all.map((c) => isClosed(c, 2_000)))).filter((x) => !x).length;
    assert.ok(held <= L.maxConnections, `${held} connections held (limit ${L.maxConnections})`);
    assert.ok(held >= L.maxConnections - 2, `only ${held} held: the cap is not what the limits say`);
    // The daemon's own service meanwhile: the file, whole and right.
    const t0 = Date.now();
    assert.ok((await nfsCat()).equals(data), 'nfs-cat returned other bytes during the attack');
    assert.ok(Date.now() - t0 < 30_000, `nfs-cat took ${Date.now() - t0} ms during the attack`);
    // Idle ones (no request at all) are closed by the listener (not by us) at the headers timeout, with a 408.
    const start = Date.now();
    await Promise.all(all.map((c) => c.closed));
    assert.ok(Date.now() - start < L.headersTimeoutMs + L.checkIntervalMs + 10_000, `idle connections held ${Date.now() - start} ms`);
    assert.ok(all.some((c) => /^HTTP\/1\.1 408/.test(c.got())), 'no idle connection got a 408');
    assert.match(await scrape(mport), /gvfs_process_info/);
  });

  test('slowloris: headers trickled in are cut off at the headers timeout', async () => {
    const c = await connect(mport, '127.0.0.3');
    open.push(c.s);
    const t0 = Date.now();
    c.s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
    let i = 0;
    const drip = setInterval(() => {
      if (!c.s.destroyed) c.s.write(`X-${i++}: y\r\n`);
    }, 300);
    try {
      const closedAt = await Promise.race([c.closed, new Promise<number>((_, rej) => setTimeout(() => rej(new Error('slowloris connection still open after 30 s')), 30_000))]);
      assert.ok(closedAt - t0 <= L.headersTimeoutMs + L.checkIntervalMs + 3_000, `held ${closedAt - t0} ms`);
      assert.ok(i > 3, 'closed before the drip started: not the headers timeout');
      assert.match(c.got(), /^HTTP\/1\.1 408/);
    } finally {
      clearInterval(drip);
    }
  });

  test('huge headers get 431; other methods 405; a body 413; other paths 404', async () => {
    const ask = async (raw: string) => {
      const c = await connect(mport, '127.0.0.4');
      open.push(c.s);
      c.s.write(raw);
      c.s.end();
      await c.closed;
      return c.got();
    };
    assert.match(await ask(`GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`), /^HTTP\/1\.1 431/);
    assert.match(await ask('POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc'), /^HTTP\/1\.1 405/);
    assert.match(await ask('DELETE /readyz HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 405/);
    assert.match(await ask('GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789'), /^HTTP\/1\.1 413/);
    assert.match(await ask('GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'), /^HTTP\/1\.1 413/);
    assert.match(await ask('GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 404/);
    assert.match(await ask('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 200/);
  });

  test('every refusal is counted by reason and logged (once a minute per reason) at warn', async () => {
    let text = '';
    await until('refusal counters', async () => {
      text = await scrape(mport);
      return (sample(text, 'gvfs_metrics_http_refused_total', { reason: 'timeout' }) ?? 0) > 0;
    }, 30_000);
    for (const reason of ['connections-per-peer', 'connections', 'timeout', 'headers-too-large', 'method', 'body']) {
      assert.ok((sample(text, 'gvfs_metrics_http_refused_total', { reason }) ?? 0) > 0, `no refusal counted for ${reason}:\n${text.split('\n').filter((l) => l.includes('refused')).join('\n')}`);
    }
    assert.ok((sample(text, 'gvfs_metrics_http_refused_total', { reason: 'connections-per-peer' }) ?? 0) >= 40 - L.maxConnectionsPerPeer);
    const warns = sv.lines.filter((l) => l.level === 40 && /metrics listener refused/.test(l.msg ?? ''));
    assert.ok(warns.some((l) => l.reason === 'connections-per-peer' && l.peer === '127.0.0.2'), sv.log());
    // Rate-limited: not one line per refused connection.
    assert.ok(warns.length <= 10, `${warns.length} warn lines`);
    assert.ok((await nfsCat()).equals(data));
  });
});
