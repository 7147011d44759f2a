import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile, symlink } from 'node:fs/promises';
import path from 'node:path';
import { StoreBackend } from '../../../src/backends/store/store-backend.js';
import { FileStore } from '../../../src/store/file-store.js';
import type { ObjectStore } from '../../../src/store/store.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, readTrustedKeys, writePublisherKey } from '../../../src/image/signature.js';
import { chunkKey, imageKey } from '../../../src/image/layout.js';
import { loadImage } from '../../../src/image/catalog.js';
import { isFsError } from '../../../src/backend/errors.js';
import { ROOT, tempDir, user } from '../../helpers/local-server.js';

/** A store that counts chunk fetches (the zero-run promise: no fetch for a read inside one). */
function counting(s: ObjectStore): ObjectStore & { gets: number } {
  const c = Object.create(s) as ObjectStore & { gets: number };
  c.gets = 0;
  c.get = async (k: string) => {
    if (k.startsWith('chunks/')) c.gets++;
    return s.get(k);
  };
  return c;
}

async function setup() {
  const work = await tempDir('gvfs-store-backend-');
  const src = path.join(work, 'src');
  await mkdir(path.join(src, 'sub'), { recursive: true });
  const file = Buffer.concat([randomBytes(300_000), Buffer.alloc(256 << 10), randomBytes(5000)]);
  await writeFile(path.join(src, 'disk.img'), file);
  await writeFile(path.join(src, 'sub', 'secret'), 'only root', { mode: 0o600 });
  await symlink('../disk.img', path.join(src, 'sub', 'link'));
  const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
  const key = await readPublisherKey(path.join(work, 'pub'));
  const store = new FileStore(path.join(work, 'store'));
  await pushImage(store, src, 'img', key);
  const trusted = await readTrustedKeys([pubFile]);
  return { work, src, file, store, trusted, key };
}

async function readAll(b: StoreBackend, fh: Buffer, size: number, piece = 65536): Promise<Buffer> {
  const out: Buffer[] = [];
  for (let off = 0; off < size; off += piece) out.push((await b.read(ROOT, fh, off, piece)).data);
  return Buffer.concat(out);
}

