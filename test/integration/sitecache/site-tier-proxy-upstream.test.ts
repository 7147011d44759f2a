import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, ROOT } from '../../helpers/local-server.js';
import { keyFile } from '../../helpers/key-file.js';
import { gvfsRun } from '../../helpers/cli-run.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { seeded } from '../store/guest-versions.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { newSessionKey, type SessionKey } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { ChunkStatus } from '../../../src/ext/chunks-codec.js';
import { loadImage } from '../../../src/image/catalog.js';
import { chunkKey } from '../../../src/image/layout.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, readTrustedKeys, writePublisherKey } from '../../../src/image/signature.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import { SiteCacheClient } from '../../../src/sitecache/site-client.js';
import { FileStore } from '../../../src/store/file-store.js';

/**
 * Issue 22, a store-backed proxy server as the site tier's upstream: the
 * tier (`gvfs cache-server --upstream gvfs://...`) holds ONE session of its
 * own, mapped to an unprivileged account, and fetches each missing chunk by
 * GET_CHUNK on the file the host names. Compute hosts are separate
 * `gvfs proxy-client` processes with their own cache directories and
 * --site-cache; the proxy server runs in this process so its GET_CHUNK
 * calls can be counted (and, in one test, its answers to the tier damaged).
 */

const IMG: Record<string, Buffer> = {
  'disk.img': Buffer.concat([seeded(2 << 20, 'tier-px-disk'), Buffer.alloc(1 << 20)]),
  'kernel': seeded(1_200_000, 'tier-px-kernel'),
  'conf': Buffer.from('x=1\n'),
};
/** An image whose only file is owner-only (root): the tier's session (uid 65534) may not read it, the hosts' may. */
const SECRET = { 'key.bin': seeded(400_000, 'tier-px-secret') };

interface Fixture {
  work: string;
  storeDir: string;
  pubFile: string;
  trusted: Buffer[];
  host: { file: string; key: SessionKey };
  tier: { file: string; key: SessionKey };
  siteKey: string;
  /** Distinct non-zero chunks of each image, with their stored sizes. */
  img: Map<string, { len: number; stored: number; path: string }>;
  secret: Map<string, { len: number; stored: number; path: string }>;
  handleSecret: Buffer;
}

async function fixture(): Promise<Fixture> {
  const work = await tempDir('gvfs-tier-px-');
  const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
  const pub = await readPublisherKey(path.join(work, 'pub'));
  const storeDir = path.join(work, 'store');
  const store = new FileStore(storeDir);
  for (const [name, files] of [['img', IMG], ['secret', SECRET]] as const) {
    const src = path.join(work, `src-${name}`);
    await mkdir(src);
    for (const [n, b] of Object.entries(files)) await writeFile(path.join(src, n), b);
    if (name === 'secret') await chmod(path.join(src, 'key.bin'), 0o600);
    await pushImage(store, src, name, pub);
  }
  const trusted = await readTrustedKeys([pubFile]);
  const chunksOf = async (name: string) => {
    const m = new Map<string, { len: number; stored: number; path: string }>();
    for (const e of (await loadImage(store, name, trusted)).manifest.entries) {
      if (e.type !== 'file') continue;
      for (const [, len, hash] of e.extents) if (hash && !m.has(hash)) m.set(hash, { len, stored: (await stat(path.join(storeDir, chunkKey(hash)))).size, path: e.path });
    }
    return m;
  };
  const siteKey = path.join(work, 'site.key');
  await writeFile(siteKey, randomBytes(32), { mode: 0o600 });
  return {
    work,
    storeDir,
    pubFile,
    trusted,
    host: await keyFile(work, 'alice.key'),
    tier: await keyFile(work, 'tier.key', 'tier', newSessionKey('tier', undefined, { uid: 65534, gid: 65534, gids: [] })),
    siteKey,
    img: await chunksOf('img'),
    secret: await chunksOf('secret'),
    handleSecret: randomBytes(32),
  };
}

function proxyServer(f: Fixture, name: string): Promise<ProxyServer> {
  return createProxyServer({
    exports: [{ kind: 'store', store: new FileStore(f.storeDir), trusted: f.trusted }],
    sessions: new SessionRegistry([f.host.key, f.tier.key]),
    map: new Map(),
    stateDir: path.join(f.work, name),
    handleSecret: f.handleSecret,
  });
}

