import { open, readFile, rename } from 'node:fs/promises';
import { logger } from '../../util/log.js';

const log = logger('delegation');

/**
 * What of the delegation table survives a proxy-server restart (README
 * "Consistency", restarts): the clients that held a delegation (they get a
 * grace period to reclaim), the fences (a revoked client's late data stays
 * refused), and the clients that missed a grace period (their reclaims are
 * refused). Delegations themselves are not kept: a restarted server has
 * none, and its clients learn so from the new instance id.
 *
 * Written whole (temp file, fsync, rename) before the change it records is
 * acted on; changes are rare (a client's first delegation, a revocation),
 * never per call.
 */
export interface DelegationSnapshot {
  /** Clients holding at least one delegation: client id (hex) and the session that holds it. */
  clients: Array<{ client: string; session: string }>;
  /** `c:CLIENT|FILE` and `s:SESSION|FILE` entries. */
  fences: string[];
  /** Clients that did not reclaim within a grace period. */
  late: string[];
}

const EMPTY: DelegationSnapshot = { clients: [], fences: [], late: [] };

export class DelegationState {
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly file: string) {}

  async load(): Promise<DelegationSnapshot> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { ...EMPTY };
      throw e;
    }
    const v = JSON.parse(text) as Partial<DelegationSnapshot>;
    return { clients: v.clients ?? [], fences: v.fences ?? [], late: v.late ?? [] };
  }

  /** Write `snap()` (taken when the write starts, after any write already queued): resolves once it is on disk. */
  save(snap: () => DelegationSnapshot): Promise<void> {
    const run = this.chain.then(async () => {
      const tmp = `${this.file}.tmp`;
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(JSON.stringify(snap()) + '\n');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.file);
    });
    this.chain = run.catch((e) => log.error({ err: e, file: this.file }, 'delegation state could not be saved'));
    return run;
  }
}