describe('store backend', { timeout: 120_000 }, () => {
  test('serves the tree byte-identical, read-only, with the same handles on two backends', async () => {
    const { file, store, trusted } = await setup();
    const a = await StoreBackend.open({ store, trusted });
    const b = await StoreBackend.open({ store: new FileStore(store.root), trusted });
    const root = (await a.mount('/', ROOT)).fh;
    assert.deepEqual((await b.mount('/', ROOT)).fh, root);
    const img = await a.lookup(ROOT, root, 'img');
    const f = await a.lookup(ROOT, img.fh, 'disk.img');
    assert.deepEqual((await b.lookup(ROOT, (await b.lookup(ROOT, root, 'img')).fh, 'disk.img')).fh, f.fh);
    assert.equal(f.attr!.size, file.length);
    assert.ok((await readAll(a, f.fh, file.length)).equals(file));
    assert.ok((await readAll(b, f.fh, file.length, 100_003)).equals(file));
    const sub = await a.lookup(ROOT, img.fh, 'sub');
    assert.equal((await a.readlink(ROOT, (await a.lookup(ROOT, sub.fh, 'link')).fh)).path, '../disk.img');
    const names = (await a.readdirplus(ROOT, sub.fh, 0n, Buffer.alloc(8), 4096, 65536)).entries.map((e) => e.name);
    assert.deepEqual(names.sort(), ['.', '..', 'link', 'secret']);
    // Modes hold: a non-root user cannot read a 0600 file owned by root.
    const secret = await a.lookup(ROOT, sub.fh, 'secret');
    await assert.rejects(a.read(user(1000), secret.fh, 0, 100), (e) => isFsError(e, 'ACCES'));
    await assert.rejects(a.write(), (e) => isFsError(e, 'ROFS'));
    await assert.rejects(a.getattr(ROOT, Buffer.alloc(33, 0x53)), (e) => isFsError(e, 'STALE'));
    await assert.rejects(a.getattr(ROOT, Buffer.alloc(10)), (e) => isFsError(e, 'BADHANDLE'));
  });

  test('root listing pages by name cookies: an image pushed between pages is neither skipped nor repeated', async () => {
    const { src, store, trusted, key } = await setup();
    for (let i = 0; i < 40; i++) await pushImage(store, src, `i${String(i).padStart(2, '0')}`, key);
    const a = await StoreBackend.open({ store, trusted, refreshMs: 0 });
    const root = (await a.mount('/', ROOT)).fh;
    const seen: string[] = [];
    let cookie = 0n;
    let pages = 0;
    for (;;) {
      const p = await a.readdir(ROOT, root, cookie, Buffer.alloc(8), 300);
      seen.push(...p.entries.map((e) => e.name));
      cookie = p.entries.at(-1)!.cookie;
      // Between the first pages, an image appears and some already listed go.
      if (++pages === 2) {
        await pushImage(store, src, 'late', key);
        // Three images already listed go (a listing by position would now skip entries).
        for (const n of seen.filter((x) => x !== '.' && x !== '..').slice(0, 3)) await store.delete(imageKey(n));
      }
      if (p.eof) break;
    }
    assert.ok(pages > 3, `only ${pages} pages`);
    const old = seen.filter((n) => /^i\d\d$/.test(n) || n === 'img');
    assert.equal(new Set(seen).size, seen.length, 'an entry repeated');
    assert.equal(old.length, 41, 'an image listed before and after the change was skipped');
  });

  test('a read inside a zero run never touches the store', async () => {
    const { file, store, trusted } = await setup();
    const c = counting(store);
    const a = await StoreBackend.open({ store: c, trusted });
    const img = await a.lookup(ROOT, (await a.mount('/', ROOT)).fh, 'img');
    const f = await a.lookup(ROOT, img.fh, 'disk.img');
    const before = c.gets;
    // 300000 is not 4K-aligned: the zero run starts at 303104 and ends at 300000 + 256 KiB rounded down.
    const r = await a.read(ROOT, f.fh, 303_104, 200_000);
    assert.ok(r.data.equals(Buffer.alloc(200_000)));
    assert.equal(c.gets, before, 'a zero-run read fetched a chunk');
    await a.read(ROOT, f.fh, 0, 4096);
    assert.equal(c.gets, before + 1);
    assert.ok(file.subarray(303_104, 503_104).equals(r.data));
  });

  test('a tampered chunk is refused (EIO), a tampered manifest is not served', async () => {
    const { store, trusted } = await setup();
    const v = await loadImage(store, 'img', trusted);
    const disk = v.manifest.entries.find((e) => e.path === 'disk.img')!;
    assert.equal(disk.type, 'file');
    if (disk.type !== 'file') return;
    const first = disk.extents[0][2]!;
    const stored = await store.get(chunkKey(first));
    const bad = Buffer.from(stored);
    bad[bad.length - 1] ^= 1;
    await store.put(chunkKey(first), bad);
    const a = await StoreBackend.open({ store, trusted });
    const img = await a.lookup(ROOT, (await a.mount('/', ROOT)).fh, 'img');
    const f = await a.lookup(ROOT, img.fh, 'disk.img');
    await assert.rejects(a.read(ROOT, f.fh, 0, 4096), (e) => isFsError(e, 'IO'));
    assert.equal(a.chunks.stats.refused, 1);
    // A chunk replaced by another valid chunk (right format, wrong content) is refused too.
    const other = disk.extents.find((x) => x[2] && x[2] !== first)![2]!;
    await store.put(chunkKey(first), await store.get(chunkKey(other)));
    await assert.rejects(a.read(ROOT, f.fh, 0, 4096), (e) => isFsError(e, 'IO'));

    const env = await store.get(imageKey('img'));
    await store.put(imageKey('img'), Buffer.from(env.toString().replace('\\"mode\\":384', '\\"mode\\":420')));
    const b = await StoreBackend.open({ store, trusted });
    await assert.rejects(b.lookup(ROOT, (await b.mount('/', ROOT)).fh, 'img'), (e) => isFsError(e, 'NOENT'));
    assert.equal(b.stats.refusedManifests, 1);
  });
});

describe('stored chunk decoding', { timeout: 60_000 }, () => {
  test('a chunk whose zstd frame declares another size (a decompression bomb) is refused before decompressing', async () => {
    const { decodeChunk, encodeChunk, ChunkError } = await import('../../../src/image/layout.js');
    const { compress } = await import('zstd-napi');
    const { createHash } = await import('node:crypto');
    const raw = Buffer.alloc(100_000, 1);
    const hash = createHash('sha256').update(raw).digest('hex');
    assert.ok(decodeChunk(encodeChunk(raw), hash, raw.length).equals(raw));
    // 64 MiB of zeros compresses to a few KiB; stored under a 100 KB chunk's hash.
    const bomb = Buffer.concat([Buffer.from([1]), compress(Buffer.alloc(64 << 20))]);
    assert.ok(bomb.length < 100_000);
    assert.throws(() => decodeChunk(bomb, hash, raw.length), (e) => e instanceof ChunkError && /do not declare/.test(e.message));
  });
});
