import { FsError } from '../../backend/errors.js';
import { ACCESS3_READ } from '../../nfs3/constants.js';
import type { Credentials } from '../../rpc/types.js';

/** Entries remembered at most (oldest dropped first); each lives no longer than the TTL anyway. */
const MAX_ENTRIES = 50_000;

/**
 * Read permission, as the server last said it, per file and per caller.
 *
 * Blocks in a shared cache directory were fetched by whichever session read
 * them first, and a READ served from the cache never reaches the server,
 * which alone knows who may read a file. So no cached byte (disk blocks,
 * bulk-fetched chunks, zero blocks the meta-data answers locally) is served
 * to a caller until the server has told that caller, with an ACCESS of its
 * own, that it may read the file; the answer (yes or no) is trusted for the
 * attribute timeout, like the attributes themselves. An ACCESS the client
 * sends itself (a kernel client does at open) counts as well.
 */
export class AccessGate {
  private readonly seen = new Map<string, { ok: boolean; at: number }>();
  private readonly asking = new Map<string, Promise<boolean>>();
  /** forget(): per file (hex handle) and for all, when; answers to calls sent earlier are void. */
  private readonly forgotten = new Map<string, number>();
  private allForgottenAt = 0;
  /** ACCESS calls the gate made itself. */
  checks = 0;
  refusals = 0;

  constructor(
    /** ACCESS on the server (through the layers below, so its attributes are noted). */
    private readonly ask: (cred: Credentials, fh: Buffer, mask: number) => Promise<{ access: number }>,
    /** How long an answer is trusted (ms): the attribute timeout (Infinity while the poll model is in sync: forget() ends it). */
    private readonly ttlMs: () => number,
  ) {}

  /** Resolves if `cred` may read `fh`; else FsError ACCES (or the ACCESS call's own error). */
  async check(cred: Credentials, fh: Buffer): Promise<void> {
    const k = accessKey(cred, fh);
    const e = this.seen.get(k);
    let ok: boolean;
    if (e && Date.now() - e.at < this.ttlMs() && this.current(k, e.at)) ok = e.ok;
    else {
      let p = this.asking.get(k);
      if (!p) {
        this.checks++;
        const at = Date.now();
        p = this.ask(cred, fh, ACCESS3_READ).then((r) => {
          const granted = (r.access & ACCESS3_READ) !== 0;
          this.remember(k, granted, at);
          return granted;
        });
        const done = () => this.asking.delete(k);
        p.then(done, done);
        this.asking.set(k, p);
      }
      ok = await p;
    }
    if (!ok) {
      this.refusals++;
      throw new FsError('ACCES', 'the server does not let this caller read the file');
    }
  }

  /**
   * Forget what was seen for `fh` (absent: for every file): its permissions
   * may have changed elsewhere. Answers to ACCESS calls sent before now are
   * not trusted either, even if they arrive later.
   */
  forget(fh?: Buffer): void {
    const now = Date.now();
    if (!fh || this.forgotten.size >= MAX_ENTRIES) {
      this.forgotten.clear();
      this.allForgottenAt = now;
      return;
    }
    this.forgotten.set(fh.toString('hex'), now);
  }

  /** Was this answer (an ACCESS sent at `at`) asked after the last forget of its file? */
  private current(k: string, at: number): boolean {
    const f = this.forgotten.get(k.slice(0, k.indexOf('|')));
    return at > this.allForgottenAt && (f === undefined || at > f);
  }

  /** The server answered an ACCESS of the client's own (asked with `mask`, granted `access`), sent at `at`. */
  note(cred: Credentials, fh: Buffer, mask: number, access: number, at: number): void {
    if (mask & ACCESS3_READ) this.remember(accessKey(cred, fh), (access & ACCESS3_READ) !== 0, at);
  }

  private remember(k: string, ok: boolean, at: number): void {
    const old = this.seen.get(k);
    if (old && old.at > at) return; // a newer answer is already here
    this.seen.delete(k);
    this.seen.set(k, { ok, at });
    while (this.seen.size > MAX_ENTRIES) this.seen.delete(this.seen.keys().next().value!);
  }
}

/** Everything the server may decide permissions by. */
export function accessKey(c: Credentials, fh: Buffer): string {
  return `${fh.toString('hex')}|${c.flavor}:${c.uid}:${c.gid}:${c.gids.join(',')}:${c.session ?? ''}:${c.principal ?? ''}`;
}
