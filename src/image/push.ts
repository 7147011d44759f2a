import { randomBytes } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { decodeMeta, META_DIR, metaFileName, sameVersion } from '../meta/format.js';
import { isStoreError, type ObjectStore } from '../store/store.js';
import { checkChunking, DEFAULT_CHUNKING, MAX_CHUNK, type ChunkingParams } from './chunker.js';
import { chunkKey, encodeChunk, GC_LOCK, imageKey, PENDING } from './layout.js';
import { IMAGE_NAME, MANIFEST_FORMAT, sha256hex, type Entry, type BlockHashes, type Extent, type Hint, type Manifest } from './manifest.js';
import { signManifest, type PublisherKey } from './signature.js';
import { splitFile } from './split.js';

export interface PushOptions {
  chunking?: ChunkingParams;
  /** zstd level of stored chunks. */
  level?: number;
  /** Chunk uploads in flight (memory: about this many chunks). */
  parallel?: number;
  /** How long to wait for a running gc to finish (ms). */
  gcWaitMs?: number;
  /** A gc lock older than this is stale (its gc died) and ignored (ms). */
  gcLockStaleMs?: number;
  /** Tests: called after every chunk is stored, before the manifest is written. */
  beforeManifest?: () => Promise<void>;
}

export interface PushStats {
  name: string;
  digest: string;
  files: number;
  /** Sum of file sizes. */
  plainBytes: number;
  /** Bytes in zero runs (never stored). */
  zeroBytes: number;
  chunks: number;
  uniqueChunks: number;
  /** Chunks this push stored (the others were there already). */
  newChunks: number;
  /** Bytes this push stored (compressed chunks + manifest). */
  storedBytes: number;
}

export const DEFAULT_GC_LOCK_STALE_MS = 6 * 3600_000;

/**
 * Push a directory tree as image `name`: chunks first (each stored once,
 * skipped when the store has it), then the signed manifest, which replaces
 * any previous manifest of that name atomically. A reader sees the old
 * image or the new one.
 *
 * Against a concurrent gc (gc.ts): the push first writes its lease
 * `pending/ID`, THEN checks for `locks/gc`; gc writes its lock, THEN lists
 * leases. On a store with read-after-write consistency (S3 today, radosgw,
 * a directory) at least one of the two sees the other: either the push
 * waits for the gc to finish, or the gc deletes nothing. The lease is
 * removed once the manifest is stored (and left behind if the push dies:
 * gc then ignores it after its own lease time).
 */
export async function pushImage(store: ObjectStore, dir: string, name: string, key: PublisherKey, o: PushOptions = {}): Promise<PushStats> {
  if (!IMAGE_NAME.test(name)) throw new Error(`bad image name "${name}" ([A-Za-z0-9._-], at most 128)`);
  const chunking = o.chunking ?? DEFAULT_CHUNKING;
  checkChunking(chunking);
  const entries = await walk(dir);
  const lease = `${PENDING}${Date.now()}-${randomBytes(6).toString('hex')}`;
  await store.put(lease, Buffer.from(JSON.stringify({ name, host: os.hostname(), pid: process.pid, started: new Date().toISOString() })));
  try {
    await waitForGc(store, lease, o.gcWaitMs ?? 120_000, o.gcLockStaleMs ?? DEFAULT_GC_LOCK_STALE_MS);
    const stats: PushStats = { name, digest: '', files: 0, plainBytes: 0, zeroBytes: 0, chunks: 0, uniqueChunks: 0, newChunks: 0, storedBytes: 0 };
    const seen = new Set<string>();
    const inflight = new Set<Promise<void>>();
    let failure: unknown;
    const store1 = async (hash: string, data: Buffer) => {
      try {
        await store.head(chunkKey(hash));
        return;
      } catch (e) {
        if (!isStoreError(e, 'NOT_FOUND')) throw e;
      }
      const enc = encodeChunk(data, o.level ?? 3);
      try {
        await store.put(chunkKey(hash), enc, { ifAbsent: true });
        stats.newChunks++;
        stats.storedBytes += enc.length;
      } catch (e) {
        if (!isStoreError(e, 'EXISTS')) throw e;
      }
    };
    const out: Entry[] = [];
    for (const e of entries) {
      if (e.type !== 'file') {
        out.push(e.entry);
        continue;
      }
      stats.files++;
      stats.plainBytes += e.size;
      const extents: Extent[] = [];
      for await (const p of splitFile(e.abs, e.size, chunking)) {
        if ('zero' in p) {
          extents.push([p.off, p.len, null]);
          stats.zeroBytes += p.len;
          continue;
        }
        const h = sha256hex(p.data);
        extents.push([p.off, p.len, h]);
        stats.chunks++;
        if (seen.has(h)) continue;
        seen.add(h);
        const t: Promise<void> = store1(h, p.data).catch((err) => {
          failure ??= err;
        });
        inflight.add(t);
        void t.finally(() => inflight.delete(t));
        if (inflight.size >= (o.parallel ?? 8)) await Promise.race(inflight);
        if (failure) throw failure;
      }
      const hints = await metaHints(dir, e.abs, e.size, extents, async (data) => {
        const h = sha256hex(data);
        if (!seen.has(h)) {
          seen.add(h);
          await store1(h, data);
        }
        return h;
      });
      out.push({ path: e.rel, type: 'file', mode: e.mode, mtime: e.mtime, size: e.size, extents, ...hints });
    }
    await Promise.all(inflight);
    if (failure) throw failure;
    stats.uniqueChunks = seen.size;
    await o.beforeManifest?.();
    const manifest: Manifest = { format: MANIFEST_FORMAT, name, created: new Date().toISOString(), chunking, entries: out };
    const signed = signManifest(manifest, key);
    await store.put(imageKey(name), signed);
    stats.storedBytes += signed.length;
    stats.digest = sha256hex(Buffer.from(JSON.stringify(manifest)));
    return stats;
  } finally {
    await store.delete(lease).catch(() => {});
  }
}

