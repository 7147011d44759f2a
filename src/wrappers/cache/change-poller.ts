import { CHANGES_SINCE, ChangesStatus, changesArgs, changesRes } from '../../ext/changes-codec.js';
import type { ExtLink } from '../../ext/meta-client.js';
import type { Credentials } from '../../rpc/types.js';
import { logger } from '../../util/log.js';

const log = logger('cache');

/** What a poll tells the cache to drop. */
export interface PollTarget {
  /** These files changed on the server (handles as the link issued them). */
  invalidate(fhs: Buffer[]): void;
  /** What changed cannot be told: drop every attribute and name. */
  invalidateAll(): void;
}

interface Root {
  fh: Buffer;
  cred: Credentials;
  boot: Buffer;
  seq: bigint;
}

/**
 * The `poll` consistency model's client half: once per period, one
 * CHANGES_SINCE call per mounted export (ext/changes-codec.ts), whatever
 * the number of files cached, and the cache drops exactly what it lists.
 *
 * `inSync()` says whether the cache may trust what it holds without asking
 * the server: only while the last fully answered round was sent less than
 * two periods ago. A failed or late round ends the trust until a round
 * succeeds again (the cache then asks the server, as with a zero timeout),
 * so a change is never hidden longer than that, link trouble or not.
 */
export class ChangePoller {
  private readonly roots = new Map<string, Root>();
  private timer?: NodeJS.Timeout;
  private round?: Promise<void>;
  private ticking = false;
  /** Mount roots found to be in an export already polled (bounded: one per distinct mount path). */
  private readonly covered = new Set<string>();
  private stopped = true;
  /** Date.now() when the last round whose every call succeeded was sent (0: none yet). */
  private syncedAt = 0;
  readonly c = { polls: 0, listed: 0, resets: 0, pollFailures: 0 };

  constructor(
    private readonly link: ExtLink,
    private readonly target: PollTarget,
    private readonly periodMs: () => number,
  ) {}

  /** Poll the export `root` belongs to from now on (the cache calls this on every MOUNT). */
  add(root: Buffer, cred: Credentials): void {
    const k = root.toString('hex');
    if (this.roots.has(k) || this.covered.has(k)) return;
    // (A sub-directory of an export already polled is recognised by its first answer and dropped.)
    this.roots.set(k, { fh: Buffer.from(root), cred, boot: Buffer.alloc(0), seq: 0n });
    // A new export is not in sync until it has been polled once.
    this.syncedAt = 0;
    if (!this.stopped) this.kick();
  }

  /** Exports polled per round. */
  get exports(): number {
    return this.roots.size;
  }

  inSync(): boolean {
    return this.syncedAt > 0 && Date.now() - this.syncedAt < 2 * this.periodMs();
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.kick();
  }

  /** Stop polling (the cache trusts nothing it holds until started again). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.syncedAt = 0;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.round;
  }

  /** Run a round now (after the one running, if any), then keep the period from its start. */
  private kick(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.ticking) return; // the running timed round schedules the next
    this.ticking = true;
    const started = Date.now();
    void this.pollAll().finally(() => {
      this.ticking = false;
      if (this.stopped) return;
      this.timer = setTimeout(() => this.kick(), Math.max(0, started + this.periodMs() - Date.now()));
      this.timer.unref();
    });
  }

  /**
   * One round: every export once. Rounds never overlap (each asks from the
   * number the previous one got); the timer runs them, and so may tests and
   * orders that want the cache caught up now.
   */
  pollAll(): Promise<void> {
    const r = (this.round ?? Promise.resolve()).then(() => this.roundNow());
    this.round = r;
    void r.finally(() => {
      if (this.round === r) this.round = undefined;
    });
    return r;
  }

  private async roundNow(): Promise<void> {
    if (!this.roots.size) return;
    const sent = Date.now();
    let ok = true;
    for (const r of this.roots.values()) if (!(await this.pollOne(r))) ok = false;
    if (ok && !this.stopped) this.syncedAt = sent;
  }

  private async pollOne(r: Root): Promise<boolean> {
    this.c.polls++;
    let res;
    try {
      res = await this.link.ext(CHANGES_SINCE, (w) => changesArgs.enc(w, { fh: r.fh, boot: r.boot, since: r.seq }), changesRes.dec, r.cred);
    } catch (e) {
      this.c.pollFailures++;
      this.syncedAt = 0;
      log.warn({ err: (e as Error).message }, 'cache: polling the change log failed; trusting nothing cached until a poll succeeds');
      return false;
    }
    if (res.status === ChangesStatus.NFSERR) {
      this.c.pollFailures++;
      this.syncedAt = 0;
      log.warn({ nfsstat: res.nfsstat }, 'cache: the proxy server refused the change-log poll; trusting nothing cached until a poll succeeds');
      return false;
    }
    if (res.status === ChangesStatus.RESET) {
      // First poll, a restarted server, or too far behind: what changed is unknown.
      if (r.boot.length) log.info({ since: String(r.seq), seq: String(res.seq), newServer: !r.boot.equals(res.boot) }, 'cache: too far behind the change log; dropping every cached attribute and name');
      this.c.resets++;
      this.target.invalidateAll();
    } else if (res.handles.length) {
      this.c.listed += res.handles.length;
      this.target.invalidate(res.handles);
    }
    r.boot = res.boot;
    r.seq = res.seq;
    // Another mount of the same export (a sub-directory): its log names the same incarnation. One poll per export.
    for (const [k, o] of this.roots) {
      if (o !== r && o.boot.equals(r.boot)) {
        for (const [k2, o2] of this.roots) {
          if (o2 !== r) continue;
          this.roots.delete(k2);
          this.covered.add(k2);
        }
        log.debug({ export: k }, 'cache: a second mount of an export already polled');
        break;
      }
    }
    return true;
  }
}
