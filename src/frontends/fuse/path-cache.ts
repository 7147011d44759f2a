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
  /** Local change sequence: bumped by every change through the mount; per file, the last one. */
  private seq = 0;
  private readonly lastChange = new Map<string, number>();
  /** Changes of a file in flight. */
  private readonly active = new Map<string, number>();
  /** Files whose cached attributes come from our own changes (not a fetch since). */
  private readonly local = new Set<string>();

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

  /**
   * Attributes from the reply to one of our own changes of the file
   * (SETATTR, CREATE, LINK, a directory's wcc): they are the file as that
   * change left it. Fetches in flight are void for it from now on.
   */
  setAttr(key: string, a: Fattr3 | undefined): void {
    this.changed(key);
    if (!a) {
      this.attrs.delete(key);
      return;
    }
    // Kept even with a TTL of 0: peekAttr serves O_APPEND's "size known so far".
    this.put(this.attrs, key, a);
    this.local.add(key);
    const l = this.listings.get(key);
    if (l && l.v.mtime !== stampOf(a)) this.listings.delete(key);
  }

  /**
   * The reply to one of our WRITEs. Writes of one file run concurrently and
   * their replies come in any order, but a WRITE never shrinks a file: the
   * size is the largest any of them reported since our last exact change
   * (setAttr). Times are the reply's as it comes: no clock orders
   * attributes (the server's and ours differ, and in granularity too).
   */
  wrote(key: string, a: Fattr3 | undefined): void {
    if (!a) return this.dropAttr(key);
    const cur = this.attrs.get(key)?.v;
    const size = cur && this.local.has(key) ? Math.max(cur.size, a.size) : a.size;
    this.changed(key);
    this.put(this.attrs, key, size === a.size ? a : { ...a, size, used: Math.max(a.used, size) });
    this.local.add(key);
  }

  /**
   * A change of the file through the mount starts / ends: fetches that
   * overlap it may show the file before it, so they are not kept.
   */
  begin(key: string): void {
    this.active.set(key, (this.active.get(key) ?? 0) + 1);
    this.changed(key);
  }
  end(key: string): void {
    const n = (this.active.get(key) ?? 1) - 1;
    if (n > 0) this.active.set(key, n);
    else this.active.delete(key);
    this.changed(key);
  }

  /** Taken before a fetch (GETATTR, LOOKUP, READ, READDIRPLUS, ACCESS) goes out; see `fetched`. */
  ticket(): number {
    return this.seq;
  }

  /**
   * Attributes a fetch brought back. Kept only if no change of that file
   * through the mount started, ran or ended since the fetch's `ticket`: the
   * server may have answered before it saw the change, and our own change is
   * the authority for what it changed. Returns what the file is as far as we
   * know: the fetched attributes, or those our change left.
   */
  fetched(key: string, a: Fattr3 | undefined, ticket: number): Fattr3 | undefined {
    if (!a) return this.attrs.get(key)?.v;
    if (this.active.has(key) || (this.lastChange.get(key) ?? 0) > ticket) return this.attrs.get(key)?.v ?? a;
    this.put(this.attrs, key, a);
    this.local.delete(key);
    const l = this.listings.get(key);
    if (l && l.v.mtime !== stampOf(a)) this.listings.delete(key);
    return a;
  }

  private changed(key: string): void {
    this.lastChange.delete(key);
    this.lastChange.set(key, ++this.seq);
    // Forgetting the oldest marks is safe once no fetch that old can still be in flight; 4x the cache bound is plenty.
    if (this.lastChange.size > 4 * this.o.maxEntries) {
      const oldest = this.lastChange.keys().next().value;
      if (oldest !== undefined) this.lastChange.delete(oldest);
    }
  }

  dropAttr(key: string): void {
    this.changed(key);
    this.attrs.delete(key);
    this.local.delete(key);
  }

  clear(): void {
    this.dentries.clear();
    for (const k of this.attrs.keys()) this.changed(k);
    this.attrs.clear();
    this.local.clear();
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
      if (oldest !== undefined) {
        m.delete(oldest);
        if (m === (this.attrs as Map<string, unknown>)) this.local.delete(oldest);
      }
    }
  }
}