const tierArgs = (f: Fixture, upstream: string, dir: string) => ['cache-server', '--listen', '127.0.0.1:0', '--upstream', upstream, '--upstream-key', f.tier.file, '--cache-dir', path.join(f.work, dir), '--key', f.siteKey];

const hostArgs = (f: Fixture, servers: string, tierPort: number, dir: string) => [
  'proxy-client', '--listen', '127.0.0.1:0', '--server', servers, '--key', f.host.file, '--no-meta', '--timeout', '60000',
  '--cache-dir', path.join(f.work, dir), '--trust-publisher', f.pubFile, '--site-cache', `127.0.0.1:${tierPort}`, '--site-key', f.siteKey, '--metrics', '127.0.0.1:0',
];

/** Read files of one image through a host's NFS endpoint and compare them with the source. */
async function clone(c: RemoteNfs, image: string, files: Record<string, Buffer>): Promise<void> {
  const root = (await c.mount('/', ROOT)).fh;
  const dir = (await c.lookup(ROOT, root, image)).fh;
  for (const [n, want] of Object.entries(files)) {
    const fh = (await c.lookup(ROOT, dir, n)).fh;
    const got = Buffer.alloc(want.length);
    for (let off = 0; off < want.length; off += 128 << 10) (await c.read(ROOT, fh, off, 128 << 10)).data.copy(got, off);
    assert.ok(got.equals(want), `${image}/${n} differs`);
  }
}

async function metric(port: number, name: string, source: string): Promise<number> {
  const text = (await httpGet(port, '/metrics')).toString();
  const m = new RegExp(`^${name}\\{source="${source}"\\} (\\d+)`, 'm').exec(text);
  assert.ok(m, `${name}{source="${source}"} not in\n${text}`);
  return Number(m[1]);
}

