import { randomBytes } from 'node:crypto';
import { FsError } from '../../backend/errors.js';
import { logger } from '../../util/log.js';
import type { DelegationSnapshot, DelegationState } from './delegation-state.js';

const log = logger('delegation');

/** 'reclaim': a write delegation for data written under one the client lost (refused when fenced; lifts no fence). */
export type DelegationMode = 'read' | 'write' | 'reclaim';

/** Sends CB_RECALL of `fh` (the holder's own handle) to a session; resolves when it answered. */
export type Recaller = (session: string, fh: Buffer) => Promise<unknown>;

interface Holder {
  session: string;
  /** Whose lease covers it: the client id (hex), or `s:SESSION` for a client that gave none. */
  owner: string;
  client?: string;
  /** The holder's handle for the file (handles are per session): what a recall names. */
  fh: Buffer;
  mode: 'read' | 'write';
  /** The grant's place in the table's `seq`: a change under way since an earlier place may not be in what it was given. */
  grantSeq: number;
  /** The recall in progress (one per holder), settled once the holder answered or was revoked. */
  recalling?: Promise<void>;
}

export interface DelegationOptions {
  recall: Recaller;
  /** A holder's lease: renewed by RENEW or DELEGATE; one unrenewed this long (or not answering a recall this long) is revoked and fenced (ms). */
  leaseMs: number;
  /** Longest a conflicting call waits (recalls, grace) before NFS3ERR_JUKEBOX (ms; default: the lease + 1 s, past a revocation). */
  waitMs?: number;
  /** Where fences and the holding clients survive a restart (absent: in memory only). */
  state?: DelegationState;
}

/**
 * The proxy server's delegations (callback consistency model, README
 * "Consistency"): per file (keyed by export and the export's own handle, the
 * same whichever session names it), any number of read holders or one write
 * holder. A call of another session that conflicts (a read or GETATTR
 * against a write delegation; a change against any delegation) recalls the
 * holders and waits, bounded. A holder that does not renew its lease, or
 * does not answer a recall within the lease, is revoked, and *fenced* for
 * that file (by client id, which survives a client restart, and by
 * session): its later changes and reclaims of it are refused, so a
 * partitioned or restarted host's late flush never overwrites newer data.
 *
 * Restarts: the table is in memory, but the clients holding delegations and
 * the fences are kept in `state`. A server that starts with holding clients
 * on record is in grace for one lease: only RECLAIMs are granted, and only
 * calls on files reclaimed by their caller pass; everything else waits. The
 * grace ends early once every recorded client said it reclaimed everything
 * (RENEW reclaimDone); a client that did not is marked late, and its
 * reclaims are refused from then on.
 */
export class DelegationTable {
  /** This run of the server (DELEGATE and RENEW replies carry it). */
  readonly instance = randomBytes(8);
  private readonly files = new Map<string, Holder[]>();
  /** `c:CLIENT|FILE` and `s:SESSION|FILE`: revoked, changes refused. */
  private readonly fenced = new Set<string>();
  /** Clients that missed a grace period: every RECLAIM of theirs is refused. */
  private readonly late = new Set<string>();
  /** Lease end per owner (ms since the epoch). */
  private readonly leases = new Map<string, number>();
  private readonly sessionClient = new Map<string, string>();
  private grace?: { until: number; waiting: Set<string>; over: Promise<void>; end: () => void; timer: NodeJS.Timeout };
  readonly c = { granted: 0, recalls: 0, recalled: 0, revoked: 0, expired: 0, refused: 0, waited: 0, renewals: 0, reclaims: 0, reclaimsRefused: 0, graceWaits: 0, changedElsewhere: 0, lostAll: 0, grantedMidChange: 0 };
  /** Counts grants (Holder.grantSeq; `mark`). */
  private seq = 0;

  constructor(private readonly o: DelegationOptions) {}

