import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, ROOT } from '../../helpers/local-server.js';
import { keyFile } from '../../helpers/key-file.js';
import { gvfsRun } from '../../helpers/cli-run.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { seeded } from '../store/guest-versions.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { FileStore } from '../../../src/store/file-store.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, writePublisherKey } from '../../../src/image/signature.js';
import { siteToken } from '../../../src/sitecache/auth.js';

/**
 * The command line end to end, compute side: gvfs cache-server with a site
 * key, one store-backed gvfs proxy-server (no --site-cache of its own), two
 * gvfs proxy-client hosts with --trust-publisher, --cache-dir and
 * --site-cache. Both clone the image right; the tier fetched each chunk
 * once from the store and served the hosts; each host keeps the chunks by
 * hash in its cache directory.
 */
describe('gvfs proxy-client --trust-publisher --site-cache', { timeout: 300_000 }, () => {
  const procs: GvfsProcess[] = [];
  after(async () => {
    for (const p of procs.reverse()) await p.stop().catch(() => {});
  });

  test('two hosts clone through the tier; each chunk crosses from the store once', async () => {
    const work = await tempDir('gvfs-site-compute-');
    const files: Record<string, Buffer> = { 'disk.img': Buffer.concat([seeded(1536 << 10, 'cc-disk'), Buffer.alloc(1 << 20)]), 'conf': Buffer.from('x=1\n') };
    const src = path.join(work, 'src');
    await mkdir(src);
    for (const [n, b] of Object.entries(files)) await writeFile(path.join(src, n), b);
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    const storeDir = path.join(work, 'store');
    await pushImage(new FileStore(storeDir), src, 'img', await readPublisherKey(path.join(work, 'pub')));
    const chunks = (await readdir(path.join(storeDir, 'chunks'))).length;

    const siteKey = path.join(work, 'site.key');
    await writeFile(siteKey, randomBytes(32), { mode: 0o600 });
    const tier = await spawnGvfs(['cache-server', '--listen', '127.0.0.1:0', '--upstream', `file://${storeDir}`, '--cache-dir', path.join(work, 'tier'), '--key', siteKey, '--metrics', '127.0.0.1:0']);
    procs.push(tier);
    const { file: sessionKey } = await keyFile(work, 'session.key');
    const server = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--store', `file://${storeDir}`, '--trust-publisher', pubFile, '--key', sessionKey, '--state-dir', path.join(work, 'ps')]);
    procs.push(server);

    // The flags are checked: a tier without publisher keys to verify against is refused.
    const bad = await gvfsRun(['proxy-client', '--server', `127.0.0.1:${server.port}`, '--key', sessionKey, '--site-cache', `127.0.0.1:${tier.port}`]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /need --trust-publisher/);

    const nfs: RemoteNfs[] = [];
    const hosts: GvfsProcess[] = [];
    for (const h of ['h1', 'h2']) {
      const c = await spawnGvfs(['proxy-client', '--listen', '127.0.0.1:0', '--server', `127.0.0.1:${server.port}`, '--key', sessionKey, '--no-meta', '--cache-dir', path.join(work, h), '--trust-publisher', pubFile, '--site-cache', `127.0.0.1:${tier.port}`, '--site-key', siteKey, '--metrics', '127.0.0.1:0']);
      procs.push(c);
      hosts.push(c);
      assert.equal(c.info.chunks.publishers, 1);
      nfs.push(new RemoteNfs({ host: '127.0.0.1', port: c.port, timeoutMs: 120_000 }));
    }
    try {
      await Promise.all(
        nfs.map(async (c) => {
          const root = (await c.mount('/', ROOT)).fh;
          const dir = (await c.lookup(ROOT, root, 'img')).fh;
          for (const [n, want] of Object.entries(files)) {
            const fh = (await c.lookup(ROOT, dir, n)).fh;
            const got = Buffer.alloc(want.length);
            for (let off = 0; off < want.length; off += 128 << 10) (await c.read(ROOT, fh, off, 128 << 10)).data.copy(got, off);
            assert.ok(got.equals(want), `${n} differs`);
          }
        }),
      );
    } finally {
      for (const c of nfs) await c.close();
    }
    const st = JSON.parse((await get(tier.port, '/v1/stats', { authorization: `GVFS-HMAC ${siteToken(await readFile(siteKey), 'stats')}` })).toString());
    assert.equal(st.upstreamFetches, chunks, 'each chunk fetched from the store once');
    assert.equal(st.hits + st.misses + st.coalesced, 2 * chunks, 'each host asked the tier for each chunk once');
    // The tier's metrics endpoint says the same as its stats (both hosts come from 127.0.0.1: one host row).
    const tierText = (await get(tier.info.metrics.port, '/metrics', {})).toString();
    const tierRow = (name: string, labels = '') => Number(new RegExp(`^${name}${labels ? `\\{${labels}\\}` : ''} (\\d+)`, 'm').exec(tierText)?.[1]);
    assert.equal(tierRow('gvfs_tier_upstream_fetches_total'), chunks, tierText);
    assert.equal(tierRow('gvfs_tier_upstream_bytes_total'), st.bytesFromUpstream);
    assert.equal(tierRow('gvfs_tier_chunk_requests_total', 'result="hit"') + tierRow('gvfs_tier_chunk_requests_total', 'result="miss"') + tierRow('gvfs_tier_chunk_requests_total', 'result="coalesced"'), 2 * chunks, tierText);
    assert.equal(tierRow('gvfs_tier_host_requests_total', 'host="127.0.0.1"'), 2 * chunks, tierText);
    assert.equal(tierRow('gvfs_tier_host_upstream_bytes_total', 'host="127.0.0.1"'), st.bytesFromUpstream);
    assert.equal(tierRow('gvfs_tier_disk_chunks'), chunks);
    assert.equal(tierRow('gvfs_tier_refused_total', 'reason="unauthorized"'), 0);
    assert.match((await get(tier.info.metrics.port, '/readyz', {})).toString(), /"ready":true/);
    // Each host's metrics say where its chunks came from: all from the tier (none refused, none from the proxy server).
    let fromTier = 0;
    for (const c of hosts) {
      const text = (await get(c.info.metrics.port, '/metrics', {})).toString();
      const row = (src: string) => Number(new RegExp(`^gvfs_chunks_total\\{source="${src}"\\} (\\d+)`, 'm').exec(text)?.[1]);
      fromTier += row('tier');
      assert.equal(row('server'), 0, text);
    }
    assert.equal(fromTier, 2 * chunks);
    for (const h of ['h1', 'h2']) assert.equal((await readdir(path.join(work, h, 'chunks'))).filter((n) => /^[0-9a-f]{64}$/.test(n)).length, chunks, `${h} keeps every chunk by hash`);
  });
});

function get(port: number, p: string, headers: Record<string, string>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(parts)) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}
