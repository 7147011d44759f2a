import type { LocalStat } from './attrs.js';

/**
 * Short-lived attribute and name cache of the local export (what ganesha's
 * mdcache does): a stat result is reused for `ttlMs`, and (dir, name) → inode
 * for as long, so GETATTR and LOOKUP of objects in use need no system call.
 * Every stat the export makes refreshes it; every change the export makes
 * updates or drops the entries it touches. Changes made to the directory by
 * other local programs show after at most `ttlMs` (0 disables the cache).
 * Bounded: the oldest entries go first.
 */
export class AttrCache {
  private readonly attrs = new Map<bigint, { st: LocalStat; at: number }>();
  private readonly names = new Map<string, { ino: bigint; at: number }>();

  constructor(
    readonly ttlMs: number,
    private readonly max = 65536,
  ) {}

  get(ino: bigint): LocalStat | undefined {
    if (this.ttlMs <= 0) return undefined;
    const e = this.attrs.get(ino);
    if (!e) return undefined;
    if (performance.now() - e.at > this.ttlMs) {
      this.attrs.delete(ino);
      return undefined;
    }
    return e.st;
  }

  put(st: LocalStat): void {
    if (this.ttlMs <= 0) return;
    this.attrs.delete(st.ino);
    this.attrs.set(st.ino, { st, at: performance.now() });
    if (this.attrs.size > this.max) this.attrs.delete(this.attrs.keys().next().value!);
  }

  drop(ino: bigint): void {
    this.attrs.delete(ino);
  }

  /** Forget everything (what changed on disk is no longer known). */
  clear(): void {
    this.attrs.clear();
    this.names.clear();
  }

  child(dir: bigint, name: string): bigint | undefined {
    if (this.ttlMs <= 0) return undefined;
    const k = `${dir}/${name}`;
    const e = this.names.get(k);
    if (!e) return undefined;
    if (performance.now() - e.at > this.ttlMs) {
      this.names.delete(k);
      return undefined;
    }
    return e.ino;
  }

  setChild(dir: bigint, name: string, ino: bigint): void {
    if (this.ttlMs <= 0) return;
    const k = `${dir}/${name}`;
    this.names.delete(k);
    this.names.set(k, { ino, at: performance.now() });
    if (this.names.size > this.max) this.names.delete(this.names.keys().next().value!);
  }

  dropChild(dir: bigint, name: string): void {
    this.names.delete(`${dir}/${name}`);
  }
}