  /** Read the state of the previous run: fences, late clients, and a grace period if clients held delegations. */
  async load(): Promise<void> {
    if (!this.o.state) return;
    const s = await this.o.state.load();
    for (const f of s.fences) this.fenced.add(f);
    for (const l of s.late) this.late.add(l);
    const waiting = new Set(s.clients.map((c) => c.client).filter((c) => !this.late.has(c)));
    for (const c of s.clients) this.sessionClient.set(c.session, c.client);
    if (!waiting.size) return;
    let end!: () => void;
    const over = new Promise<void>((r) => (end = r));
    const timer = setTimeout(() => this.endGrace(), this.o.leaseMs);
    timer.unref();
    this.grace = { until: Date.now() + this.o.leaseMs, waiting, over, end, timer };
    log.warn({ clients: waiting.size, ms: this.o.leaseMs }, 'delegations: clients held delegations before this restart; grace period (only reclaims are granted)');
  }

  get inGrace(): boolean {
    return !!this.grace;
  }

  private endGrace(): void {
    const g = this.grace;
    if (!g) return;
    this.grace = undefined;
    clearTimeout(g.timer);
    for (const c of g.waiting) this.late.add(c);
    if (g.waiting.size) log.warn({ clients: [...g.waiting] }, 'delegations: grace period over; clients that did not reclaim are late (their reclaims are refused)');
    void this.save().catch(() => undefined);
    g.end();
  }

  private snapshot(): DelegationSnapshot {
    const clients = new Map<string, string>();
    for (const hs of this.files.values()) for (const h of hs) if (h.client) clients.set(h.client, h.session);
    // Clients still owed a reclaim stay on record until the grace ends.
    for (const c of this.grace?.waiting ?? []) for (const [s, cl] of this.sessionClient) if (cl === c) clients.set(c, s);
    return { clients: [...clients].map(([client, session]) => ({ client, session })), fences: [...this.fenced], late: [...this.late] };
  }

  private save(): Promise<void> {
    return this.o.state ? this.o.state.save(() => this.snapshot()) : Promise.resolve();
  }

  private holdsAny(client: string): boolean {
    for (const hs of this.files.values()) if (hs.some((h) => h.client === client)) return true;
    return false;
  }

  private isFencedFor(session: string, client: string | undefined, file: string): boolean {
    return this.fenced.has(`s:${session}|${file}`) || (client !== undefined && this.fenced.has(`c:${client}|${file}`));
  }

  private owner(session: string, client?: string): string {
    return client ?? `s:${session}`;
  }

  /** RENEW (and every DELEGATE): the client's leases run one more lease from now. `reclaimDone`: it owes a previous run nothing. */
  renew(session: string, client: string | undefined, reclaimDone = false): { grace: boolean } {
    if (client !== undefined) this.sessionClient.set(session, client);
    this.leases.set(this.owner(session, client), Date.now() + this.o.leaseMs);
    this.c.renewals++;
    if (reclaimDone && client !== undefined && this.grace?.waiting.delete(client) && !this.grace.waiting.size) this.endGrace();
    return { grace: !!this.grace };
  }

  /** Grant `mode` on `file` to `session` (recalling conflicting holders first). READ/WRITE clear the fences on it. */
  async grant(session: string, file: string, fh: Buffer, mode: DelegationMode, client?: string): Promise<void> {
    this.renew(session, client);
    if (mode === 'reclaim') {
      this.c.reclaims++;
      if (this.isFencedFor(session, client, file) || (client !== undefined && this.late.has(client))) {
        this.c.reclaimsRefused++;
        throw new FsError('ACCES', 'reclaim refused: this client lost the delegation of this file (revoked, or it missed the grace period); its unflushed data would overwrite newer data');
      }
    } else if (this.grace) throw new FsError('JUKEBOX', 'the proxy server restarted and is in its grace period (reclaims only); retry');
    await this.settleConflicts(session, file, mode === 'read' ? 'read' : 'write');
    const fresh = client !== undefined && !this.holdsAny(client);
    const hs = (this.files.get(file) ?? []).filter((h) => h.session !== session);
    hs.push({ session, owner: this.owner(session, client), client, fh: Buffer.from(fh), mode: mode === 'read' ? 'read' : 'write', grantSeq: ++this.seq });
    this.files.set(file, hs);
    let unfenced = false;
    if (mode !== 'reclaim') {
      unfenced = this.fenced.delete(`s:${session}|${file}`);
      if (client !== undefined) unfenced = this.fenced.delete(`c:${client}|${file}`) || unfenced;
    }
    // On disk before the client may trust it: a restart must know it has a client to wait for.
    if (fresh || unfenced) await this.save();
    this.c.granted++;
  }

