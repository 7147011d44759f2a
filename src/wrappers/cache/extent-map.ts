/**
 * Where the newest unflushed bytes of one file live in the write-back
 * journal: sorted, non-overlapping extents [start, end), each pointing at the
 * journal record (segment, position of `start`'s byte) that wrote it last.
 * A read overlays these on the file's server data (read-your-writes); a
 * finished flush drops the extents of the records it delivered.
 */
export interface Extent {
  start: number;
  end: number;
  /** Sequence number of the journal record the bytes come from. */
  seq: number;
  seg: number;
  /** Journal file position of the byte at `start`. */
  pos: number;
}

export class ExtentMap {
  private xs: Extent[] = [];
  private covered = 0;

  /** Bytes covered (the file's dirty bytes). */
  get bytes(): number {
    return this.covered;
  }
  get size(): number {
    return this.xs.length;
  }
  get maxEnd(): number {
    return this.xs.length ? this.xs[this.xs.length - 1].end : 0;
  }

  /** First index whose extent ends after `off`. */
  private find(off: number): number {
    let lo = 0;
    let hi = this.xs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.xs[mid].end <= off) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Newer data for [e.start, e.end): replaces whatever it overlaps. */
  insert(e: Extent): void {
    if (e.end <= e.start) return;
    const i = this.find(e.start);
    let j = i;
    const repl: Extent[] = [];
    while (j < this.xs.length && this.xs[j].start < e.end) {
      const x = this.xs[j];
      this.covered -= x.end - x.start;
      if (x.start < e.start) repl.push({ ...x, end: e.start });
      if (x.end > e.end) repl.push({ ...x, start: e.end, pos: x.pos + (e.end - x.start) });
      j++;
    }
    // Left remainder, the new extent, right remainder, in order.
    const left = repl.filter((x) => x.start < e.start);
    const right = repl.filter((x) => x.start >= e.end);
    const ins = [...left, { ...e }, ...right];
    for (const x of ins) this.covered += x.end - x.start;
    this.xs.splice(i, j - i, ...ins);
  }

  /** The pieces of extents overlapping [start, end), clipped to it. */
  query(start: number, end: number): Extent[] {
    const out: Extent[] = [];
    for (let i = this.find(start); i < this.xs.length && this.xs[i].start < end; i++) {
      const x = this.xs[i];
      const s = Math.max(x.start, start);
      const t = Math.min(x.end, end);
      out.push({ ...x, start: s, end: t, pos: x.pos + (s - x.start) });
    }
    return out;
  }

  /** Forget the bytes of records with seq <= upTo (they are on the server now). */
  dropUpTo(upTo: number): void {
    const keep: Extent[] = [];
    let covered = 0;
    for (const x of this.xs) {
      if (x.seq > upTo) {
        keep.push(x);
        covered += x.end - x.start;
      }
    }
    this.xs = keep;
    this.covered = covered;
  }

  all(): readonly Extent[] {
    return this.xs;
  }
}
