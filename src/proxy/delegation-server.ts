import { isFsError } from '../backend/errors.js';
import { DelegateMode, DelegateStatus, type DelegateArgs, type DelegateRes } from '../ext/callback-codec.js';
import { STATUS_OF } from '../nfs3/status.js';
import type { Credentials } from '../rpc/types.js';
import { delegationKey } from '../wrappers/delegation/delegation-backend.js';
import type { DelegationTable } from '../wrappers/delegation/delegations.js';

/** The proxy server's side of DELEGATE (ext/callback-codec.ts): grants and returns over the delegation table. */
export class DelegationServer {
  constructor(
    readonly table: DelegationTable,
    private readonly unwrap: (fh: Buffer, c: Credentials) => { ex: number; ufh: Buffer },
    private readonly leaseMs: number,
  ) {}

  async delegate(cred: Credentials, a: DelegateArgs): Promise<DelegateRes> {
    const res = (status: DelegateStatus, nfsstat = 0): DelegateRes => ({ status, nfsstat, leaseMs: this.leaseMs });
    try {
      // Only a session can hold a delegation: recalls go to a session's connection.
      if (cred.session === undefined) return res(DelegateStatus.NFSERR, STATUS_OF.NOTSUPP);
      const { ex, ufh } = this.unwrap(a.fh, cred);
      const file = delegationKey(ex, ufh);
      if (a.mode === DelegateMode.RETURN) this.table.release(cred.session, file);
      else if (a.mode === DelegateMode.READ || a.mode === DelegateMode.WRITE) await this.table.grant(cred.session, file, a.fh, a.mode === DelegateMode.WRITE ? 'write' : 'read');
      else return res(DelegateStatus.NFSERR, STATUS_OF.INVAL);
      return res(DelegateStatus.OK);
    } catch (e) {
      if (isFsError(e)) return res(DelegateStatus.NFSERR, STATUS_OF[e.code]);
      throw e;
    }
  }
}
