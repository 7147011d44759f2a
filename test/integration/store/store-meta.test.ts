import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { MetaStatus, type BulkReadArgs } from '../../../src/ext/meta-codec.js';
import { fetchMeta } from '../../../src/ext/meta-client.js';
import { gcStore } from '../../../src/image/catalog.js';
import { imageKey } from '../../../src/image/layout.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, verifySigned, writePublisherKey } from '../../../src/image/signature.js';
import { decodeMeta, encodeMeta, HASH_LEN } from '../../../src/meta/format.js';
import { generateMeta, writeMetaFile } from '../../../src/meta/generate.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import { proxyLink, stackClient, type ClientStack } from '../../../src/proxy/proxy-client.js';
import type { Credentials } from '../../../src/rpc/types.js';
import { FileStore } from '../../../src/store/file-store.js';
import { keyFile } from '../../helpers/key-file.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';
import { seeded } from './guest-versions.js';

/**
 * The meta-data procedures of a store-backed proxy server answer from the
 * manifest: a file pushed with `gvfs meta generate`'s meta-data (prefetch
 * hint, a recorded order, block hashes) is prefetched by a compute host
 * exactly as the manifest lists it — the blocks of the listed extents, in
 * the listed order — and its zero blocks never cross the link. The same
 * client against a local-export proxy server of the same directory is the
 * reference: the store's prefetch covers every block the local one fetched.
 */
const BS = 64 << 10;
const MiB = 1 << 20;

