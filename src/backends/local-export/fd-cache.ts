import * as N from '../../native/native.js';

/** How long retired descriptors wait to be closed together, and how many close at once. */
export const CLOSE_BATCH_MS = 20;
const CLOSE_BATCH_MAX = 64;

/**
 * Retired descriptors closed in batches, one trip to the native pool for
 * many: a create-heavy load retires a descriptor per new file (the cache
 * keeps each new file's descriptor for the writes that usually follow), and
 * a trip per close cost a thread hand-off each. Nothing uses a descriptor
 * once it is queued here, so closing it a few milliseconds later changes
 * nothing but when its number is reused (and, for a removed file, when its
 * blocks are freed).
 */
class BatchCloser {
  private fds: number[] = [];
  private timer?: NodeJS.Timeout;

  close(fd: number): void {
    this.fds.push(fd);
    if (this.fds.length >= CLOSE_BATCH_MAX) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), CLOSE_BATCH_MS).unref();
  }

  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const fds = this.fds;
    this.fds = [];
    return fds.length ? N.closeMany(fds).then(() => undefined, () => undefined) : Promise.resolve();
  }
}

/**
 * Open file descriptors kept across NFS calls (NFS is stateless: every READ
 * would otherwise open and close the file). Keyed by inode; at most `max`
 * descriptors; an entry is closed only when no call is using it.
 */
/** The last attributes seen through a descriptor (the pre-op attributes of the next write). */
export interface LastStat {
  st?: import('./attrs.js').LocalStat;
  at: number;
  /**
   * READs through this descriptor that go straight to the worker threads
   * before the page cache is tried on the JS thread again, and the last
   * such gap (doubled at each miss): a miss costs the JS thread the
   * readahead it starts (local-export.ts readFd).
   */
  skipCached?: number;
  missGap?: number;
}

interface Entry {
  last: LastStat;
  fd: number;
  writable: boolean;
  refs: number;
  dead: boolean;
}

export class FdCache {
  private readonly map = new Map<bigint, Entry>();
  private readonly closer = new BatchCloser();

  constructor(private readonly max = 256) {}

  /**
   * Use the descriptor for `ino`, opening it with `open` if needed (or if a
   * writable one is wanted and the cached one is read-only). `fn` runs with
   * the descriptor; it is released afterwards.
   */
  async with<T>(ino: bigint, writable: boolean, open: (writable: boolean) => Promise<{ fd: number; writable: boolean }>, fn: (fd: number) => Promise<T>): Promise<T> {
    let e = this.map.get(ino);
    if (e && writable && !e.writable) {
      this.retire(ino, e);
      e = undefined;
    }
    if (!e) {
      const o = await open(writable);
      // Another call may have opened it while we waited.
      const raced = this.map.get(ino);
      if (raced && (raced.writable || !writable)) {
        this.closer.close(o.fd);
        e = raced;
      } else {
        if (raced) this.retire(ino, raced);
        e = { fd: o.fd, writable: o.writable, refs: 0, dead: false, last: { at: 0 } };
        this.map.set(ino, e);
        this.trim();
      }
    } else {
      // LRU: move to the end.
      this.map.delete(ino);
      this.map.set(ino, e);
    }
    e.refs++;
    try {
      return await fn(e.fd);
    } finally {
      e.refs--;
      if (e.dead && e.refs === 0) this.closer.close(e.fd);
    }
  }

  /**
   * Use an already-open descriptor for `ino` without any path resolution;
   * undefined if none is cached (the caller takes the slow path).
   */
  withCached<T>(ino: bigint, writable: boolean, fn: (fd: number, last: LastStat) => Promise<T>): Promise<T> | undefined {
    const e = this.map.get(ino);
    if (!e || (writable && !e.writable)) return undefined;
    e.refs++;
    return fn(e.fd, e.last).finally(() => {
      e.refs--;
      if (e.dead && e.refs === 0) this.closer.close(e.fd);
    });
  }

  /** Keep a descriptor the caller just opened (e.g. of a newly created file); false if one is cached already. */
  adopt(ino: bigint, fd: number, writable: boolean): boolean {
    if (this.map.has(ino)) return false;
    this.map.set(ino, { fd, writable, refs: 0, dead: false, last: { at: 0 } });
    this.trim();
    return true;
  }

  /** The last stat of an inode's descriptor is out of date (its mode changed): the next write fstats afresh. */
  forgetStat(ino: bigint): void {
    const e = this.map.get(ino);
    if (e) e.last.at = 0;
  }

  /** Forget (and close when idle) the descriptor of an inode: removed, replaced or stale. */
  drop(ino: bigint): void {
    const e = this.map.get(ino);
    if (e) this.retire(ino, e);
  }

  private retire(ino: bigint, e: Entry): void {
    if (this.map.get(ino) === e) this.map.delete(ino);
    e.dead = true;
    if (e.refs === 0) this.closer.close(e.fd);
  }

  private trim(): void {
    if (this.map.size <= this.max) return;
    for (const [ino, e] of this.map) {
      if (this.map.size <= this.max) break;
      if (e.refs === 0) this.retire(ino, e);
    }
  }

  async closeAll(): Promise<void> {
    for (const [ino, e] of [...this.map]) this.retire(ino, e);
    await this.closer.flush();
  }

  /** Close what is queued now (tests). */
  flushCloses(): Promise<void> {
    return this.closer.flush();
  }
}
