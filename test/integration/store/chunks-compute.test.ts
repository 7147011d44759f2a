import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, ROOT } from '../../helpers/local-server.js';
import { RawRpc } from '../../helpers/raw-rpc.js';
import { seeded } from './guest-versions.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { FileStore } from '../../../src/store/file-store.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, readTrustedKeys, verifySigned, writePublisherKey } from '../../../src/image/signature.js';
import { chunkKey, encodeChunk, imageKey } from '../../../src/image/layout.js';
import { chunksOf } from '../../../src/image/manifest.js';
import { newSessionKey, type SessionKey } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { clientProof } from '../../../src/channel/proof.js';
import { authArgs, authRes, AuthStatus, challengeRes, GVFS_PROGRAM, GVFS_V1, GvfsProc } from '../../../src/ext/codec.js';
import { ChunkStatus, GET_CHUNK, getChunkArgs, getChunkRes, STORE_FILE, storeFileArgs, storeFileRes } from '../../../src/ext/chunks-codec.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import { createProxyClient, type ProxyClient } from '../../../src/proxy/proxy-client.js';
import { parseMap } from '../../../src/wrappers/identity-map/map-file.js';
import { SiteCacheClient } from '../../../src/sitecache/site-client.js';
import { STATUS_OF } from '../../../src/nfs3/status.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import type { XdrReader } from '../../../src/xdr/index.js';

/**
 * Compute hosts reading store images by chunk hash (issues 21, 22): a
 * store-backed proxy server (file:// store), a proxy client with a disk
 * cache and trusted publisher keys, our NFS client on the proxy client.
 * Chunk calls are counted at the proxy server.
 */

const MiB = 1 << 20;
const shared = seeded(3 * MiB, 'shared-base');
const images: Record<string, Record<string, Buffer>> = {
  a: { 'disk.img': Buffer.concat([shared, Buffer.alloc(2 * MiB), seeded(MiB, 'only-a')]), 'conf': Buffer.from('a=1\n') },
  b: { 'disk.img': Buffer.concat([shared, Buffer.alloc(2 * MiB), seeded(MiB, 'only-b')]), 'conf': Buffer.from('b=2\n') },
};

interface World {
  work: string;
  storeDir: string;
  pubFile: string;
  ps: ProxyServer;
  port: number;
  alice: SessionKey;
  bob: SessionKey;
  /** chunk hashes of each image, and of both */
  chunks: Record<string, Set<string>>;
  all: Set<string>;
}

async function world(): Promise<World> {
  const work = await tempDir('gvfs-chunks-');
  const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
  const key = await readPublisherKey(path.join(work, 'pub'));
  const storeDir = path.join(work, 'store');
  const store = new FileStore(storeDir);
  const trusted = await readTrustedKeys([pubFile]);
  const chunks: Record<string, Set<string>> = {};
  for (const [name, files] of Object.entries(images)) {
    const src = path.join(work, `src-${name}`);
    await mkdir(src);
    for (const [n, b] of Object.entries(files)) await writeFile(path.join(src, n), b);
    await writeFile(path.join(src, 'secret'), seeded(100_000, `secret-${name}`));
    await chmod(path.join(src, 'secret'), 0o600);
    await pushImage(store, src, name, key);
    // The chunks of the files a clone reads (not 'secret', which root alone may read).
    const m = verifySigned(await store.get(imageKey(name)), trusted, name).manifest;
    chunks[name] = chunksOf({ ...m, entries: m.entries.filter((e) => e.path in files) });
  }
  const all = new Set([...chunks.a, ...chunks.b]);
  const alice = newSessionKey('alice');
  const bob = newSessionKey('bob', undefined, { uid: 4444, gid: 4444, gids: [] });
  const local = path.join(work, 'local');
  await mkdir(local);
  await writeFile(path.join(local, 'plain'), 'not a store file\n');
  const ps = await createProxyServer({
    // The local export first: '/' would take '/local' as an image name.
    exports: [{ kind: 'local', dir: local, name: '/local' }, { kind: 'store', store, trusted, name: '/' }],
    map: parseMap('alice 0 0\n'),
    sessions: new SessionRegistry([alice, bob]),
    stateDir: path.join(work, 'ps-state'),
  });
  const { port } = await ps.listen(0, '127.0.0.1');
  return { work, storeDir, pubFile, ps, port, alice, bob, chunks, all };
}

