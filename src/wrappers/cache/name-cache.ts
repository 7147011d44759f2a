/**
 * Names looked up recently: (directory handle, name) → handle, trusted for
 * `ttlMs()` (the session's directory-cache timeout; Infinity while the
 * `poll` model is in sync). Only positive entries: a name created elsewhere
 * shows at once; one removed elsewhere can be served until the timeout (or
 * the poll that lists its directory; then the server says STALE), as with
 * any NFS client's name cache. Our own namespace operations drop the names
 * they change.
 *
 * Each directory has a generation, bumped when it changed; an entry holds
 * the generation read before its LOOKUP went out (`stamp`), so a reply that
 * crossed a change of its directory is never trusted.
 *
 * `trusted(dir, sent)` (the callback model): an entry is also good, however
 * old, while it says so: a LOOKUP sent (`sent`, the caller's own clock)
 * after the cache took a delegation of the directory, which any other
 * session's change of the directory recalls first (the recall bumps it).
 */
export class NameCache {
  private readonly m = new Map<string, { fh: Buffer; at: number; gen: number; sent?: number }>();
  /** Per directory: bumped when the directory changed, which retires its names. */
  private readonly gens = new Map<string, number>();
  /** Added to every directory's generation: bumped to retire every name at once. */
  private base = 0;
  hits = 0;
  misses = 0;

  constructor(
    private readonly ttlMs: () => number,
    private readonly max = 100_000,
    private readonly trusted?: (dir: string, sent: number) => boolean,
  ) {}

  /** The directory's generation now: pass it to `set` for a LOOKUP sent after this. */
  stamp(dir: string): number {
    return this.base + (this.gens.get(dir) ?? 0);
  }

  get(dir: string, name: string): Buffer | undefined {
    const k = `${dir}/${name}`;
    const e = this.m.get(k);
    if (e && this.trustLeft(dir, name) > 0) {
      this.hits++;
      return e.fh;
    }
    if (e) this.m.delete(k);
    this.misses++;
    return undefined;
  }

  /**
   * How much longer (ms) get() gives `name` without a LOOKUP: Infinity while
   * `trusted` vouches for it or the ttl is (poll in sync), 0 when not held.
   */
  trustLeft(dir: string, name: string): number {
    const e = this.m.get(`${dir}/${name}`);
    if (!e || e.gen !== this.stamp(dir)) return 0;
    if (e.sent !== undefined && this.trusted?.(dir, e.sent)) return Infinity;
    return Math.max(0, this.ttlMs() - (Date.now() - e.at));
  }

  /**
   * `gen`: the directory's stamp() from before the call that found the name
   * (default: now); `sent`: the `trusted` clock when that call went out.
   */
  set(dir: string, name: string, fh: Buffer, gen = this.stamp(dir), sent?: number): void {
    if ((this.ttlMs() <= 0 && sent === undefined) || name === '.' || name === '..') return;
    const k = `${dir}/${name}`;
    this.m.delete(k);
    this.m.set(k, { fh, at: Date.now(), gen, sent });
    if (this.m.size > this.max) for (const old of this.m.keys()) {
      this.m.delete(old);
      if (this.m.size <= this.max * 0.9) break;
    }
  }

  drop(dir: string, name: string): void {
    this.m.delete(`${dir}/${name}`);
  }

  /** The directory changed (its mtime moved, or a poll listed it): forget every name cached in it. */
  bump(dir: string): void {
    this.gens.set(dir, (this.gens.get(dir) ?? 0) + 1);
    if (this.gens.size > this.max) this.clear();
  }

  /** Forget every name (generations only grow, so a LOOKUP in flight across this is not trusted either). */
  clear(): void {
    let top = 0;
    for (const g of this.gens.values()) top = Math.max(top, g);
    this.base += top + 1;
    this.gens.clear();
    this.m.clear();
  }
}