async function waitForGc(store: ObjectStore, lease: string, waitMs: number, staleMs: number): Promise<void> {
  const end = Date.now() + waitMs;
  for (;;) {
    let lock;
    try {
      lock = await store.head(GC_LOCK);
    } catch (e) {
      if (isStoreError(e, 'NOT_FOUND')) return;
      throw e;
    }
    if (Date.now() - lock.mtime.getTime() > staleMs) return;
    if (Date.now() > end) throw new Error(`a gc holds ${GC_LOCK} in ${store.url} (since ${lock.mtime.toISOString()}); try again later (lease ${lease} removed)`);
    await delay(500);
  }
}

type Walked = { type: 'file'; rel: string; abs: string; size: number; mode: number; mtime: number } | { type: 'other'; entry: Entry };

/** The tree under `dir`, sorted by path (the manifest's order); the meta-data directory is not part of an image. */
async function walk(dir: string): Promise<Walked[]> {
  const out: Walked[] = [];
  const visit = async (rel: string) => {
    const names = (await readdir(path.join(dir, rel))).sort();
    for (const n of names) {
      if (rel === '' && n === META_DIR) continue;
      const r = rel ? `${rel}/${n}` : n;
      const abs = path.join(dir, r);
      const st = await lstat(abs);
      const mode = st.mode & 0o7777;
      if (st.isDirectory()) {
        out.push({ type: 'other', entry: { path: r, type: 'dir', mode, mtime: st.mtimeMs } });
        await visit(r);
      } else if (st.isFile()) out.push({ type: 'file', rel: r, abs, size: st.size, mode, mtime: st.mtimeMs });
      else if (st.isSymbolicLink()) out.push({ type: 'other', entry: { path: r, type: 'symlink', mode: 0o777, mtime: st.mtimeMs, target: await readlink(abs) } });
      else throw new Error(`${abs}: not a file, directory or symbolic link (devices, sockets and FIFOs are not part of an image)`);
    }
  };
  await visit('');
  // Sorting by full path (not per directory) is the manifest's order: "a/b" < "a.b" differs from the walk's.
  const key = (w: Walked) => (w.type === 'file' ? w.rel : w.entry.path);
  out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  return out;
}

/**
 * The meta-data layer's hint and recorded prefetch order for a file, when
 * `gvfs meta generate` left current meta-data for it in DIR/.gvfs-meta:
 * the block order becomes an order of extents (first block read → its extent first),
 * and the block hashes are stored as one chunk (`put` returns its hash) the
 * manifest names, so a store-backed server can serve the file's meta-data.
 */
async function metaHints(dir: string, abs: string, size: number, extents: Extent[], put: (data: Buffer) => Promise<string>): Promise<{ hint?: Hint; order?: number[]; blocks?: BlockHashes }> {
  const st = await lstat(abs, { bigint: true });
  let buf;
  try {
    buf = await readFile(path.join(dir, META_DIR, metaFileName(st.ino)));
  } catch {
    return {};
  }
  let m;
  try {
    m = decodeMeta(buf);
  } catch {
    return {};
  }
  const ver = { fileid: st.ino, size, mtime: { sec: Number(st.mtimeNs / 1_000_000_000n), nsec: Number(st.mtimeNs % 1_000_000_000n) }, ctime: { sec: Number(st.ctimeNs / 1_000_000_000n), nsec: Number(st.ctimeNs % 1_000_000_000n) } };
  if (!sameVersion(m, ver)) return {};
  const order: number[] = [];
  const taken = new Set<number>();
  for (const b of m.order) {
    const off = b * m.blockSize;
    // Binary search for the extent holding `off`.
    let lo = 0;
    let hi = extents.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (extents[mid][0] <= off) lo = mid;
      else hi = mid - 1;
    }
    if (extents.length && !taken.has(lo) && extents[lo][2] !== null) {
      taken.add(lo);
      order.push(lo);
    }
  }
  const blocks = size > 0 && m.hashes.length <= MAX_CHUNK ? { size: m.blockSize, hashes: await put(m.hashes) } : undefined;
  return { hint: m.hint, ...(order.length ? { order } : {}), ...(blocks ? { blocks } : {}) };
}