async function tierStats(f: Fixture, port: number): Promise<any> {
  const r = await gvfsRun(['cache', 'stats', '--tier', `127.0.0.1:${port}`, '--site-key', f.siteKey, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const sum = (m: Map<string, { stored: number }>) => [...m.values()].reduce((s, c) => s + c.stored, 0);

describe('site tier with a proxy server as upstream', { timeout: 420_000 }, () => {
  const procs: GvfsProcess[] = [];
  const closers: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const p of procs.reverse()) await p.stop().catch(() => {});
    for (const c of closers.reverse()) await c().catch(() => {});
  });

  test('three hosts clone through the tier: each chunk crosses the proxy server once; the tier gets only what its session may read; per-host stats', async () => {
    const f = await fixture();
    const ps = await proxyServer(f, 'ps');
    closers.push(() => ps.close());
    const psPort = (await ps.listen(0, '127.0.0.1')).port;

    // The flags are checked: gvfs:// without the tier's session key is refused; a wrong key ends the command with the reason.
    const noKey = await gvfsRun(['cache-server', '--upstream', `gvfs://127.0.0.1:${psPort}`, '--cache-dir', path.join(f.work, 'x'), '--key', f.siteKey]);
    assert.notEqual(noKey.code, 0);
    assert.match(noKey.stderr, /needs --upstream-key/);
    const stranger = await keyFile(f.work, 'stranger.key', 'stranger');
    const badKey = await gvfsRun(['cache-server', '--upstream', `gvfs://127.0.0.1:${psPort}`, '--upstream-key', stranger.file, '--cache-dir', path.join(f.work, 'x'), '--key', f.siteKey]);
    assert.notEqual(badKey.code, 0, badKey.stdout);

    const tier = await spawnGvfs(tierArgs(f, `gvfs://127.0.0.1:${psPort}`, 'tier'));
    procs.push(tier);
    const hosts: GvfsProcess[] = [];
    for (const h of ['h1', 'h2', 'h3']) {
      const c = await spawnGvfs(hostArgs(f, `127.0.0.1:${psPort}`, tier.port, h));
      procs.push(c);
      hosts.push(c);
    }
    const nfs = hosts.map((c) => new RemoteNfs({ host: '127.0.0.1', port: c.port, timeoutMs: 120_000 }));
    closers.push(async () => Promise.all(nfs.map((c) => c.close())));

    // 1. The image the tier's session may read: every chunk crosses the proxy server once, on the tier's behalf.
    const before = { ...ps.chunks.c };
    await Promise.all(nfs.map((c) => clone(c, 'img', IMG)));
    assert.equal(ps.chunks.c.chunks - before.chunks, f.img.size, 'GET_CHUNK at the proxy server: once per distinct chunk of the image, for three hosts');
    assert.equal(ps.chunks.c.chunkBytes - before.chunkBytes, sum(f.img));
    for (const c of hosts) {
      assert.equal(await metric(c.info.metrics.port, 'gvfs_chunks_total', 'tier'), f.img.size, 'every chunk of the host came from the tier');
      assert.equal(await metric(c.info.metrics.port, 'gvfs_chunks_total', 'server'), 0);
    }

    // 2. The owner-only image: the tier's session may not read it, so the tier cannot fetch it; each host reads it from the proxy server itself.
    const mid = { ...ps.chunks.c };
    await Promise.all(nfs.map((c) => clone(c, 'secret', SECRET)));
    assert.equal(ps.chunks.c.chunks - mid.chunks, 3 * f.secret.size, 'each host fetched the owner-only chunks on its own session');
    for (const c of hosts) assert.equal(await metric(c.info.metrics.port, 'gvfs_chunks_total', 'server'), f.secret.size);
    const kept = new Set((await readdir(path.join(f.work, 'tier'))).filter((n) => /^[0-9a-f]{64}$/.test(n)));
    assert.equal(kept.size, f.img.size, 'the tier keeps the image it may read');
    for (const h of f.secret.keys()) assert.ok(!kept.has(h), 'the tier holds no chunk its session may not read');

    // 3. A site-key holder naming a secret chunk gets nothing: with its own file (the tier's session may not read it), with
    //    a readable file it is not a chunk of (DENIED at the proxy server), with no file (a miss needs one).
    const [sh, s] = [...f.secret][0];
    const hostile = new SiteCacheClient({ tiers: [{ host: '127.0.0.1', port: tier.port }], key: await readFile(f.siteKey), localAddress: '127.0.0.3' });
    closers.push(async () => hostile.close());
    const denied0 = ps.chunks.c.denied;
    assert.equal(await hostile.get(sh, s.len, { image: 'secret', path: s.path }), undefined);
    assert.equal(await hostile.get(sh, s.len, { image: 'img', path: 'disk.img' }), undefined);
    assert.equal(await hostile.get(sh, s.len), undefined);
    assert.equal(await hostile.get(sh, s.len, { image: 'img', path: '../secret/key.bin' }), undefined);
    assert.equal(ps.chunks.c.denied - denied0, 1, 'the readable file was asked for the foreign hash and refused it');
    assert.equal(hostile.stats.failed, 0, 'a refusal is a 404: the tier stays in use');

    // 4. Per-host stats (gvfs cache stats --tier): another host (source 127.0.0.2) asks for a chunk the tier holds.
    const [ih, ic] = [...f.img][0];
    const other = new SiteCacheClient({ tiers: [{ host: '127.0.0.1', port: tier.port }], key: await readFile(f.siteKey), localAddress: '127.0.0.2' });
    closers.push(async () => other.close());
    assert.ok(await other.get(ih, ic.len, { image: 'img', path: ic.path }));
    const st = await tierStats(f, tier.port);
    assert.equal(st.upstreamFetches, f.img.size, JSON.stringify(st));
    assert.equal(st.bytesFromUpstream, sum(f.img));
    const h1 = st.hosts['127.0.0.1'];
    assert.equal(h1.requests, 3 * (f.img.size + f.secret.size));
    assert.equal(h1.hits + h1.misses + h1.coalesced, h1.requests, JSON.stringify(h1));
    assert.equal(h1.bytesFromUpstream, sum(f.img), 'the upstream bytes were fetched for the hosts at 127.0.0.1');
    assert.equal(h1.notFound, 3 * f.secret.size, 'every request for an owner-only chunk was answered 404');
    assert.deepEqual(st.hosts['127.0.0.2'], { requests: 1, hits: 1, misses: 0, coalesced: 0, bytesServed: ic.stored, bytesFromUpstream: 0, notFound: 0, refused: 0 });
    assert.equal(st.hosts['127.0.0.3'].notFound, 4);
    assert.equal(st.hosts['127.0.0.3'].bytesServed, 0);
    const text = await gvfsRun(['cache', 'stats', '--tier', `127.0.0.1:${tier.port}`, '--site-key', f.siteKey]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /host 127\.0\.0\.2: 1 asked \(100\.0% hits\): 1 hits, 0 misses, 0 coalesced/);
    assert.match(text.stdout, new RegExp(`all hosts: .* from upstream ${f.img.size} chunks`));
    const noSiteKey = await gvfsRun(['cache', 'stats', '--tier', `127.0.0.1:${tier.port}`]);
    assert.notEqual(noSiteKey.code, 0);
    assert.match(noSiteKey.stderr, /give --site-key/);
  });

  test('a chunk the proxy server damages on its way to the tier is refused, not kept, and the host reads it right', async () => {
    const f = await fixture();
    const ps = await proxyServer(f, 'ps');
    closers.push(() => ps.close());
    const psPort = (await ps.listen(0, '127.0.0.1')).port;
    // The proxy server (or the link) alters the first chunk it sends the tier's session.
    let damaged: string | undefined;
    const real = ps.chunks.getChunk.bind(ps.chunks);
    ps.chunks.getChunk = async (cred, a) => {
      const r = await real(cred, a);
      if (cred.session === f.tier.key.id && r.status === ChunkStatus.OK && !damaged) {
        damaged = a.hash.toString('hex');
        r.data = Buffer.from(r.data);
        r.data[r.data.length - 1] ^= 0x40;
      }
      return r;
    };
    const tier = await spawnGvfs(tierArgs(f, `gvfs://127.0.0.1:${psPort}`, 'tier'));
    procs.push(tier);
    const host = await spawnGvfs(hostArgs(f, `127.0.0.1:${psPort}`, tier.port, 'h1'));
    procs.push(host);
    const c = new RemoteNfs({ host: '127.0.0.1', port: host.port, timeoutMs: 120_000 });
    closers.push(() => c.close());
    await clone(c, 'img', IMG);
    assert.ok(damaged, 'the tier asked the proxy server for a chunk');
    const st = await tierStats(f, tier.port);
    assert.equal(st.upstreamRefused, 1, JSON.stringify(st));
    assert.ok(!(await readdir(path.join(f.work, 'tier'))).includes(damaged), 'the damaged chunk is not kept');
    assert.equal(await metric(host.info.metrics.port, 'gvfs_chunks_refused_total', 'tier'), 0, 'the tier never sent the damaged bytes');
    await tier.waitLog(/upstream chunk refused/);
  });

  test('the proxy server killed between files: the hosts fail over to the next proxy server and still clone right', async () => {
    const f = await fixture();
    const secretFile = path.join(f.work, 'handle.secret');
    await writeFile(secretFile, f.handleSecret, { mode: 0o600 });
    // A: its own process (killed); B: in this process (counted).
    const a = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--store', `file://${f.storeDir}`, '--trust-publisher', f.pubFile, '--key', f.host.file, '--key', f.tier.file, '--handle-secret', secretFile, '--state-dir', path.join(f.work, 'a')]);
    procs.push(a);
    const b = await proxyServer(f, 'b');
    closers.push(() => b.close());
    const bPort = (await b.listen(0, '127.0.0.1')).port;
    const tier = await spawnGvfs(tierArgs(f, `gvfs://127.0.0.1:${a.port}`, 'tier'));
    procs.push(tier);
    const hosts: GvfsProcess[] = [];
    for (const h of ['h1', 'h2']) {
      const c = await spawnGvfs(hostArgs(f, `127.0.0.1:${a.port},127.0.0.1:${bPort}`, tier.port, h));
      procs.push(c);
      hosts.push(c);
    }
    const nfs = hosts.map((c) => new RemoteNfs({ host: '127.0.0.1', port: c.port, timeoutMs: 120_000 }));
    closers.push(async () => Promise.all(nfs.map((c) => c.close())));
    await Promise.all(nfs.map((c) => clone(c, 'img', { 'disk.img': IMG['disk.img'] })));
    assert.equal(b.chunks.c.chunks, 0, 'B answered nothing while A ran');
    a.proc.kill('SIGKILL');
    await new Promise((r) => a.proc.once('exit', r));
    // The rest of the clone: the tier's only upstream is gone (it answers 502), each host skips it and asks B.
    await Promise.all(nfs.map((c) => clone(c, 'img', { kernel: IMG.kernel, conf: IMG.conf })));
    assert.ok(b.chunks.c.chunks > 0, 'B served the chunks after A died');
    let fromServer = 0;
    for (const c of hosts) fromServer += await metric(c.info.metrics.port, 'gvfs_chunks_total', 'server');
    assert.ok(fromServer > 0, 'hosts went to their proxy server when the tier could not fetch');
    await Promise.any(hosts.map((c) => c.waitLog(/site cache tier failed/, 30_000)));
  });
});

function httpGet(port: number, p: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(parts)) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}
