import { FsError } from '../../backend/errors.js';
import { logger } from '../../util/log.js';

const log = logger('delegation');

export type DelegationMode = 'read' | 'write';

/** Sends CB_RECALL of `fh` (the holder's own handle) to a session; resolves when it answered. */
export type Recaller = (session: string, fh: Buffer) => Promise<unknown>;

interface Holder {
  session: string;
  /** The holder's handle for the file (handles are per session): what a recall names. */
  fh: Buffer;
  mode: DelegationMode;
  /** The recall in progress (one per holder), settled once the holder answered or was revoked. */
  recalling?: Promise<void>;
}

export interface DelegationOptions {
  recall: Recaller;
  /** A holder that does not answer a recall within this time is revoked and fenced (ms). */
  leaseMs: number;
  /** Longest a conflicting call waits for recalls before NFS3ERR_JUKEBOX (ms; default: the lease + 1 s, so it waits for the revocation). */
  waitMs?: number;
}

/**
 * The proxy server's delegations (callback consistency model, README
 * "Consistency"): per file (keyed by export and the export's own handle, the
 * same whichever session names it), any number of read holders or one write
 * holder. A call of another session that conflicts (a read or GETATTR
 * against a write delegation; a change against any delegation) recalls the
 * holders and waits, bounded; a holder that does not answer within the
 * lease is revoked, and its session is *fenced* for that file: its later
 * changes to it are refused until it takes a new delegation, so a
 * partitioned host's late flush never overwrites newer data.
 *
 * In memory: a restarted proxy server starts with no delegations (the grace
 * period of the design is not built).
 */
export class DelegationTable {
  private readonly files = new Map<string, Holder[]>();
  /** `session|file` pairs revoked: their changes are refused. */
  private readonly fenced = new Set<string>();
  readonly c = { granted: 0, recalls: 0, recalled: 0, revoked: 0, refused: 0, waited: 0 };

  constructor(private readonly o: DelegationOptions) {}

  /** Grant `mode` on `file` to `session` (recalling conflicting holders first). Clears the session's fence on it. */
  async grant(session: string, file: string, fh: Buffer, mode: DelegationMode): Promise<void> {
    await this.settleConflicts(session, file, mode === 'write' ? 'write' : 'read');
    const hs = (this.files.get(file) ?? []).filter((h) => h.session !== session);
    hs.push({ session, fh: Buffer.from(fh), mode });
    this.files.set(file, hs);
    this.fenced.delete(`${session}|${file}`);
    this.c.granted++;
  }

  /** The holder gives it back (after flushing), unasked. */
  release(session: string, file: string): void {
    const hs = this.files.get(file)?.filter((h) => h.session !== session) ?? [];
    if (hs.length) this.files.set(file, hs);
    else this.files.delete(file);
  }

  holders(file: string): ReadonlyArray<{ session: string; mode: DelegationMode }> {
    return this.files.get(file) ?? [];
  }

  /** Files with at least one holder now. */
  get delegatedFiles(): number {
    return this.files.size;
  }

  isFenced(session: string, file: string): boolean {
    return this.fenced.has(`${session}|${file}`);
  }

  /**
   * Before a call of `session` that reads or changes `file`: refuse it when
   * the session is fenced (changes only), else recall every other session's
   * conflicting delegation and wait until they are returned or revoked
   * (at most waitMs, then NFS3ERR_JUKEBOX: the client retries).
   */
  async before(session: string | undefined, file: string, kind: 'read' | 'write'): Promise<void> {
    if (session !== undefined && kind === 'write' && this.isFenced(session, file)) {
      this.c.refused++;
      throw new FsError('ACCES', `delegation of this file was revoked from session ${session}: its late changes are refused`);
    }
    if (!this.files.has(file)) return;
    await this.settleConflicts(session, file, kind);
  }

  private async settleConflicts(session: string | undefined, file: string, kind: 'read' | 'write'): Promise<void> {
    const conflicting = (this.files.get(file) ?? []).filter((h) => h.session !== session && (kind === 'write' || h.mode === 'write'));
    if (!conflicting.length) return;
    this.c.waited++;
    const all = Promise.all(conflicting.map((h) => this.recallOne(file, h)));
    const waitMs = this.o.waitMs ?? this.o.leaseMs + 1000; // default: past the revocation, which then lets the call through
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), waitMs)));
    try {
      if ((await Promise.race([all, late])) === 'late') throw new FsError('JUKEBOX', 'a delegation is being recalled; retry');
    } finally {
      clearTimeout(timer);
    }
  }

  /** Recall one holder (once, however many calls conflict); revoke and fence it if it does not answer within the lease. */
  private recallOne(file: string, h: Holder): Promise<void> {
    if (h.recalling) return h.recalling;
    this.c.recalls++;
    h.recalling = (async () => {
      let timer: NodeJS.Timeout | undefined;
      const lease = new Promise<'lease'>((r) => (timer = setTimeout(() => r('lease'), this.o.leaseMs)));
      const answered = this.o.recall(h.session, h.fh).then(
        () => 'answered' as const,
        (e: Error) => {
          // No connection: the holder may come back within the lease (then it reconnects and flushes); wait the lease out.
          log.warn({ session: h.session, reason: e.message }, 'recall not delivered');
          return lease;
        },
      );
      const r = await Promise.race([answered, lease]);
      clearTimeout(timer);
      this.release(h.session, file);
      if (r === 'answered') this.c.recalled++;
      else {
        this.c.revoked++;
        this.fenced.add(`${h.session}|${file}`);
        log.warn({ session: h.session, leaseMs: this.o.leaseMs }, 'delegation revoked: the holder did not answer the recall within the lease; its later changes to the file are refused');
      }
    })();
    return h.recalling;
  }
}