  /** The holder gives it back (after flushing), unasked. */
  release(session: string, file: string): void {
    const gone = this.files.get(file)?.find((h) => h.session === session);
    if (gone) this.drop(file, gone);
  }

  /** Remove this very holder (not a newer grant of its session taken after a recall it answered). */
  private drop(file: string, gone: Holder): void {
    const hs = this.files.get(file)?.filter((h) => h !== gone) ?? [];
    if (hs.length) this.files.set(file, hs);
    else this.files.delete(file);
    // A client that holds nothing more need not be waited for after a restart.
    if (gone.client && !this.holdsAny(gone.client)) void this.save().catch(() => undefined);
  }

  /** Where grants stand now: a change takes a mark, passes `before` (its recalls), runs, then calls `changed` with it. */
  mark(): number {
    return this.seq;
  }

  /**
   * A change of `session`'s to `file`, marked at `mark` just before its
   * `before`, is made. `before` recalled every conflicting holder, but a
   * grant can come while those recalls are waited for or while the change
   * is still on its way to the disk: the attributes and
   * bytes sent with it may predate the change, and nothing would recall it
   * after. Such holders (another session's, granted after the mark) are
   * recalled now, before the change is answered, as for a change made on
   * the disk: from the answer on, nobody trusts what came before it.
   */
  async changed(session: string | undefined, file: string, mark: number): Promise<void> {
    if (this.seq === mark) return;
    const late = (this.files.get(file) ?? []).filter((h) => h.session !== session && h.grantSeq > mark);
    if (!late.length) return;
    this.c.grantedMidChange += late.length;
    await Promise.all(late.map((h) => this.recallOne(file, h)));
  }

  /**
   * `file` was changed without a call through this server (on the export's
   * disk, seen by the disk watcher): the change is made already, so nobody
   * waits; every holder is recalled (it drops its cache of the file; a write
   * holder flushes first, landing after the disk change, as a later write
   * would). A holder that does not answer within the lease is revoked and
   * fenced as for any recall. Resolves once every holder answered or was
   * revoked (tests; callers need not wait).
   */
  changedElsewhere(file: string): Promise<void> {
    const hs = this.files.get(file);
    if (!hs?.length) return Promise.resolve();
    this.c.changedElsewhere++;
    return Promise.all(hs.map((h) => this.recallOne(file, h))).then(() => undefined);
  }

  /**
   * What changed is unknown (the disk watcher lost events, or stopped): every
   * delegation of files whose key starts with `prefix` (an export's) is
   * recalled, so every holder drops everything it trusts there (a callback
   * client trusts nothing it holds no delegation of).
   */
  recallAll(prefix: string): Promise<void> {
    this.c.lostAll++;
    const all: Promise<void>[] = [];
    for (const [file, hs] of this.files) if (file.startsWith(prefix)) for (const h of hs) all.push(this.recallOne(file, h));
    return Promise.all(all).then(() => undefined);
  }

  holders(file: string): ReadonlyArray<{ session: string; mode: 'read' | 'write' }> {
    return this.files.get(file) ?? [];
  }

  /** Files with at least one holder now. */
  get delegatedFiles(): number {
    return this.files.size;
  }

  /** When the lease covering `session`'s delegations ends (ms since the epoch), if it has one. */
  leaseEnd(session: string): number | undefined {
    return this.leases.get(this.owner(session, this.sessionClient.get(session)));
  }

  isFenced(session: string, file: string): boolean {
    return this.isFencedFor(session, this.sessionClient.get(session), file);
  }

