/**
 * Names looked up recently: (directory handle, name) → handle, trusted for
 * `ttlMs` (the session's directory-cache timeout). Only positive entries: a
 * name created elsewhere shows at once; one removed elsewhere can be served
 * for up to ttlMs (then the server says STALE), as with any NFS client's
 * name cache. Our own namespace operations drop the names they change.
 */
export class NameCache {
  private readonly m = new Map<string, { fh: Buffer; at: number; gen: number }>();
  /** Per directory: bumped when the directory changed, which retires its names. */
  private readonly gens = new Map<string, number>();
  hits = 0;
  misses = 0;

  constructor(
    private readonly ttlMs: number,
    private readonly max = 100_000,
  ) {}

  get(dir: string, name: string): Buffer | undefined {
    const k = `${dir}/${name}`;
    const e = this.m.get(k);
    if (e && Date.now() - e.at < this.ttlMs && e.gen === (this.gens.get(dir) ?? 0)) {
      this.hits++;
      return e.fh;
    }
    if (e) this.m.delete(k);
    this.misses++;
    return undefined;
  }

  set(dir: string, name: string, fh: Buffer): void {
    if (this.ttlMs <= 0 || name === '.' || name === '..') return;
    const k = `${dir}/${name}`;
    this.m.delete(k);
    this.m.set(k, { fh, at: Date.now(), gen: this.gens.get(dir) ?? 0 });
    if (this.m.size > this.max) for (const old of this.m.keys()) {
      this.m.delete(old);
      if (this.m.size <= this.max * 0.9) break;
    }
  }

  drop(dir: string, name: string): void {
    this.m.delete(`${dir}/${name}`);
  }

  /** The directory changed (its mtime moved): forget every name cached in it. */
  bump(dir: string): void {
    this.gens.set(dir, (this.gens.get(dir) ?? 0) + 1);
    if (this.gens.size > this.max) this.gens.clear();
  }
}

