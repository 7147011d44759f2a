import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { cp, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, ROOT } from '../../helpers/local-server.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { seeded } from '../store/guest-versions.js';
import { FileStore } from '../../../src/store/file-store.js';
import type { ObjectStore } from '../../../src/store/store.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, readTrustedKeys, writePublisherKey } from '../../../src/image/signature.js';
import { StoreBackend } from '../../../src/backends/store/store-backend.js';
import { CacheServer } from '../../../src/sitecache/cache-server.js';
import { SiteCacheClient } from '../../../src/sitecache/site-client.js';
import { chunkWhat, siteToken } from '../../../src/sitecache/auth.js';
import { CHUNKS } from '../../../src/image/layout.js';

/**
 * Several compute hosts (store backends, each with its own chunk cache and
 * its own loopback source address) reading one image through one site tier
 * whose upstream is a directory store. The upstream counts and slows its
 * gets, so concurrent misses overlap and coalescing can be seen.
 */

/** A store that counts chunk gets and holds each one `delayMs` (the wide-area link). */
class CountingStore implements ObjectStore {
  chunkGets = 0;
  chunkBytes = 0;
  readonly perKey = new Map<string, number>();
  constructor(
    private readonly s: ObjectStore,
    private readonly delayMs = 0,
  ) {}
  get url() {
    return this.s.url;
  }
  async get(key: string) {
    if (key.startsWith(CHUNKS)) {
      this.chunkGets++;
      this.perKey.set(key, (this.perKey.get(key) ?? 0) + 1);
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    }
    const b = await this.s.get(key);
    if (key.startsWith(CHUNKS)) this.chunkBytes += b.length;
    return b;
  }
  head(key: string) {
    return this.s.head(key);
  }
  put(key: string, data: Buffer, o?: { ifAbsent?: boolean }) {
    return this.s.put(key, data, o);
  }
  list(prefix: string) {
    return this.s.list(prefix);
  }
  delete(key: string) {
    return this.s.delete(key);
  }
  async close() {}
}

const FILES: Record<string, Buffer> = {
  'disk.img': seeded(3 << 20, 'disk'),
  'kernel': seeded(1_500_000, 'kernel'),
  'small.txt': Buffer.from('hello site\n'),
};

interface Fixture {
  work: string;
  storeDir: string;
  trusted: Buffer[];
  pubFile: string;
  storedChunkBytes: number;
  chunkCount: number;
}

async function fixture(): Promise<Fixture> {
  const work = await tempDir('gvfs-sitecache-');
  const src = path.join(work, 'src');
  await mkdir(src);
  for (const [n, b] of Object.entries(FILES)) await writeFile(path.join(src, n), b);
  const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
  const storeDir = path.join(work, 'store');
  await pushImage(new FileStore(storeDir), src, 'img', await readPublisherKey(path.join(work, 'pub')));
  let storedChunkBytes = 0;
  let chunkCount = 0;
  for (const n of await readdir(path.join(storeDir, 'chunks'))) {
    storedChunkBytes += (await stat(path.join(storeDir, 'chunks', n))).size;
    chunkCount++;
  }
  return { work, storeDir, trusted: await readTrustedKeys([pubFile]), pubFile, storedChunkBytes, chunkCount };
}

/** Read every file of image `img` through a backend, in 256 KiB pieces, in parallel per file. */
async function readAll(b: StoreBackend): Promise<Record<string, Buffer>> {
  const root = (await b.mount('/img', ROOT)).fh;
  const out: Record<string, Buffer> = {};
  await Promise.all(
    Object.entries(FILES).map(async ([name, want]) => {
      const fh = (await b.lookup(ROOT, root, name)).fh;
      const got = Buffer.alloc(want.length);
      for (let off = 0; off < want.length; off += 256 << 10) {
        const r = await b.read(ROOT, fh, off, 256 << 10);
        r.data.copy(got, off);
      }
      out[name] = got;
    }),
  );
  return out;
}

