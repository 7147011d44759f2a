import { isFsError } from '../backend/errors.js';
import { DELEGATE_DATA_MAX, DelegateMode, DelegateStatus, type DelegateArgs, type DelegateReadArgs, type DelegateReadRes, type DelegateRes, type LeaseRes, type RenewArgs, type RenewRes } from '../ext/callback-codec.js';
import { FType } from '../nfs3/constants.js';
import type { Fattr3, ReadResult } from '../nfs3/types.js';
import { STATUS_OF } from '../nfs3/status.js';
import type { Credentials } from '../rpc/types.js';
import { delegationKey } from '../wrappers/delegation/delegation-backend.js';
import type { DelegationMode, DelegationTable } from '../wrappers/delegation/delegations.js';

const MODES: Partial<Record<DelegateMode, DelegationMode>> = { [DelegateMode.READ]: 'read', [DelegateMode.WRITE]: 'write', [DelegateMode.RECLAIM]: 'reclaim' };

/** The proxy server's side of DELEGATE and RENEW (ext/callback-codec.ts): grants, returns and renewals over the delegation table. */
export class DelegationServer {
  /** DELEGATEs refused because their export is not delegable (not watched). */
  refusedUnwatched = 0;
  constructor(
    readonly table: DelegationTable,
    private readonly unwrap: (fh: Buffer, c: Credentials) => { ex: number; ufh: Buffer },
    private readonly leaseMs: number,
    /** Whether the export's files may be delegated now: every change to it is seen (through us, or by its disk watcher). */
    private readonly delegable: (ex: number) => boolean = () => true,
    /** GETATTR as the caller, through the same stack as its NFS calls (identity mapping included): sent back with a grant. */
    private readonly attrs?: (cred: Credentials, fh: Buffer) => Promise<Fattr3>,
    /** READ as the caller, through the same stack: a small file's bytes sent back with a DELEGATE_READ grant. */
    private readonly read?: (cred: Credentials, fh: Buffer, offset: number, count: number) => Promise<ReadResult>,
  ) {}

  private res(status: DelegateStatus, nfsstat = 0): LeaseRes {
    return { status, nfsstat, leaseMs: this.leaseMs, instance: this.table.instance };
  }

  async delegate(cred: Credentials, a: DelegateArgs): Promise<DelegateRes> {
    try {
      // Only a session can hold a delegation: recalls go to a session's connection.
      if (cred.session === undefined) return this.res(DelegateStatus.NFSERR, STATUS_OF.NOTSUPP);
      const { ex, ufh } = this.unwrap(a.fh, cred);
      const file = delegationKey(ex, ufh);
      const client = a.clientId.length ? a.clientId.toString('hex') : undefined;
      if (a.mode === DelegateMode.RETURN) this.table.release(cred.session, file);
      else if (!this.delegable(ex)) {
        // A change there could go unseen, so a delegation could be trusted over stale data: the client asks every call instead.
        this.refusedUnwatched++;
        return this.res(DelegateStatus.NFSERR, STATUS_OF.NOTSUPP);
      } else {
        const mode = MODES[a.mode];
        if (!mode) return this.res(DelegateStatus.NFSERR, STATUS_OF.INVAL);
        await this.table.grant(cred.session, file, a.fh, mode, client);
        // After the grant: a change from here on recalls it, so the holder may trust these as its own GETATTR's.
        const attr = await this.attrs?.(cred, a.fh).catch(() => undefined);
        if (attr) return { ...this.res(DelegateStatus.OK), attr };
      }
      return this.res(DelegateStatus.OK);
    } catch (e) {
      if (isFsError(e)) return this.res(DelegateStatus.NFSERR, STATUS_OF[e.code]);
      throw e;
    }
  }

  /**
   * A read delegation, and the file's bytes when it is a regular file of at
   * most `dataMax`: read after the grant as the caller, and sent with that
   * READ's attributes (one version; a change after the grant recalls it).
   * Without them (a bigger file, a READ refused or short) the reply is
   * DELEGATE's.
   */
  async delegateRead(cred: Credentials, a: DelegateReadArgs): Promise<DelegateReadRes> {
    const r = await this.delegate(cred, { fh: a.fh, mode: DelegateMode.READ, clientId: a.clientId });
    const max = Math.min(a.dataMax, DELEGATE_DATA_MAX);
    if (r.status !== DelegateStatus.OK || !r.attr || r.attr.type !== FType.REG || r.attr.size > max || !this.read) return r;
    const got = await this.read(cred, a.fh, 0, max).catch(() => undefined);
    // The whole file, and attributes that say so (a change between the GETATTR and the READ shows here).
    if (!got?.attr || !got.eof || got.data.length !== got.attr.size || got.attr.type !== FType.REG) return r;
    return { ...r, attr: got.attr, data: got.data };
  }

  renew(cred: Credentials, a: RenewArgs): RenewRes {
    if (cred.session === undefined) return { ...this.res(DelegateStatus.NFSERR, STATUS_OF.NOTSUPP), grace: false };
    const { grace } = this.table.renew(cred.session, a.clientId.length ? a.clientId.toString('hex') : undefined, a.reclaimDone);
    return { ...this.res(DelegateStatus.OK), grace };
  }
}
