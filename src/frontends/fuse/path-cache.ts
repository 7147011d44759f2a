import type { Fattr3, WccData } from '../../nfs3/types.js';

/** A name resolved to a handle: `key` is the handle as a Map key. */
export interface Dentry {
  fh: Buffer;
  key: string;
}

export const keyOf = (fh: Buffer): string => fh.toString('base64');

export interface PathCacheOptions {
  /** How long a path → handle binding is trusted (0: never; every use looks it up again). */
  entryTtlMs: number;
  /** How long attributes are trusted (0: never; every use asks the backend). */
  attrTtlMs: number;
  /** Bound on each of the two maps (least recently used go first). */
  maxEntries: number;
  now?: () => number;
}

interface Stamped<T> {
  v: T;
  at: number;
}

/** A directory's complete list of names, and the directory's attributes it goes with. */
interface Listing {
  names: Set<string>;
  mtime: string;
}

/** Directory listings above this many names are not kept (negative lookups then ask the server). */
const MAX_LISTING_NAMES = 20_000;

const stampOf = (a: { size: number; mtime: { sec: number; nsec: number }; ctime: { sec: number; nsec: number } }) =>
  `${a.size}:${a.mtime.sec}.${a.mtime.nsec}:${a.ctime.sec}.${a.ctime.nsec}`;

/**
 * The front end's view of the namespace, as the kernel asks for it by path:
 * path → handle (dentries) and handle → attributes, each with its own time to
 * live and a bound on its size. Entries come from lookups, READDIRPLUS pages
 * and the attributes that replies carry; mutations made through the mount
 * drop what they invalidate. Changes made elsewhere (another host) are seen
 * once the TTL has passed.
 *
 * The root is pinned and never expires.
 */
export class PathCache {
  private readonly dentries = new Map<string, Stamped<Dentry>>();
  private readonly attrs = new Map<string, Stamped<Fattr3>>();
  private readonly listings = new Map<string, Stamped<Listing>>();
  private readonly now: () => number;

  constructor(
    readonly root: Dentry,
    private readonly o: PathCacheOptions,
  ) {
    this.now = o.now ?? Date.now;
  }

  get size(): { dentries: number; attrs: number; listings: number } {
    return { dentries: this.dentries.size, attrs: this.attrs.size, listings: this.listings.size };
  }

  // ---- complete directory listings: "this name is not there" without asking

  /**
   * Record every name a directory holds (a finished READDIR, or a directory
   * just made), with the attributes it had then. Valid for the entry TTL, and
   * kept valid by our own changes to the directory as long as their
   * pre-operation attributes (wcc) show nobody else changed it in between.
   */
  setListing(dirKey: string, names: Iterable<string>, dirAttr: Fattr3 | undefined): void {
    if (this.o.entryTtlMs <= 0 || !dirAttr) return;
    const set = new Set<string>();
    for (const n of names) {
      if (n === '.' || n === '..') continue;
      set.add(n);
      if (set.size > MAX_LISTING_NAMES) {
        this.listings.delete(dirKey);
        return;
      }
    }
    this.put(this.listings, dirKey, { names: set, mtime: stampOf(dirAttr) });
  }

  /** True if a fresh complete listing of the directory says `name` is absent. */
  knownAbsent(dirKey: string, name: string): boolean {
    const l = this.fresh(this.listings, dirKey, this.o.entryTtlMs);
    return !!l && !l.names.has(name);
  }

  /**
   * Our own change to a directory: apply it to the listing if the directory
   * was as we knew it just before (wcc before), else forget the listing.
   */
  dirChanged(dirKey: string, wcc: WccData | undefined, add?: string, remove?: string): void {
    const s = this.listings.get(dirKey);
    if (!s) return;
    if (!wcc?.before || !wcc.after || stampOf(wcc.before) !== s.v.mtime || this.now() - s.at >= this.o.entryTtlMs) {
      this.listings.delete(dirKey);
      return;
    }
    if (remove !== undefined) s.v.names.delete(remove);
    if (add !== undefined) s.v.names.add(add);
    s.v.mtime = stampOf(wcc.after);
    s.at = this.now();
  }

  dropListing(dirKey: string): void {
    this.listings.delete(dirKey);
  }

  /** A fresh binding for `path`, or undefined. */
  entry(path: string): Dentry | undefined {
    if (path === '/') return this.root;
    return this.fresh(this.dentries, path, this.o.entryTtlMs);
  }

  setEntry(path: string, fh: Buffer): Dentry {
    const d = { fh, key: keyOf(fh) };
    if (path !== '/' && this.o.entryTtlMs > 0) this.put(this.dentries, path, d);
    return d;
  }

  /** Forget `path` and everything below it (after rename, rmdir, unlink, or a stale handle). */
  dropTree(path: string): void {
    if (path === '/') {
      this.dentries.clear();
      return;
    }
    this.dentries.delete(path);
    const prefix = path + '/';
    for (const k of this.dentries.keys()) if (k.startsWith(prefix)) this.dentries.delete(k);
  }

  /** The binding whatever its age (to find which attributes a mutation invalidates). */
  peekEntry(path: string): Dentry | undefined {
    return path === '/' ? this.root : this.dentries.get(path)?.v;
  }

  /** Fresh attributes of a handle, or undefined. */
  attr(key: string): Fattr3 | undefined {
    return this.fresh(this.attrs, key, this.o.attrTtlMs);
  }

  /** Attributes whatever their age (e.g. the last size seen, for O_APPEND). */
  peekAttr(key: string): Fattr3 | undefined {
    return this.attrs.get(key)?.v;
  }

  setAttr(key: string, a: Fattr3 | undefined): void {
    if (!a) {
      this.attrs.delete(key);
      return;
    }
    // Kept even with a TTL of 0: peekAttr serves O_APPEND's "size known so far".
    this.put(this.attrs, key, a);
    const l = this.listings.get(key);
    if (l && l.v.mtime !== stampOf(a)) this.listings.delete(key);
  }

  /**
   * As setAttr, for replies that may arrive out of order (concurrent writes
   * to one file): older attributes (by ctime, then size) do not replace newer.
   */
  setAttrIfNewer(key: string, a: Fattr3 | undefined): void {
    if (!a) return this.dropAttr(key);
    const cur = this.attrs.get(key)?.v;
    if (cur) {
      const d = cur.ctime.sec - a.ctime.sec || cur.ctime.nsec - a.ctime.nsec;
      if (d > 0 || (d === 0 && cur.size > a.size)) return;
    }
    this.put(this.attrs, key, a);
  }

  dropAttr(key: string): void {
    this.attrs.delete(key);
  }

  clear(): void {
    this.dentries.clear();
    this.attrs.clear();
    this.listings.clear();
  }

  private fresh<T>(m: Map<string, Stamped<T>>, k: string, ttl: number): T | undefined {
    const s = m.get(k);
    if (!s) return undefined;
    if (ttl <= 0 || this.now() - s.at >= ttl) return undefined;
    // Refresh the LRU position (Map keeps insertion order).
    m.delete(k);
    m.set(k, s);
    return s.v;
  }

  private put<T>(m: Map<string, Stamped<T>>, k: string, v: T): void {
    m.delete(k);
    m.set(k, { v, at: this.now() });
    if (m.size > this.o.maxEntries) {
      const oldest = m.keys().next().value;
      if (oldest !== undefined) m.delete(oldest);
    }
  }
}
