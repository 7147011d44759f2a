import { isStoreError, type ObjectStore } from '../store/store.js';
import { CHUNKS, GC_LOCK, IMAGES, imageKey, PENDING } from './layout.js';
import { chunksOf, type Manifest } from './manifest.js';
import { readUnverified, verifySigned, type VerifiedManifest } from './signature.js';
import { DEFAULT_GC_LOCK_STALE_MS } from './push.js';

/** Image management: ls, show, rm, gc (the `gvfs image` commands). */

export interface ImageListing {
  name: string;
  size: number;
  mtime: Date;
}

export async function listImages(store: ObjectStore): Promise<ImageListing[]> {
  const out: ImageListing[] = [];
  for await (const o of store.list(IMAGES)) out.push({ name: o.key.slice(IMAGES.length), size: o.size, mtime: o.mtime });
  return out;
}

/** The verified manifest of one image (refused if unsigned, untrusted or altered). */
export async function loadImage(store: ObjectStore, name: string, trusted: Buffer[]): Promise<VerifiedManifest> {
  return verifySigned(await store.get(imageKey(name)), trusted, name);
}

export async function removeImage(store: ObjectStore, name: string): Promise<void> {
  await store.head(imageKey(name)); // NOT_FOUND for a name that is not there
  await store.delete(imageKey(name));
}

export interface GcOptions {
  /** Chunks stored more recently than this are kept even if unused (ms). Default 1 h. */
  graceMs?: number;
  /** A push lease older than this is from a dead push and ignored (ms). Default 24 h. */
  leaseMs?: number;
  /** Report what would be deleted, delete nothing. */
  dryRun?: boolean;
  /** Tests: called after the lease check, before deleting. */
  beforeDelete?: () => Promise<void>;
}

export interface GcResult {
  images: number;
  chunks: number;
  live: number;
  deleted: number;
  deletedBytes: number;
  /** Unused chunks kept because they are younger than the grace period. */
  young: number;
  /** Why nothing was deleted, if so. */
  refused?: string;
}

export const DEFAULT_GRACE_MS = 3600_000;
export const DEFAULT_LEASE_MS = 24 * 3600_000;

/**
 * Delete chunks no manifest names. Safe against a concurrent push (push.ts
 * explains the handshake): gc takes `locks/gc` (ifAbsent), then lists push
 * leases; while any live lease exists it deletes nothing. Manifests are
 * read without trust (a manifest we cannot verify still keeps its chunks);
 * one that cannot be parsed at all stops the gc, since what it names is
 * unknown. A grace period keeps recently stored chunks as a second fence
 * (a push from an older client that writes no lease).
 */
export async function gcStore(store: ObjectStore, o: GcOptions = {}): Promise<GcResult> {
  const grace = o.graceMs ?? DEFAULT_GRACE_MS;
  const leaseMs = o.leaseMs ?? DEFAULT_LEASE_MS;
  try {
    await store.put(GC_LOCK, Buffer.from(JSON.stringify({ pid: process.pid, started: new Date().toISOString() })), { ifAbsent: true });
  } catch (e) {
    if (!isStoreError(e, 'EXISTS')) throw e;
    const info = await store.head(GC_LOCK);
    if (Date.now() - info.mtime.getTime() < DEFAULT_GC_LOCK_STALE_MS) throw new Error(`another gc holds ${GC_LOCK} in ${store.url} since ${info.mtime.toISOString()}`);
    await store.put(GC_LOCK, Buffer.from(JSON.stringify({ pid: process.pid, started: new Date().toISOString(), tookOverStale: true })));
  }
  try {
    const res: GcResult = { images: 0, chunks: 0, live: 0, deleted: 0, deletedBytes: 0, young: 0 };
    const now = Date.now();
    for await (const l of store.list(PENDING)) {
      if (now - l.mtime.getTime() < leaseMs) {
        res.refused = `a push is in progress (${l.key} since ${l.mtime.toISOString()}); nothing deleted`;
        return res;
      }
    }
    const live = new Set<string>();
    for (const img of await listImages(store)) {
      let m: Manifest;
      try {
        m = readUnverified(await store.get(imageKey(img.name))).manifest;
      } catch (e) {
        if (isStoreError(e, 'NOT_FOUND')) continue; // removed meanwhile
        throw new Error(`gc stopped: image ${img.name} cannot be read (${(e as Error).message}); nothing deleted`);
      }
      res.images++;
      for (const h of chunksOf(m)) live.add(h);
    }
    res.live = live.size;
    const doomed: { key: string; size: number }[] = [];
    for await (const c of store.list(CHUNKS)) {
      res.chunks++;
      if (live.has(c.key.slice(CHUNKS.length))) continue;
      if (now - c.mtime.getTime() < grace) res.young++;
      else doomed.push(c);
    }
    await o.beforeDelete?.();
    if (!o.dryRun) for (const d of doomed) await store.delete(d.key);
    res.deleted = doomed.length;
    res.deletedBytes = doomed.reduce((s, d) => s + d.size, 0);
    return res;
  } finally {
    await store.delete(GC_LOCK).catch(() => {});
  }
}
