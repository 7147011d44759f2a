import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { FsError } from '../../backend/errors.js';
import { Nfs3Status } from '../../nfs3/constants.js';
import { codeOfStatus } from '../../nfs3/status.js';
import { RpcError, type Credentials } from '../../rpc/types.js';
import type { Fattr3 } from '../../nfs3/types.js';
import { CLIENT_ID_MAX, DELEGATE, DELEGATE_READ, DelegateMode, DelegateStatus, delegateArgs, delegateReadArgs, delegateReadRes, delegateRes, RENEW, renewArgs, renewRes, type DelegateReadRes, type DelegateRes } from '../../ext/callback-codec.js';
import type { ExtLink } from '../../ext/meta-client.js';
import { logger } from '../../util/log.js';
import { readSmallFile, writeFileAtomic } from './session-dir.js';

const log = logger('cache');

/** A file the server would not delegate (an export it does not watch) is asked about again after this (ms). */
const NOT_DELEGABLE_RETRY_MS = 30_000;

/** The lease assumed before the server named one (ms). */
const FIRST_LEASE_MS = 30_000;

/**
 * How long before the server's lease ends the client stops trusting its
 * delegations: a fifth of the lease, at least 200 ms. Its lease is counted
 * from when the renewing call was *sent* (the server counts from when it
 * arrived, later), so the client's trust always ends first.
 */
export const leaseMargin = (leaseMs: number): number => Math.max(200, Math.floor(leaseMs / 5));

export interface HeldHooks {
  /** These files' cached attributes and names may no longer be trusted. */
  drop(fhs: Buffer[]): void;
  /** The proxy server restarted: deliver the journal (each file's flush reclaims its delegation first). */
  restarted(): Promise<void>;
  /** Unflushed data of some file (renew while there is). */
  dirty(): boolean;
  /** Credentials for calls of the cache's own (renewals, returns): the first mount's. */
  cred(): Credentials | undefined;
}

/**
 * The delegations a cache holds (callback model, README "Consistency"),
 * its client id, its lease and its view of the proxy server's instance.
 *
 * - A delegation is trusted only while the lease is: until the last
 *   successful RENEW/DELEGATE was *sent* plus the lease minus a margin.
 *   One RENEW per third of a lease renews every delegation held; one that
 *   cannot (partitioned) stops trusting them before the server may revoke.
 * - A reply naming another server instance (a restart) drops every
 *   delegation at once; the journal is then delivered under RECLAIMs, and a
 *   RENEW says so (the server's grace period may end).
 * - A recall that crosses a DELEGATE on the wire wins: the grant is not
 *   taken as held (recallSeq).
 */
/** A DELEGATE's outcome: granted (and held now), with the file's attributes when the server sent them after the grant. */
export interface Taken {
  granted: boolean;
  attr?: Fattr3;
  /** DELEGATE_READ: the whole file, of the version `attr` names. */
  data?: Buffer;
}
const NOT_TAKEN: Taken = { granted: false };

export class HeldDelegations {
  /** `since`: the grant's place in `seq` (what a call sent after the grant's reply may be trusted under). */
  private readonly held = new Map<string, { fh: Buffer; mode: 'read' | 'write'; since: number }>();
  /** Counts grants; a call captures it before it is sent (`now()`), so "sent after the grant" is exact, not by the clock. */
  private seq = 0;
  /** Recalls seen per file (a DELEGATE reply that crossed one is not trusted). */
  private readonly recallSeq = new Map<string, number>();
  /** Files the server refused to delegate (NOTSUPP: an export it does not watch) → when to ask again (ms since the epoch). */
  private readonly refused = new Map<string, number>();
  clientId: Buffer = Buffer.alloc(0);
  leaseMs = FIRST_LEASE_MS;
  private trustUntil = 0;
  private instance?: Buffer;
  private timer?: NodeJS.Timeout;
  private owesDone = false;
  private restarting?: Promise<void>;
  readonly c = { taken: 0, returned: 0, renewals: 0, renewFailures: 0, restarts: 0, reclaims: 0, recalls: 0, lapses: 0, notDelegable: 0, takenWithData: 0 };
  /** The server answered DELEGATE_READ with PROC_UNAVAIL (an older proxy server): DELEGATE only from then on. */
  private noDelegateRead = false;

  constructor(
    private readonly link: ExtLink,
    private readonly hooks: HeldHooks,
  ) {}

  /** The client id kept in the session directory (made on first use): fences follow it across restarts. */
  async loadClientId(sessionDir: string): Promise<void> {
    const file = path.join(sessionDir, 'client-id');
    const have = (await readSmallFile(file))?.trim();
    if (have && /^[0-9a-f]{16,64}$/.test(have)) {
      this.clientId = Buffer.from(have, 'hex').subarray(0, CLIENT_ID_MAX);
      return;
    }
    this.clientId = randomBytes(16);
    await writeFileAtomic(file, this.clientId.toString('hex') + '\n');
  }

