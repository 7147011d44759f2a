import { isFsError } from '../backend/errors.js';
import { ChangesStatus, MAX_CHANGES, type ChangesArgs, type ChangesRes } from '../ext/changes-codec.js';
import { STATUS_OF } from '../nfs3/status.js';
import type { Credentials } from '../rpc/types.js';
import type { ChangeLog } from '../wrappers/change-log/change-log.js';

export interface ChangesServerOptions {
  /** Each export's change log, by export index. */
  logs: ChangeLog[];
  /** Proxy handle → export index (refuses a handle not issued to the caller's session). */
  unwrap: (fh: Buffer, c: Credentials) => { ex: number };
  /** Export handle → the caller's proxy handle. */
  wrap: (c: Credentials, ex: number, ufh: Buffer) => Promise<Buffer>;
}

/**
 * The proxy server's side of CHANGES_SINCE (ext/changes-codec.ts): the
 * changes of the export `fh` lies in after `since`, as handles of the
 * caller's session. Nothing is checked beyond the handle: a session learns
 * only that files it can name changed, not what they hold.
 */
export class ChangesServer {
  readonly c = { polls: 0, resets: 0, listed: 0 };

  constructor(private readonly o: ChangesServerOptions) {}

  async changesSince(cred: Credentials, a: ChangesArgs): Promise<ChangesRes> {
    this.c.polls++;
    let ex: number;
    try {
      ex = this.o.unwrap(a.fh, cred).ex;
    } catch (e) {
      if (isFsError(e)) return { status: ChangesStatus.NFSERR, nfsstat: STATUS_OF[e.code], boot: Buffer.alloc(0), seq: 0n, handles: [] };
      throw e;
    }
    const log = this.o.logs[ex];
    const r = a.boot.equals(log.boot) ? log.since(a.since, MAX_CHANGES) : undefined;
    if (!r) {
      this.c.resets++;
      return { status: ChangesStatus.RESET, nfsstat: 0, boot: log.boot, seq: log.seq, handles: [] };
    }
    const handles = await Promise.all(r.handles.map((h) => this.o.wrap(cred, ex, h)));
    this.c.listed += handles.length;
    return { status: ChangesStatus.OK, nfsstat: 0, boot: log.boot, seq: r.seq, handles };
  }
}