async function client(w: World, name: string, o: { trust?: string; site?: SiteCacheClient; cacheDir?: string } = {}): Promise<ProxyClient> {
  const pc = createProxyClient({
    host: '127.0.0.1',
    port: w.port,
    key: w.alice,
    meta: false,
    timeoutMs: 60_000,
    chunks: { trusted: await readTrustedKeys([o.trust ?? w.pubFile]), site: o.site },
    cache: { dir: o.cacheDir ?? path.join(w.work, `cache-${name}`), capacity: 256 * MiB, controlSocket: false },
  });
  ports.set(pc, (await pc.server.listen(0, '127.0.0.1')).port);
  return pc;
}

/** Read every file of `image` through the proxy client at `port`, piece by piece; assert each byte. */
async function clone(port: number, image: string, between?: (off: number) => Promise<void>): Promise<void> {
  const nfs = new RemoteNfs({ host: '127.0.0.1', port, timeoutMs: 120_000 });
  try {
    const root = (await nfs.mount('/', ROOT)).fh;
    const dir = (await nfs.lookup(ROOT, root, image)).fh;
    for (const [n, want] of Object.entries(images[image])) {
      const fh = (await nfs.lookup(ROOT, dir, n)).fh;
      const got = Buffer.alloc(want.length);
      for (let off = 0; off < want.length; off += 256 << 10) {
        await between?.(off);
        const r = await nfs.read(ROOT, fh, off, 256 << 10);
        r.data.copy(got, off);
      }
      assert.ok(got.equals(want), `${image}/${n} differs`);
    }
  } finally {
    await nfs.close();
  }
}

const ports = new WeakMap<ProxyClient, number>();
const port = (pc: ProxyClient) => ports.get(pc)!;