describe('site cache tier', { timeout: 240_000 }, () => {
  const cleanup: Array<() => Promise<unknown> | void> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('four hosts clone through one tier: every file correct, each chunk crosses the upstream link once, coalescing seen, per-host stats', async () => {
    const f = await fixture();
    const upstream = new CountingStore(new FileStore(f.storeDir), 100);
    const key = randomBytes(32);
    const tier = await CacheServer.open({ upstream, cacheDir: path.join(f.work, 'tier'), maxBytes: 1 << 30, key });
    cleanup.push(() => tier.close());
    const { port } = await tier.listen(0, '127.0.0.1');
    const hosts: StoreBackend[] = [];
    const direct: CountingStore[] = [];
    for (let i = 0; i < 4; i++) {
      const s = new CountingStore(new FileStore(f.storeDir));
      direct.push(s);
      const b = await StoreBackend.open({ store: s, trusted: f.trusted, site: new SiteCacheClient({ tiers: [{ host: '127.0.0.1', port }], key, localAddress: `127.0.0.${i + 2}` }) });
      hosts.push(b);
      cleanup.push(() => b.close());
    }
    const results = await Promise.all(hosts.map((h) => readAll(h)));
    for (const r of results) for (const [n, want] of Object.entries(FILES)) assert.ok(r[n].equals(want), `${n} differs`);
    // The hosts never went to the store for a chunk: all came from the tier.
    for (const s of direct) assert.equal(s.chunkGets, 0, 'a host fetched from the store itself');
    for (const h of hosts) assert.equal(h.chunks.stats.siteHits, f.chunkCount);
    // Upstream: each chunk once, bytes equal to the store's chunk bytes.
    assert.equal(upstream.chunkGets, f.chunkCount);
    for (const [k, n] of upstream.perKey) assert.equal(n, 1, `${k} fetched ${n} times`);
    const st = tier.stats();
    assert.equal(st.bytesFromUpstream, f.storedChunkBytes);
    assert.equal(st.upstreamFetches, f.chunkCount);
    assert.equal(st.misses, f.chunkCount);
    assert.equal(st.hits + st.misses + st.coalesced, 4 * f.chunkCount);
    assert.ok(st.coalesced > 0, `no coalesced request seen: ${JSON.stringify(st)}`);
    assert.deepEqual(Object.keys(st.hosts).sort(), ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']);
    for (const h of Object.values(st.hosts)) assert.equal(h.requests, f.chunkCount);
    // Stats over the wire need the key too.
    const viaHttp = await get(port, '/v1/stats', { authorization: `GVFS-HMAC ${siteToken(key, 'stats')}` });
    assert.equal(viaHttp.status, 200);
    assert.equal(JSON.parse(viaHttp.body.toString()).bytesFromUpstream, f.storedChunkBytes);
    assert.equal((await get(port, '/v1/stats')).status, 403);
  });

  test("a bad copy of one chunk upstream: the tier answers 502 for it, the host reads that chunk from its store and keeps using the tier", async () => {
    const f = await fixture();
    // The tier's upstream is a copy of the store with one chunk damaged; the host's own store is intact.
    const tierStore = path.join(f.work, 'tier-store');
    await cp(f.storeDir, tierStore, { recursive: true });
    const names = (await readdir(path.join(tierStore, 'chunks'))).sort();
    const bad = path.join(tierStore, 'chunks', names[0]);
    const b = await readFile(bad);
    b[b.length - 1] ^= 0x01;
    await writeFile(bad, b);
    const key = randomBytes(32);
    const tier = await CacheServer.open({ upstream: new FileStore(tierStore), cacheDir: path.join(f.work, 'tier'), maxBytes: 1 << 30, key });
    cleanup.push(() => tier.close());
    const { port } = await tier.listen(0, '127.0.0.1');
    const site = new SiteCacheClient({ tiers: [{ host: '127.0.0.1', port }], key });
    const direct = new CountingStore(new FileStore(f.storeDir));
    const host = await StoreBackend.open({ store: direct, trusted: f.trusted, site });
    cleanup.push(() => host.close());
    const r = await readAll(host);
    for (const [n, want] of Object.entries(FILES)) assert.ok(r[n].equals(want), `${n} differs`);
    assert.equal(tier.stats().upstreamRefused, 1, JSON.stringify(tier.stats()));
    assert.equal(site.stats.badUpstream, 1, JSON.stringify(site.stats));
    assert.equal(site.stats.failed, 0, 'the tier was not taken for down');
    assert.equal(direct.chunkGets, 1, 'only the damaged chunk came from the store');
    assert.equal(host.chunks.stats.siteHits, f.chunkCount - 1, 'every other chunk came from the tier');
  });

  test('a tampered chunk from the tier is refused and refetched from the store', async () => {
    const f = await fixture();
    const key = randomBytes(32);
    const cacheDir = path.join(f.work, 'tier');
    const tier = await CacheServer.open({ upstream: new FileStore(f.storeDir), cacheDir, maxBytes: 1 << 30, key });
    cleanup.push(() => tier.close());
    const { port } = await tier.listen(0, '127.0.0.1');
    const site = () => new SiteCacheClient({ tiers: [{ host: '127.0.0.1', port }], key });
    const warm = await StoreBackend.open({ store: new FileStore(f.storeDir), trusted: f.trusted, site: site() });
    cleanup.push(() => warm.close());
    await readAll(warm);
    // Alter every kept chunk on the tier's disk: flip a byte of the payload (codec byte kept).
    const kept = await readdir(cacheDir);
    assert.equal(kept.length, f.chunkCount);
    for (const n of kept) {
      const b = await readFile(path.join(cacheDir, n));
      b[b.length - 1] ^= 0xff;
      await writeFile(path.join(cacheDir, n), b);
    }
    const direct = new CountingStore(new FileStore(f.storeDir));
    const host = await StoreBackend.open({ store: direct, trusted: f.trusted, site: site() });
    cleanup.push(() => host.close());
    const r = await readAll(host);
    for (const [n, want] of Object.entries(FILES)) assert.ok(r[n].equals(want), `${n} differs`);
    assert.equal(host.chunks.stats.siteRefused, f.chunkCount, 'every altered chunk refused');
    assert.equal(host.chunks.stats.siteHits, 0);
    assert.equal(direct.chunkGets, f.chunkCount, 'each refused chunk refetched from the store');
  });

  test('without the site key nothing is fetched: 403, no upstream traffic; unknown chunk 404; junk requests refused', async () => {
    const f = await fixture();
    const upstream = new CountingStore(new FileStore(f.storeDir));
    const key = randomBytes(32);
    const tier = await CacheServer.open({ upstream, cacheDir: path.join(f.work, 'tier'), maxBytes: 1 << 30, key });
    cleanup.push(() => tier.close());
    const { port } = await tier.listen(0, '127.0.0.1');
    const hash = (await readdir(path.join(f.storeDir, 'chunks')))[0];
    const len = 1000;
    assert.equal((await get(port, `/v1/chunks/${hash}?len=${len}`)).status, 403);
    assert.equal((await get(port, `/v1/chunks/${hash}?len=${len}`, { authorization: `GVFS-HMAC ${siteToken(randomBytes(32), chunkWhat(hash, len))}` })).status, 403);
    // A token for one chunk does not open another (or the same chunk at another length).
    assert.equal((await get(port, `/v1/chunks/${hash}?len=${len + 1}`, { authorization: `GVFS-HMAC ${siteToken(key, chunkWhat(hash, len))}` })).status, 403);
    assert.equal(upstream.chunkGets, 0, 'an unauthorized request reached upstream');
    assert.equal(tier.stats().unauthorized, 3);
    const missing = 'ab'.repeat(32);
    assert.equal((await get(port, `/v1/chunks/${missing}?len=10`, { authorization: `GVFS-HMAC ${siteToken(key, chunkWhat(missing, 10))}` })).status, 404);
    assert.equal((await get(port, `/v1/chunks/../../etc/passwd?len=1`)).status, 404);
    assert.equal((await get(port, `/v1/chunks/${hash}?len=999999999`)).status, 404);
    assert.equal((await get(port, `/v1/chunks/${hash}?len=${len}`, { 'x-big': 'a'.repeat(10_000) })).status, 431);
    // The right key but a wrong length: the chunk is fetched, refused (not its length), never kept.
    assert.equal((await get(port, `/v1/chunks/${hash}?len=${len}`, { authorization: `GVFS-HMAC ${siteToken(key, chunkWhat(hash, len))}` })).status, 502);
    assert.equal(tier.stats().upstreamRefused, 1);
    assert.equal(tier.stats().diskChunks, 0);
  });

  test('one address cannot hold more than --max-connections-per-peer sockets', async () => {
    const f = await fixture();
    const tier = await CacheServer.open({ upstream: new FileStore(f.storeDir), cacheDir: path.join(f.work, 'tier'), maxBytes: 1 << 20, key: randomBytes(32), maxConnectionsPerPeer: 2 });
    cleanup.push(() => tier.close());
    const { port } = await tier.listen(0, '127.0.0.1');
    const open = async (localAddress: string) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress });
      await once(s, 'connect');
      cleanup.push(() => {
        s.destroy();
      });
      return s;
    };
    const a = await open('127.0.0.9');
    const b = await open('127.0.0.9');
    const c = await open('127.0.0.9');
    // The third from one address is dropped at accept (bounded wait: a broken limit fails in 30 s, not at the suite timeout).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([once(c, 'close'), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('third connection from one address was kept')), 30_000)))]).finally(() => clearTimeout(timer));
    assert.ok(!a.destroyed && !b.destroyed);
    // Another address still gets in.
    const d = await open('127.0.0.10');
    const r = await new Promise<string>((resolve) => {
      d.once('data', (x) => resolve(x.toString()));
      d.write('GET /v1/stats HTTP/1.1\r\nHost: t\r\n\r\n');
    });
    assert.match(r, /^HTTP\/1.1 403/);
  });

  test('disk use stays under --max-bytes (least recently used out)', async () => {
    const f = await fixture();
    const key = randomBytes(32);
    const cacheDir = path.join(f.work, 'tier');
    const max = Math.floor(f.storedChunkBytes / 3);
    const tier = await CacheServer.open({ upstream: new FileStore(f.storeDir), cacheDir, maxBytes: max, key });
    cleanup.push(() => tier.close());
    const { port } = await tier.listen(0, '127.0.0.1');
    const host = await StoreBackend.open({ store: new FileStore(f.storeDir), trusted: f.trusted, site: new SiteCacheClient({ tiers: [{ host: '127.0.0.1', port }], key }) });
    cleanup.push(() => host.close());
    const r = await readAll(host);
    for (const [n, want] of Object.entries(FILES)) assert.ok(r[n].equals(want), `${n} differs`);
    let onDisk = 0;
    for (const n of await readdir(cacheDir)) onDisk += (await stat(path.join(cacheDir, n))).size;
    assert.ok(onDisk <= max, `${onDisk} bytes on disk, more than ${max}`);
    assert.ok(onDisk > 0);
    assert.equal(tier.stats().diskBytes, onDisk);
  });

  test('gvfs cache-server killed (SIGKILL) mid-read: reads go on from the store, every byte right', async () => {
    const f = await fixture();
    const keyFile = path.join(f.work, 'site.key');
    await writeFile(keyFile, randomBytes(32), { mode: 0o600 });
    const key = await readFile(keyFile);
    const procs: GvfsProcess[] = [];
    cleanup.push(async () => {
      for (const p of procs) await p.stop().catch(() => {});
    });
    const tier = await spawnGvfs(['cache-server', '--listen', '127.0.0.1:0', '--upstream', `file://${f.storeDir}`, '--cache-dir', path.join(f.work, 'tier'), '--key', keyFile]);
    procs.push(tier);
    const direct = new CountingStore(new FileStore(f.storeDir));
    const host = await StoreBackend.open({ store: direct, trusted: f.trusted, site: new SiteCacheClient({ tiers: [{ host: '127.0.0.1', port: tier.port }], key, timeoutMs: 30_000 }) });
    cleanup.push(() => host.close());
    const root = (await host.mount('/img', ROOT)).fh;
    const want = FILES['disk.img'];
    const fh = (await host.lookup(ROOT, root, 'disk.img')).fh;
    const got = Buffer.alloc(want.length);
    let killed = false;
    for (let off = 0; off < want.length; off += 128 << 10) {
      if (!killed && off >= want.length / 2) {
        tier.proc.kill('SIGKILL');
        await new Promise((r) => tier.proc.once('exit', r));
        killed = true;
      }
      const r = await host.read(ROOT, fh, off, 128 << 10);
      r.data.copy(got, off);
    }
    assert.ok(killed);
    assert.ok(got.equals(want), 'bytes differ after the tier died');
    assert.ok(host.chunks.stats.siteHits > 0, 'the tier served nothing before it was killed');
    assert.ok(direct.chunkGets > 0, 'nothing came from the store after the kill');
    assert.equal(host.chunks.stats.siteHits + direct.chunkGets, host.chunks.stats.fetches + host.chunks.stats.siteHits);
  });
});

function get(port: number, p: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.end();
  });
}