  get count(): number {
    return this.held.size;
  }

  trusted(): boolean {
    return Date.now() < this.trustUntil;
  }

  /**
   * The lease ran out without a renewal (partitioned?): the server may have
   * revoked any of them since, so all are dropped, and a renewal later does
   * not bring them back; data journalled under them is reclaimed (refused
   * when the server revoked).
   */
  private lapseIfDue(): void {
    if (!this.held.size || this.trusted()) return;
    this.c.lapses++;
    const fhs = this.heldHandles();
    this.held.clear();
    log.warn({ dropped: fhs.length }, 'cache: the delegation lease ran out without a renewal; every delegation is dropped');
    this.hooks.drop(fhs);
  }

  /** Whether a delegation of `key` (at least `mode`) is held and trusted now. */
  holds(key: string, mode: 'read' | 'write' = 'read'): boolean {
    this.lapseIfDue();
    const h = this.held.get(key);
    return !!h && (mode === 'read' || h.mode === 'write') && this.trusted();
  }

  /** For a call about to be sent: compare with `grantedAt` when its answer is used. */
  now(): number {
    return this.seq;
  }

  /**
   * The grant of the delegation of `key` held and trusted now, as a `now()`
   * value: an answer to a call sent at `sent >= grantedAt(key)` left the
   * server after the grant, so any later change by another session recalls
   * it first. undefined: none held.
   */
  grantedAt(key: string): number | undefined {
    return this.holds(key) ? this.held.get(key)!.since : undefined;
  }

  /** The server refused to delegate `key` lately (its export is not watched). */
  notDelegable(key: string): boolean {
    return (this.refused.get(key) ?? 0) > Date.now();
  }

  has(key: string): boolean {
    return this.held.has(key);
  }

  /**
   * Ask for a delegation. 'reclaim': a write delegation for data journalled
   * under one no longer held (refused when this client was fenced). In the
   * server's grace period ordinary requests get JUKEBOX: retried for up to
   * a lease.
   */
  async take(cred: Credentials, fh: Buffer, mode: 'read' | 'write' | 'reclaim', dataMax = 0): Promise<Taken> {
    const key = fh.toString('hex');
    // The server grants none on this file's export (it cannot see every change there): not asked again for a while.
    if (this.notDelegable(key)) return NOT_TAKEN;
    const m = mode === 'read' ? DelegateMode.READ : mode === 'write' ? DelegateMode.WRITE : DelegateMode.RECLAIM;
    if (mode === 'reclaim') this.c.reclaims++;
    const until = Date.now() + this.leaseMs + 2000;
    for (;;) {
      const seq = this.recallSeq.get(key) ?? 0;
      const sent = Date.now();
      const r = await this.ask(cred, fh, m, mode === 'read' ? dataMax : 0);
      if (r.status === DelegateStatus.OK) {
        this.noteReply(r, sent);
        // A recall crossed the grant: it was answered "not held", so it is not (nor are the attributes that came with it).
        if ((this.recallSeq.get(key) ?? 0) !== seq) return NOT_TAKEN;
        this.held.set(key, { fh: Buffer.from(fh), mode: mode === 'read' ? 'read' : 'write', since: ++this.seq });
        this.c.taken++;
        if (r.data) this.c.takenWithData++;
        return { granted: true, attr: r.attr, data: r.data };
      }
      if (r.status === DelegateStatus.NFSERR && r.nfsstat === Nfs3Status.NOTSUPP) {
        this.c.notDelegable++;
        if (this.refused.size >= 20_000) this.refused.clear();
        this.refused.set(key, Date.now() + NOT_DELEGABLE_RETRY_MS);
        if (this.c.notDelegable === 1) log.warn('cache: the proxy server grants no delegations on this export (it cannot see every change made there); its files are asked every call and written through');
        return NOT_TAKEN;
      }
      if (r.nfsstat === Nfs3Status.JUKEBOX && Date.now() < until) {
        await new Promise((res) => setTimeout(res, 250));
        continue;
      }
      throw new FsError(codeOfStatus(r.nfsstat as Nfs3Status), `delegation ${mode} refused (NFS status ${r.nfsstat})`);
    }
  }

