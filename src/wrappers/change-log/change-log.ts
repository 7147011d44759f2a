import { randomBytes } from 'node:crypto';
import { BOOT_LEN } from '../../ext/changes-codec.js';

/** Entries one export's log keeps (a client further behind is told to drop everything). */
export const DEFAULT_LOG_ENTRIES = 50_000;

/**
 * One export's bounded log of changed files (the `poll` consistency model):
 * every change gets the next sequence number; a file changed again moves to
 * the end (each file is listed once). The log lives in memory: `boot` names
 * this incarnation, so a client that polled a previous one is told to drop
 * everything (it cannot know what changed while the server was down).
 *
 * Handles here are the export's own (below the proxy handles, the same for
 * every session); the proxy server wraps them for the asking session.
 */
export class ChangeLog {
  readonly boot = randomBytes(BOOT_LEN);
  /** Number of the newest change (0: none yet). */
  private last = 0n;
  /** Lowest `since` still answerable exactly: every change after it is in `byKey`. */
  private floor = 0n;
  /** key (hex handle) → its newest change (Map order: oldest change first). */
  private readonly byKey = new Map<string, { seq: bigint; fh: Buffer }>();
  /** Every change in seq order; an entry is live while byKey still names its seq (compacted now and then). */
  private order: Array<{ seq: bigint; key: string }> = [];
  changes = 0;
  /** Times lost() was called. */
  losses = 0;

  constructor(private readonly max = DEFAULT_LOG_ENTRIES) {}

  get seq(): bigint {
    return this.last;
  }

  /** The file behind `fh` changed (callers record once the change is visible to others). */
  record(fh: Buffer): void {
    const key = fh.toString('hex');
    const seq = ++this.last;
    this.byKey.delete(key);
    this.byKey.set(key, { seq, fh: Buffer.from(fh) });
    this.order.push({ seq, key });
    this.changes++;
    if (this.byKey.size > this.max) {
      const [k, oldest] = this.byKey.entries().next().value as [string, { seq: bigint }];
      this.byKey.delete(k);
      // A client asking from before the dropped entry could miss that file: it is told to drop everything.
      this.floor = oldest.seq;
    }
    if (this.order.length > 2 * this.max + 1024) this.order = this.order.filter((e) => this.byKey.get(e.key)?.seq === e.seq);
  }

  /**
   * Changes were lost (the disk watcher's queue overflowed): what changed is
   * unknown, so every client asking from before now is told to drop everything.
   */
  lost(): void {
    this.floor = ++this.last;
    this.losses++;
  }

  /**
   * Files changed after `since`, at most `limit` of them; `undefined` when
   * that cannot be told exactly (since is older than what the log keeps,
   * newer than any number given out, or more than `limit` changed).
   * Walks only the changes after `since`.
   */
  since(since: bigint, limit: number): { seq: bigint; handles: Buffer[] } | undefined {
    if (since < this.floor || since > this.last) return undefined;
    const handles: Buffer[] = [];
    for (let i = this.order.length - 1; i >= 0 && this.order[i].seq > since; i--) {
      const e = this.byKey.get(this.order[i].key);
      if (e?.seq !== this.order[i].seq) continue; // changed again later: listed by that entry
      if (handles.length === limit) return undefined;
      handles.push(e.fh);
    }
    return { seq: this.last, handles };
  }
}
