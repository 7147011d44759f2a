/**
 * Sequential read-ahead: a per-file detector that says how many blocks
 * beyond the current read to fetch, and a limiter that bounds the block
 * fetches on the wire (demand misses jump the queue of read-ahead).
 *
 * A read is sequential when it starts near where the reads so far ended
 * (within a few read lengths: a client that pipelines its READs delivers
 * them slightly out of order). The window starts at `minBlocks` and doubles
 * with every sequential read up to `maxBlocks`, like the kernel's
 * read-ahead; a random read resets it. The fetches run concurrently, so a
 * cold sequential read keeps up to the window's bytes on the link at once
 * (RemoteNfs pipelines them over its connections).
 */
export class SequentialDetector {
  private end = -1;
  private run = 0;
  /** Next block index read-ahead has not yet issued. */
  next = 0;

  constructor(
    private readonly minBlocks: number,
    private readonly maxBlocks: number,
  ) {}

  /** Blocks to read ahead after a read of [off, end); 0 when the access is not sequential. */
  onRead(off: number, end: number): number {
    const slack = 8 * Math.max(end - off, 4096);
    const sequential = (this.end < 0 && off === 0) || (this.end >= 0 && off >= this.end - slack && off <= this.end + slack);
    if (sequential) {
      this.run++;
      this.end = Math.max(this.end, end);
    } else {
      this.run = 0;
      this.end = end;
      this.next = 0;
      return 0;
    }
    return Math.min(this.maxBlocks, this.minBlocks * 2 ** Math.min(this.run - 1, 20));
  }
}

/** At most `slots` fetches at once; waiting demand fetches go before waiting read-ahead. */
export class FetchLimiter {
  private active = 0;
  private readonly demand: Array<() => void> = [];
  private readonly ahead: Array<() => void> = [];

  constructor(private readonly slots: number) {}

  get waitingAhead(): number {
    return this.ahead.length;
  }
  get inFlight(): number {
    return this.active;
  }

  async run<T>(demand: boolean, fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.slots) await new Promise<void>((r) => (demand ? this.demand : this.ahead).push(r));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.demand.shift() ?? this.ahead.shift();
      if (next) next();
      else this.active--;
    }
  }
}