  /**
   * Before a call of `session` that reads or changes `file`: refuse it when
   * the session (or its client) is fenced (changes only); in grace, wait
   * unless the caller holds the file (it reclaimed it); then recall every
   * other session's conflicting delegation and wait until they are
   * returned or revoked (at most waitMs, then NFS3ERR_JUKEBOX: retry).
   */
  async before(session: string | undefined, file: string, kind: 'read' | 'write'): Promise<void> {
    if (session !== undefined && kind === 'write' && this.isFenced(session, file)) {
      this.c.refused++;
      throw new FsError('ACCES', `delegation of this file was revoked from session ${session}: its late changes are refused`);
    }
    if (this.grace && !this.files.get(file)?.some((h) => h.session === session)) {
      this.c.graceWaits++;
      await this.bounded(this.grace.over, 'the proxy server restarted and is in its grace period; retry');
    }
    if (!this.files.has(file)) return;
    await this.settleConflicts(session, file, kind);
  }

  private async bounded(p: Promise<unknown>, why: string): Promise<void> {
    const waitMs = this.o.waitMs ?? this.o.leaseMs + 1000; // default: past the revocation, which then lets the call through
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), waitMs)));
    try {
      if ((await Promise.race([p, late])) === 'late') throw new FsError('JUKEBOX', why);
    } finally {
      clearTimeout(timer);
    }
  }

  private async settleConflicts(session: string | undefined, file: string, kind: 'read' | 'write'): Promise<void> {
    const conflicting = (this.files.get(file) ?? []).filter((h) => h.session !== session && (kind === 'write' || h.mode === 'write'));
    if (!conflicting.length) return;
    this.c.waited++;
    await this.bounded(Promise.all(conflicting.map((h) => this.recallOne(file, h))), 'a delegation is being recalled; retry');
  }

  /**
   * Recall one holder (once, however many calls conflict). Revoked and
   * fenced when its lease has run out (it stopped renewing: partitioned or
   * gone; it has stopped trusting its delegations itself by then), or when
   * it does not answer within a lease of the recall.
   */
  private recallOne(file: string, h: Holder): Promise<void> {
    if (h.recalling) return h.recalling;
    const started = Date.now();
    const deadline = () => Math.min(started + this.o.leaseMs, this.leases.get(h.owner) ?? 0);
    h.recalling = (async () => {
      let r: 'answered' | 'lease';
      if (deadline() <= Date.now()) {
        this.c.expired++;
        r = 'lease';
      } else {
        this.c.recalls++;
        let timer: NodeJS.Timeout | undefined;
        // Re-armed while the holder renews (a live holder flushing a lot), never past a lease from the recall.
        const lease = new Promise<'lease'>((res) => {
          const arm = () => {
            const left = deadline() - Date.now();
            if (left <= 0) res('lease');
            else timer = setTimeout(arm, left);
          };
          arm();
        });
        const answered = this.o.recall(h.session, h.fh).then(
          () => 'answered' as const,
          (e: Error) => {
            // No connection: the holder may come back within its lease (then it reconnects and flushes); wait it out.
            log.warn({ session: h.session, reason: e.message }, 'recall not delivered');
            return lease;
          },
        );
        r = await Promise.race([answered, lease]);
        clearTimeout(timer);
      }
      // This holder only: the session may have taken the file again since it answered (a disk change recalls at any time).
      this.drop(file, h);
      if (r === 'answered') this.c.recalled++;
      else {
        this.c.revoked++;
        this.fenced.add(`s:${h.session}|${file}`);
        if (h.client) this.fenced.add(`c:${h.client}|${file}`);
        log.warn({ session: h.session, leaseMs: this.o.leaseMs }, 'delegation revoked: the holder let its lease run out or did not answer the recall; its later changes to the file are refused');
        // On disk before the conflicting call proceeds: a restart keeps the fence.
        await this.save().catch(() => undefined);
      }
    })();
    return h.recalling;
  }

  close(): void {
    if (this.grace) clearTimeout(this.grace.timer);
  }
}
