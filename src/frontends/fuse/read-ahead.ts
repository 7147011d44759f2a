/** One backend read of `count` bytes at `offset`, looping over short replies until EOF. */
export type ReadFn = (offset: number, count: number) => Promise<{ data: Buffer; eof: boolean }>;

interface Chunk {
  p: Promise<{ data: Buffer; eof: boolean }>;
  /** When the reply came (Infinity while in flight: a chunk on its way is never "old"). */
  at: number;
}

export interface ReadAheadOptions {
  /** Backend read size in streaming mode (the kernel asks for 128 KiB at most). */
  chunk: number;
  /** Chunks fetched ahead of the one being read. */
  window: number;
  /** Sequential bytes seen before streaming starts. */
  trigger: number;
  /** Chunks whose reply is older than this are fetched again (data changed elsewhere shows up). */
  maxAgeMs: number;
}

/**
 * Read-ahead for one open file: once reads run sequentially, the backend is
 * read in large aligned chunks (fewer, larger calls: the remote client
 * moves 1 MiB replies at about twice the rate of 128 KiB ones) with a window
 * fetched ahead; the kernel's 128 KiB reads are served from them. Random
 * reads go straight to the backend. Bounded: at most `window + 1` chunks.
 * A write or truncate through the mount clears it, and holds it (hold())
 * while in flight: a chunk fetched meanwhile may carry the old bytes or the
 * old size, and a short chunk served afterwards is taken by the kernel as
 * the end of file.
 */
export class ReadAhead {
  private chunks = new Map<number, Chunk>();
  private seqEnd = -1;
  private seqBytes = 0;
  private eofChunk = Infinity;
  /** Writes and size changes in flight: no chunk is kept or served while any is. */
  private holds = 0;
  /** Bumped by every clear(): a read started before one keeps none of its chunks. */
  private gen = 0;

  constructor(
    private readonly o: ReadAheadOptions,
    private readonly fetch: ReadFn,
  ) {}

  clear(): void {
    this.chunks.clear();
    this.eofChunk = Infinity;
    this.gen++;
  }

  /**
   * A change of the file's bytes or size starts: reads go straight to the
   * backend until the returned release() (call it once the change is
   * answered), which clears again whatever was fetched meanwhile.
   */
  hold(): () => void {
    this.holds++;
    this.clear();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      this.clear();
    };
  }

  get size(): number {
    return this.chunks.size;
  }

  async read(offset: number, len: number): Promise<Buffer> {
    // The kernel's own read-ahead has several reads in flight, slightly out of order: "near" is sequential.
    const tol = (this.o.window + 1) * this.o.chunk;
    const near = this.seqEnd >= 0 && offset >= this.seqEnd - tol && offset <= this.seqEnd + tol;
    if (near) {
      this.seqBytes += len;
      this.seqEnd = Math.max(this.seqEnd, offset + len);
    } else {
      this.seqBytes = offset === 0 ? len : 0;
      this.seqEnd = offset + len;
    }
    if (this.seqBytes < this.o.trigger || this.holds > 0) return (await this.fetch(offset, len)).data;
    const gen = this.gen;
    const C = this.o.chunk;
    const first = Math.floor(offset / C);
    const last = Math.floor((offset + len - 1) / C);
    if (first > this.eofChunk) this.eofChunk = Infinity; // the file grew
    for (const k of this.chunks.keys()) if (k < first - 2 || k > last + this.o.window) this.chunks.delete(k);
    // Fetch ahead, but not past the end of file last seen.
    for (let k = first; k <= Math.max(last, Math.min(last + this.o.window, this.eofChunk)); k++) this.chunkAt(k, gen);
    const parts: Buffer[] = [];
    for (let k = first; k <= last; k++) {
      let r: { data: Buffer; eof: boolean };
      try {
        r = await this.chunkAt(k, gen).p;
      } catch {
        // A failed read-ahead is not the caller's failure: read what it asked for directly.
        if (gen === this.gen) this.chunks.delete(k);
        return (await this.fetch(offset, len)).data;
      }
      const start = Math.max(offset, k * C) - k * C;
      const end = Math.min(offset + len, (k + 1) * C) - k * C;
      parts.push(r.data.subarray(start, Math.min(end, r.data.length)));
      if (r.eof || r.data.length < C) {
        if (gen === this.gen) this.eofChunk = k;
        break;
      }
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /** Chunk k, fetched if missing or old; kept only if nothing changed the file since the read began (`gen`). */
  private chunkAt(k: number, gen: number): Chunk {
    const current = gen === this.gen && this.holds === 0;
    let c = current ? this.chunks.get(k) : undefined;
    // Age counts from the reply: counted from the call, every chunk fetched ahead on a link slower than
    // window/maxAge was "old" when read and fetched again, and again (each refetch queued behind the others).
    if (c && Date.now() - c.at > this.o.maxAgeMs) c = undefined;
    if (!c) {
      const chunk: Chunk = { at: Infinity, p: this.fetch(k * this.o.chunk, this.o.chunk) };
      // Nobody may wait for a chunk fetched ahead: its failure is handled when (if) it is read.
      chunk.p.then(
        (r) => {
          chunk.at = Date.now();
          // The end of file as soon as it is seen, so no chunk past it is asked for meanwhile.
          if ((r.eof || r.data.length < this.o.chunk) && gen === this.gen && k < this.eofChunk) this.eofChunk = k;
        },
        () => undefined,
      );
      if (current) this.chunks.set(k, chunk);
      c = chunk;
    }
    return c;
  }
}