describe('compute hosts read store images by chunk hash', { timeout: 300_000 }, () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
  });

  test('two images sharing chunks through one cache: each chunk fetched once, zero runs never; a second pass asks nothing', async () => {
    const w = await world();
    cleanup.push(() => w.ps.close());
    const pc = await client(w, 'one');
    cleanup.push(() => pc.close());
    await clone(port(pc), 'a');
    assert.equal(w.ps.chunks.c.chunks, w.chunks.a.size, 'image a: one GET_CHUNK per distinct chunk');
    await clone(port(pc), 'b');
    assert.equal(w.ps.chunks.c.chunks, w.all.size, 'image b fetched only the chunks a did not have');
    assert.ok(w.all.size < w.chunks.a.size + w.chunks.b.size, 'the images share chunks');
    assert.ok(pc.chunks!.stats.zeroBytes >= 4 * MiB, 'the zero runs were answered on the compute host');
    // Nothing is read over NFS READ at the proxy server for these files: only chunk calls.
    assert.equal(pc.chunks!.stats.passedReads, 0);
    await clone(port(pc), 'a');
    await clone(port(pc), 'b');
    assert.equal(w.ps.chunks.c.chunks, w.all.size, 'a second pass is answered from the cache');
  });

  test('a chunk tampered with on the compute host disk is refetched, never served', async () => {
    const w = await world();
    cleanup.push(() => w.ps.close());
    const cacheDir = path.join(w.work, 'cache-tamper');
    const pc1 = await client(w, 'x', { cacheDir });
    await clone(port(pc1), 'a');
    await pc1.close();
    const before = w.ps.chunks.c.chunks;
    // Flip a byte of one stored chunk (a zstd frame: the content changes or no longer decodes).
    const victims = (await readdir(path.join(cacheDir, 'chunks'))).filter((n) => /^[0-9a-f]{64}$/.test(n));
    assert.equal(victims.length, w.chunks.a.size);
    const f = path.join(cacheDir, 'chunks', victims[0]);
    const b = await readFile(f);
    b[b.length - 5] ^= 0x40;
    await writeFile(f, b);
    // A new process on the same cache directory (nothing in memory).
    const pc2 = await client(w, 'x', { cacheDir });
    cleanup.push(() => pc2.close());
    await clone(port(pc2), 'a');
    assert.equal(pc2.chunks!.store.stats.diskRefused, 1, 'the tampered chunk was refused');
    assert.equal(w.ps.chunks.c.chunks - before, 1, 'only the tampered chunk was fetched again');
    assert.equal(pc2.chunks!.store.stats.diskHits, w.chunks.a.size - 1);
  });

  test('a tier serving wrong chunks is refused; every chunk comes from the proxy server, right', async () => {
    const w = await world();
    cleanup.push(() => w.ps.close());
    // A "tier" that answers every request with a well-formed chunk of the asked length and other content.
    let asked = 0;
    const tier = http.createServer((req, res) => {
      asked++;
      const len = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('len'));
      res.end(encodeChunk(seeded(len, `forged-${asked}`)));
    });
    tier.listen(0, '127.0.0.1');
    await once(tier, 'listening');
    cleanup.push(async () => tier.close());
    const site = new SiteCacheClient({ tiers: [{ host: '127.0.0.1', port: (tier.address() as { port: number }).port }], timeoutMs: 5000 });
    const pc = await client(w, 'tier', { site });
    cleanup.push(() => pc.close());
    await clone(port(pc), 'a');
    const s = pc.chunks!.store.stats;
    assert.equal(asked, w.chunks.a.size, 'the tier was asked for each chunk');
    assert.equal(s.tierHits, 0);
    assert.equal(s.tierRefused, w.chunks.a.size, 'every forged chunk refused');
    assert.equal(w.ps.chunks.c.chunks, w.chunks.a.size, 'every refused chunk came from the proxy server');
  });

  test('a tier killed mid-clone: the clone completes, right, from the proxy server', async () => {
    const w = await world();
    cleanup.push(() => w.ps.close());
    const t: GvfsProcess = await spawnGvfs(['cache-server', '--listen', '127.0.0.1:0', '--upstream', `file://${w.storeDir}`, '--cache-dir', path.join(w.work, 'tier'), '--insecure']);
    cleanup.push(() => t.stop());
    const site = new SiteCacheClient({ tiers: [{ host: '127.0.0.1', port: t.port }], timeoutMs: 5000 });
    const pc = await client(w, 'kill', { site });
    cleanup.push(() => pc.close());
    let killed = false;
    await clone(port(pc), 'a', async (off) => {
      if (!killed && off >= 2 * MiB) {
        t.proc.kill('SIGKILL');
        await once(t.proc, 'exit').catch(() => {});
        killed = true;
      }
    });
    assert.ok(killed);
    const s = pc.chunks!.store.stats;
    assert.ok(s.tierHits > 0, 'the tier served chunks before it died');
    assert.equal(s.tierHits + w.ps.chunks.c.chunks, w.chunks.a.size, 'the rest came from the proxy server');
  });

  test('a host that does not trust the publisher refuses the image (EIO), whatever the proxy server serves', async () => {
    const w = await world();
    cleanup.push(() => w.ps.close());
    const { pubFile: other } = await writePublisherKey(path.join(w.work, 'other'));
    const pc = await client(w, 'distrust', { trust: other });
    cleanup.push(() => pc.close());
    await assert.rejects(clone(port(pc), 'a'), /IO|EIO|5\b/);
    assert.equal(pc.chunks!.stats.manifestRefused >= 1, true);
    assert.equal(w.ps.chunks.c.chunks, 0, 'no chunk fetched for an image the host cannot verify');
  });

  test('hostile session (raw RPC): only chunks of a file it may read; non-store exports say NOTSUPP', async () => {
    const w = await world();
    cleanup.push(() => w.ps.close());
    // Handles of each session, from our own client.
    const handles = async (k: SessionKey) => {
      const pc = createProxyClient({ host: '127.0.0.1', port: w.port, key: k, meta: false, timeoutMs: 30_000 });
      try {
        const root = (await pc.backend.mount('/', ROOT)).fh;
        const a = (await pc.backend.lookup(ROOT, root, 'a')).fh;
        const b = (await pc.backend.lookup(ROOT, root, 'b')).fh;
        const lroot = (await pc.backend.mount('/local', ROOT)).fh;
        return {
          aDisk: (await pc.backend.lookup(ROOT, a, 'disk.img')).fh,
          aSecret: (await pc.backend.lookup(ROOT, a, 'secret')).fh,
          bDisk: (await pc.backend.lookup(ROOT, b, 'disk.img')).fh,
          plain: (await pc.backend.lookup(ROOT, lroot, 'plain')).fh,
        };
      } finally {
        await pc.close();
      }
    };
    const ha = await handles(w.alice);
    const hb = await handles(w.bob);
    const c = await RawRpc.connect(w.port);
    cleanup.push(async () => c.close());
    let xid = 100;
    const call = async <R>(proc: number, args: Parameters<typeof RawRpc.call>[4], dec: (r: XdrReader) => R): Promise<R> => {
      const x = xid++;
      c.sendRecord(RawRpc.call(x, GVFS_PROGRAM, GVFS_V1, proc, args));
      const r = await c.reply(x);
      assert.equal(r.kind, 'success', `proc ${proc}: ${r.kind}`);
      return dec((r as { body: XdrReader }).body);
    };
    // Prove bob's session on the raw connection (bob maps to uid 4444: not the owner of the 0600 files).
    const nonce = await call(GvfsProc.CHALLENGE, () => undefined, challengeRes.dec);
    const cn = Buffer.alloc(32, 7);
    const auth = await call(GvfsProc.AUTH, (wr) => authArgs.enc(wr, { sessionId: w.bob.id, clientNonce: cn, proof: clientProof(w.bob.key, w.bob.id, nonce, cn) }), authRes.dec);
    assert.equal(auth.status, AuthStatus.OK);

    const manifestA = verifySigned(await readFile(path.join(w.storeDir, imageKey('a'))), await readTrustedKeys([w.pubFile]), 'a').manifest;
    const diskA = manifestA.entries.find((e) => e.path === 'disk.img')!;
    assert.equal(diskA.type, 'file');
    const own = diskA.type === 'file' ? diskA.extents.find((x) => x[2] !== null)! : undefined!;
    const onlyB = [...w.chunks.b].find((h) => !w.chunks.a.has(h))!;
    const secretA = manifestA.entries.find((e) => e.path === 'secret')!;
    const secretChunk = secretA.type === 'file' ? secretA.extents.find((x) => x[2] !== null)! : undefined!;
    const get = (fh: Buffer, hash: string, len: number) => call(GET_CHUNK, (wr) => getChunkArgs.enc(wr, { fh, hash: Buffer.from(hash, 'hex'), len }), getChunkRes.dec);

    // Control: a chunk of the file named, which bob may read.
    const ok = await get(hb.aDisk, own[2]!, own[1]);
    assert.equal(ok.status, ChunkStatus.OK);
    assert.ok(ok.data.equals(await readFile(path.join(w.storeDir, chunkKey(own[2]!)))));
    // A chunk that exists in the store but belongs to another image's file.
    assert.equal((await get(hb.aDisk, onlyB, 1024)).status, ChunkStatus.DENIED, 'chunk of another image refused');
    const bx = manifestOfB(w, onlyB);
    assert.equal((await get(hb.aDisk, onlyB, await bx)).status, ChunkStatus.DENIED, 'chunk of another image refused (right length)');
    // Its own chunk with another length; a hash nobody has.
    assert.equal((await get(hb.aDisk, own[2]!, own[1] + 1)).status, ChunkStatus.DENIED);
    assert.equal((await get(hb.aDisk, 'ab'.repeat(32), 4096)).status, ChunkStatus.DENIED);
    // The 0600 file of root: bob may not read it, so neither its manifest nor its chunks.
    const denied = await get(hb.aSecret, secretChunk[2]!, secretChunk[1]);
    assert.equal(denied.status, ChunkStatus.NFSERR);
    assert.equal(denied.nfsstat, STATUS_OF.ACCES);
    const sf = await call(STORE_FILE, (wr) => storeFileArgs.enc(wr, { fh: hb.aSecret, offset: 0, count: 100 }), storeFileRes.dec);
    assert.equal(sf.status, ChunkStatus.NFSERR);
    // alice's handle presented by bob's session.
    const foreign = await get(ha.aDisk, own[2]!, own[1]);
    assert.equal(foreign.status, ChunkStatus.NFSERR);
    assert.equal(foreign.nfsstat, STATUS_OF.BADHANDLE);
    // A file of a local export: not a store file.
    assert.equal((await get(hb.plain, own[2]!, own[1])).status, ChunkStatus.NOTSUPP);
    const plain = await call(STORE_FILE, (wr) => storeFileArgs.enc(wr, { fh: hb.plain, offset: 0, count: 100 }), storeFileRes.dec);
    assert.equal(plain.status, ChunkStatus.NOTSUPP);
    // STORE_FILE on a readable file: the signed envelope, as stored, paged.
    const env = await readFile(path.join(w.storeDir, imageKey('a')));
    const p1 = await call(STORE_FILE, (wr) => storeFileArgs.enc(wr, { fh: hb.aDisk, offset: 0, count: 100 }), storeFileRes.dec);
    assert.equal(p1.status, ChunkStatus.OK);
    assert.equal(p1.total, env.length);
    assert.equal(p1.path, 'disk.img');
    assert.ok(p1.data.equals(env.subarray(0, 100)));
    assert.equal(w.ps.chunks.c.chunks, 1, 'only the control chunk was served');
  });
});

async function manifestOfB(w: World, hash: string): Promise<number> {
  const m = verifySigned(await readFile(path.join(w.storeDir, imageKey('b'))), await readTrustedKeys([w.pubFile]), 'b').manifest;
  for (const e of m.entries) if (e.type === 'file') for (const x of e.extents) if (x[2] === hash) return x[1];
  throw new Error('not in b');
}