  /** DELEGATE, or DELEGATE_READ when the file's bytes are wanted (`dataMax` > 0) and the server has it. */
  private async ask(cred: Credentials, fh: Buffer, m: DelegateMode, dataMax: number): Promise<DelegateReadRes> {
    try {
      if (dataMax > 0 && !this.noDelegateRead) {
        try {
          return await this.link.ext(DELEGATE_READ, (w) => delegateReadArgs.enc(w, { fh, clientId: this.clientId, dataMax }), delegateReadRes.dec, cred);
        } catch (e) {
          if (!(e instanceof RpcError && e.kind === 'proc_unavail')) throw e;
          this.noDelegateRead = true;
          log.info('cache: the proxy server has no DELEGATE_READ (an older version): delegations and reads are asked separately');
        }
      }
      return await this.link.ext(DELEGATE, (w) => delegateArgs.enc(w, { fh, mode: m, clientId: this.clientId }), delegateRes.dec, cred);
    } catch (e) {
      // The link failed (timeout, partition): the same error a call to the server would give.
      throw e instanceof FsError ? e : new FsError('IO', `DELEGATE: ${(e as Error).message}`);
    }
  }

  /** A recall of `fh` arrived: whatever grant is on the wire is void. Returns whether it is held (still, until `drop`). */
  recalled(fh: Buffer): boolean {
    const key = fh.toString('hex');
    this.c.recalls++;
    this.recallSeq.set(key, (this.recallSeq.get(key) ?? 0) + 1);
    return this.held.has(key);
  }

  /** The recall is answered: the delegation is the server's again. */
  drop(fh: Buffer): void {
    this.held.delete(fh.toString('hex'));
  }

  /** Give a delegation back (the cache drops the file; its data is flushed). Errors are logged: the server recalls it later anyway. */
  async giveBack(fh: Buffer): Promise<void> {
    const key = fh.toString('hex');
    if (!this.held.delete(key)) return;
    const cred = this.hooks.cred();
    if (!cred) return;
    this.c.returned++;
    try {
      await this.link.ext(DELEGATE, (w) => delegateArgs.enc(w, { fh, mode: DelegateMode.RETURN, clientId: this.clientId }), delegateRes.dec, cred);
    } catch (e) {
      log.debug({ err: (e as Error).message }, 'cache: returning a delegation failed');
    }
  }

  /** Every held delegation's handle (`keep`: files still dirty, whose write delegations are kept). */
  heldHandles(): Buffer[] {
    return [...this.held.values()].map((h) => h.fh);
  }

  private noteReply(r: Pick<DelegateRes, 'leaseMs' | 'instance'>, sent: number): void {
    if (r.leaseMs > 0 && r.leaseMs !== this.leaseMs) {
      this.leaseMs = r.leaseMs;
      // The renewal period follows the server's lease.
      if (this.timer) {
        this.stop();
        this.start();
      }
    }
    this.lapseIfDue(); // a renewal after a lapse does not bring the old delegations back
    if (this.instance && !this.instance.equals(r.instance)) this.serverRestarted();
    this.instance = r.instance;
    this.trustUntil = Math.max(this.trustUntil, sent + this.leaseMs - leaseMargin(this.leaseMs));
  }

  /** The server is another run: every delegation went with the old one. */
  private serverRestarted(): void {
    this.c.restarts++;
    const fhs = this.heldHandles();
    this.held.clear();
    this.trustUntil = 0;
    log.warn({ dropped: fhs.length }, 'cache: the proxy server restarted; every delegation is dropped, unflushed data is reclaimed and delivered');
    this.hooks.drop(fhs);
    this.owesDone = true;
    this.restarting ??= this.hooks
      .restarted()
      .catch((e) => log.error({ err: e }, 'cache: delivering the journal after a proxy-server restart failed'))
      .finally(() => {
        this.restarting = undefined;
        void this.renew();
      });
  }

  /** One RENEW for everything held (and to learn of a restart); failures only count: trust lapses on its own. */
  async renew(): Promise<void> {
    const cred = this.hooks.cred();
    if (!cred || !this.clientId.length) return;
    const done = this.owesDone && !this.restarting;
    const sent = Date.now();
    try {
      const r = await this.link.ext(RENEW, (w) => renewArgs.enc(w, { clientId: this.clientId, reclaimDone: done }), renewRes.dec, cred);
      if (r.status !== DelegateStatus.OK) throw new Error(`RENEW refused (NFS status ${r.nfsstat})`);
      this.c.renewals++;
      if (done) this.owesDone = false;
      this.noteReply(r, sent);
    } catch (e) {
      this.c.renewFailures++;
      log.debug({ err: (e as Error).message }, 'cache: RENEW failed; delegations are trusted until the lease runs out');
    }
  }

  /** Renew every third of a lease while anything is held or unflushed (or a restart's reclaim is owed). */
  start(): void {
    if (this.timer) return;
    const tick = () => {
      this.timer = setTimeout(async () => {
        this.lapseIfDue();
        if (this.held.size || this.hooks.dirty() || this.owesDone) await this.renew();
        if (this.timer) tick();
      }, Math.max(100, Math.floor(this.leaseMs / 3)));
      this.timer.unref();
    };
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
