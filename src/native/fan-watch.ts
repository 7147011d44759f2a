import { lib, type FanBatch } from './native.js';

/** A file the watcher names: inode number and birth time (ns), as the local export's handles hold them. */
export interface FileId {
  ino: bigint;
  gen: bigint;
}

/** One change on disk: the directory it happened in and, if it still exists, the entry it named. */
export interface DiskChange {
  dir: FileId;
  entry?: FileId;
  /** The name the event was about ("" for the directory itself); the entry, if any, is what it names now. */
  name: string;
  /** The directory's names changed (create, delete, rename). */
  names: boolean;
}

export interface FanWatchEvents {
  changes(list: DiskChange[]): void;
  /** Events were lost (kernel queue overflow, or JS too far behind): what changed is unknown. */
  overflow(): void;
  /** The watcher's thread ended without close() (a read error; `overflow` came first): nothing is watched any more. */
  died?(): void;
}

/**
 * Changes made beneath `root` by OTHER processes (this process's own are
 * skipped), from fanotify on the root's whole file system
 * (native/src/fanwatch.c: its own thread, events delivered in batches).
 * Throws EPERM without CAP_SYS_ADMIN. Not seen: other file systems mounted
 * beneath the root, writes through shared mappings (no event), and
 * anything while the queue overflowed (reported as `overflow`).
 */
export class FanWatch {
  private readonly w: object;
  private closing?: Promise<void>;
  private closed!: () => void;
  private readonly done: Promise<void>;
  /** Events skipped as this process's own, and as outside the root (cumulative, from the thread). */
  readonly c = { own: 0, outside: 0, batches: 0, changes: 0, overflows: 0 };

  constructor(root: string, on: FanWatchEvents, maxPending = 65536) {
    this.done = new Promise<void>((r) => (this.closed = r));
    this.w = lib().fanWatch(root, (b: FanBatch) => this.batch(b, on), maxPending);
  }

  private batch(b: FanBatch, on: FanWatchEvents): void {
    this.c.batches++;
    this.c.own = b.own;
    this.c.outside = b.outside;
    if (b.overflow) {
      this.c.overflows++;
      on.overflow();
    }
    if (b.ev.length) {
      const list: DiskChange[] = [];
      for (let i = 0; i + 5 <= b.ev.length; i += 5) {
        const entry = b.ev[i + 2] !== 0n ? { ino: BigInt.asUintN(64, b.ev[i + 2]), gen: b.ev[i + 3] } : undefined;
        list.push({ dir: { ino: BigInt.asUintN(64, b.ev[i]), gen: b.ev[i + 1] }, entry, name: b.names[i / 5] ?? '', names: (b.ev[i + 4] & 1n) !== 0n });
      }
      this.c.changes += list.length;
      on.changes(list);
    }
    if (b.closed) {
      if (!this.closing) on.died?.();
      this.closed();
    }
  }

  /** Tests: stop (true) or resume reading the kernel's queue. */
  pause(paused: boolean): void {
    lib().fanWatchPause(this.w, paused);
  }

  /** Stop the thread; resolves once its last batch has been delivered. */
  close(): Promise<void> {
    if (!this.closing) {
      lib().fanWatchStop(this.w);
      this.closing = this.done;
    }
    return this.closing;
  }
}