describe('store export: meta-data hints and prefetch order served from the manifest', { timeout: 180_000 }, () => {
  const closers: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  });

  async function image() {
    const work = await tempDir('gvfs-store-meta-');
    const dir = path.join(work, 'img');
    await fs.mkdir(dir);
    // 4 MiB: data, a 1 MiB hole of zeros (blocks 16..31), data.
    const data = Buffer.concat([seeded(MiB, 'a'), Buffer.alloc(MiB), seeded(2 * MiB, 'b')]);
    const file = path.join(dir, 'disk.img');
    await fs.writeFile(file, data);
    await fs.writeFile(path.join(dir, 'plain.bin'), seeded(MiB, 'c'));
    const g = await generateMeta(file, { root: dir, hint: 'prefetch', blockSize: BS });
    // A recorded order (as gvfs meta record would leave it): late blocks first, then early ones.
    const recorded = [40, 41, 3, 60, 10];
    await writeMetaFile(g.metaPath, encodeMeta({ ...g.meta, order: recorded }));
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    const pub = await readPublisherKey(path.join(work, 'pub'));
    const store = new FileStore(path.join(work, 'store'));
    await pushImage(store, dir, 'img', pub);
    const m = verifySigned(await store.get(imageKey('img')), [pub.publicRaw], 'img').manifest;
    const { key } = await keyFile(work, 'session.key');
    return { work, dir, data, store, pub, pubFile, manifest: m, recorded, key, generated: g.meta };
  }

  async function serve(o: Awaited<ReturnType<typeof image>>, kind: 'store' | 'local'): Promise<{ ps: ProxyServer; port: number; bulk: number[][] }> {
    const ps = await createProxyServer({
      exports: kind === 'store' ? [{ kind: 'store', store: new FileStore(path.join(o.work, 'store')), trusted: [o.pub.publicRaw] }] : [{ kind: 'local', dir: o.dir }],
      map: new Map(),
      sessions: new SessionRegistry([o.key]),
      stateDir: path.join(o.work, `ps-${kind}`),
    });
    closers.push(() => ps.close());
    // Every BULK_READ's ranges, in arrival order, as block indexes.
    const bulk: number[][] = [];
    const real = ps.meta.bulkRead.bind(ps.meta);
    ps.meta.bulkRead = (cred: Credentials, a: BulkReadArgs) => {
      bulk.push(a.ranges.flatMap((r) => Array.from({ length: Math.ceil(r.len / BS) }, (_, k) => r.offset / BS + k)));
      return real(cred, a);
    };
    return { ps, port: (await ps.listen(0, '127.0.0.1')).port, bulk };
  }

  async function client(o: Awaited<ReturnType<typeof image>>, port: number, name: string): Promise<ClientStack> {
    const s = stackClient({ host: '127.0.0.1', port, key: o.key, cache: { dir: path.join(o.work, `cache-${name}`), capacity: 256 * MiB, blockSize: BS, writeBack: false, readAheadBytes: 0 }, meta: { window: 1 } });
    closers.push(() => s.backend.close());
    await s.cache!.ready;
    return s;
  }

  /** Open the file and read its first byte (what starts a prefetch), then wait until the transfer is done. */
  async function prefetch(s: ClientStack, bulk: number[][], sub: string[]): Promise<{ fh: Buffer; firstRead: number[] }> {
    let dir = (await s.backend.mount('/', ROOT)).fh;
    for (const n of sub) dir = (await s.backend.lookup(ROOT, dir, n)).fh;
    const fh = (await s.backend.lookup(ROOT, dir, 'disk.img')).fh;
    const r = await s.backend.read(ROOT, fh, 0, 1);
    assert.equal(r.count, 1);
    // The transfer is done when no BULK_READ arrived for a while and the meta-data wrapper has nothing in flight.
    let n = -1;
    while (n !== bulk.length) {
      n = bulk.length;
      await new Promise((res) => setTimeout(res, 1500));
    }
    return { fh, firstRead: bulk[0] ?? [] };
  }

  test('the manifest carries hint, order and block hashes (kept by gc); GET_META from the store equals the generator\'s hashes and zero map', async () => {
    const o = await image();
    const e = o.manifest.entries.find((x) => x.path === 'disk.img');
    assert.ok(e && e.type === 'file');
    assert.equal(e.hint, 'prefetch');
    assert.ok(e.order && e.order.length > 0, 'order of extents');
    assert.ok(e.blocks && e.blocks.size === BS, 'block hashes named');
    const plain = o.manifest.entries.find((x) => x.path === 'plain.bin');
    assert.ok(plain && plain.type === 'file' && !plain.hint && !plain.blocks, 'a file without meta-data has none');
    // gc with no grace keeps the block-hash chunk: the manifest names it.
    const gc = await gcStore(o.store, { graceMs: 0 });
    assert.equal(gc.deleted, 0, 'gc deleted a chunk the manifest names');
    const { port } = await serve(o, 'store');
    const { remote } = proxyLink({ host: '127.0.0.1', port, key: o.key });
    closers.push(() => remote.close());
    const root = (await remote.mount('/', ROOT)).fh;
    const img = (await remote.lookup(ROOT, root, 'img')).fh;
    const fh = (await remote.lookup(ROOT, img, 'disk.img')).fh;
    const got = await fetchMeta(remote, ROOT, fh);
    assert.equal(got.status, MetaStatus.OK, `GET_META status ${got.status}`);
    const m = decodeMeta(got.bytes!);
    assert.ok(m.hashes.equals(o.generated.hashes), 'block hashes as generated');
    assert.ok(m.zeroMap.equals(o.generated.zeroMap), 'zero map as generated');
    assert.equal(m.hint, 'prefetch');
    assert.equal(m.hashes.length, ((4 * MiB) / BS) * HASH_LEN);
    assert.equal(m.size, (await remote.getattr(ROOT, fh)).size);
    const pfh = (await remote.lookup(ROOT, img, 'plain.bin')).fh;
    assert.equal((await fetchMeta(remote, ROOT, pfh)).status, MetaStatus.NONE);
  });

  test('a compute host prefetches from the store what the manifest lists, in its order; zero blocks stay local', async () => {
    const o = await image();
    const e = o.manifest.entries.find((x) => x.path === 'disk.img');
    assert.ok(e && e.type === 'file' && e.order);
    // What the manifest lists: the blocks of its listed extents, in order, each once, zero blocks left out.
    const zero = (b: number) => b >= 16 && b < 32;
    const want: number[] = [];
    for (const x of e.order) {
      const [off, len] = e.extents[x];
      for (let b = Math.floor(off / BS); b <= Math.floor((off + len - 1) / BS); b++) if (!zero(b) && !want.includes(b)) want.push(b);
    }
    const store = await serve(o, 'store');
    const s = await client(o, store.port, 'store');
    const { firstRead } = await prefetch(s, store.bulk, ['img']);
    const fetched = store.bulk.flat();
    // The first BULK_READ is the demand read of block 0 (it jumps the queue); the rest is the prefetch, in the manifest's order.
    assert.deepEqual(firstRead, [0]);
    assert.deepEqual(fetched.slice(1).filter((b) => b !== 0), want.filter((b) => b !== 0), `prefetched ${fetched.slice(1)} want ${want}`);
    assert.ok(!fetched.some(zero), 'no zero block crossed the link');

    // The reference: the same client against a local-export proxy server of the image directory.
    const local = await serve(o, 'local');
    const l = await client(o, local.port, 'local');
    await prefetch(l, local.bulk, []);
    const localBlocks = local.bulk.flat().slice(1);
    assert.deepEqual(localBlocks, o.recorded, 'the local export prefetches the recorded blocks');
    for (const b of localBlocks) assert.ok(fetched.includes(b), `block ${b} prefetched from the local export but not from the store`);

    // And the data read back through the store-backed stack is the image's.
    const root = (await s.backend.mount('/', ROOT)).fh;
    const fh = (await s.backend.lookup(ROOT, (await s.backend.lookup(ROOT, root, 'img')).fh, 'disk.img')).fh;
    for (let off = 0; off < o.data.length; off += 1 << 20) {
      const r = await s.backend.read(ROOT, fh, off, 1 << 20);
      assert.ok(r.data.subarray(0, r.count).equals(o.data.subarray(off, off + r.count)), `bytes at ${off}`);
    }
  });
});
