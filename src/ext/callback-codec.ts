import type { XdrReader, XdrWriter } from '../xdr/index.js';
import { type ProgramVersion, VOID } from '../rpc/program.js';
import { GVFS_PROGRAM } from './codec.js';
import { postOpAttr } from '../nfs3/codec.js';
import type { Fattr3 } from '../nfs3/types.js';

/**
 * The server → client half of the GVFS extension program (the callback
 * consistency model, README "Consistency"): calls the proxy server makes
 * to a proxy client over the connection the client dialled. Same program
 * number as the client → server direction, its own version number so the
 * two tables never collide on a procedure number.
 *
 *   CB_NULL()          → void       (is the holder there?)
 *   CB_RECALL(fh)      → status     (flush and give back the delegation of fh)
 */
export const GVFS_CB_V1 = 101;

export const enum CbProc {
  NULL = 0,
  RECALL = 1,
}

export const enum RecallStatus {
  /** Flushed (if it held dirty data) and returned. */
  OK = 0,
  /** The client holds no delegation for that handle (nothing to do). */
  NOT_HELD = 1,
  /** The flush failed: the delegation is returned, its data stays in the client's journal. */
  FLUSH_FAILED = 2,
}

export const recallArgs = {
  enc: (w: XdrWriter, fh: Buffer) => void w.opaque(fh),
  dec: (r: XdrReader): Buffer => Buffer.from(r.opaque(64)),
};

export const recallRes = {
  enc: (w: XdrWriter, s: RecallStatus) => void w.u32(s),
  dec: (r: XdrReader): RecallStatus => r.u32() as RecallStatus,
};

/** What a proxy client does when recalled. */
export interface CallbackHandlers {
  recall(fh: Buffer): Promise<RecallStatus>;
}

/** The program table a proxy client serves on its link (RpcClientOptions.callbacks). */
export function callbackProgram(h: CallbackHandlers): ProgramVersion {
  return {
    prog: GVFS_PROGRAM,
    vers: GVFS_CB_V1,
    name: 'gvfs-cb',
    procedures: [
      { name: 'CB_NULL', decode: VOID.decode, handle: () => undefined, encode: VOID.encode, idempotent: true },
      { name: 'CB_RECALL', decode: recallArgs.dec, handle: (fh: Buffer) => h.recall(fh), encode: recallRes.enc, idempotent: true },
    ],
  };
}

/**
 * The client → server half: DELEGATE and RENEW, in the GVFS program v1.
 *
 *   DELEGATE(fh, mode, clientId) → (status, nfsstat, leaseMs, instance, post_op_attr)
 *   RENEW(clientId, reclaimDone)  → (status, nfsstat, leaseMs, instance, grace)
 *
 * mode RETURN gives a delegation back (after flushing); READ / WRITE ask
 * for one (conflicting holders are recalled first; the reply waits); WRITE
 * also lifts a fence (README "Consistency"), so a client asks it only for a
 * file it holds no unflushed data of. RECLAIM asks a write delegation for
 * data written under one the client no longer holds (a proxy-server
 * restart, a lapsed lease, a client restart with a journal): refused
 * (NFS3ERR_ACCES) when the client was fenced for the file, and it lifts
 * nothing.
 *
 * `clientId` names the client across restarts (a random id kept in its
 * cache directory): fences are per client, not per session. `instance`
 * names this run of the proxy server: a client that sees it change drops
 * every delegation it holds at once. RENEW extends every lease the client
 * holds (one call per period, whatever their number); `reclaimDone` says it
 * has reclaimed and flushed everything it owed a previous instance.
 *
 * A granted DELEGATE carries the file's attributes as the caller would get
 * them from GETATTR, taken after the grant: a holder trusts them as it would
 * a GETATTR it sent after the grant (a change after them recalls), and saves
 * that round trip.
 */
export const DELEGATE = 8;
export const RENEW = 9;

/**
 * DELEGATE_READ(fh, clientId, dataMax) → DELEGATE's reply, then the whole
 * file's bytes if it has at most `dataMax` (and DELEGATE_DATA_MAX).
 *
 * A read delegation whose grant also brings a small file's bytes: a holder
 * whose delegation another session's change recalled takes it again and
 * has the new bytes in the same round trip, where DELEGATE and then READ
 * took two (over a 40 ms link, most of what a read-mostly pass waits for).
 * The server reads them as the caller, after the grant, and the reply's
 * attributes are that READ's own, so bytes and attributes are one version;
 * a change after the grant recalls it as for DELEGATE. A READ the server
 * let the caller make also answers the client's read-permission check.
 * Its own procedure, not a new field of DELEGATE's arguments (a server
 * rejects arguments longer than it knows): a server without it answers
 * PROC_UNAVAIL, and the client asks DELEGATE from then on.
 */
export const DELEGATE_READ = 12;
/** The most bytes a DELEGATE_READ reply carries: one small file, never a big reply for an unasked read. */
export const DELEGATE_DATA_MAX = 64 * 1024;

export const enum DelegateMode {
  RETURN = 0,
  READ = 1,
  WRITE = 2,
  RECLAIM = 3,
}

export const enum DelegateStatus {
  OK = 0,
  /** `fh` refused or the grant failed: `nfsstat` says why (JUKEBOX: retry; ACCES: fenced). */
  NFSERR = 1,
}

/** Longest client id (bytes). */
export const CLIENT_ID_MAX = 32;
export const INSTANCE_LEN = 8;

export interface DelegateArgs {
  fh: Buffer;
  mode: DelegateMode;
  clientId: Buffer;
}
/** What DELEGATE and RENEW replies share. */
export interface LeaseRes {
  status: DelegateStatus;
  nfsstat: number;
  /** The holder must renew within this; it trusts its delegations a margin less (client-lease.ts). */
  leaseMs: number;
  /** This run of the proxy server. */
  instance: Buffer;
}
export interface DelegateRes extends LeaseRes {
  /** A grant: the file's attributes as GETATTR gives the caller, taken after the grant (absent if that failed, or no grant). */
  attr?: Fattr3;
}
export interface DelegateReadArgs {
  fh: Buffer;
  clientId: Buffer;
  dataMax: number;
}
export interface DelegateReadRes extends DelegateRes {
  /** The whole file (attr.size bytes), of the version `attr` names. */
  data?: Buffer;
}
export interface RenewArgs {
  clientId: Buffer;
  reclaimDone: boolean;
}
export interface RenewRes extends LeaseRes {
  /** The server is in its grace period (after a restart): only reclaims are granted. */
  grace: boolean;
}

export const delegateArgs = {
  enc: (w: XdrWriter, v: DelegateArgs) => void w.opaque(v.fh).u32(v.mode).opaque(v.clientId),
  dec: (r: XdrReader): DelegateArgs => ({ fh: Buffer.from(r.opaque(64)), mode: r.u32() as DelegateMode, clientId: Buffer.from(r.opaque(CLIENT_ID_MAX)) }),
};
const leaseRes = {
  enc: (w: XdrWriter, v: LeaseRes) => void w.u32(v.status).u32(v.nfsstat).u32(v.leaseMs).fixedOpaque(v.instance),
  dec: (r: XdrReader): LeaseRes => ({ status: r.u32() as DelegateStatus, nfsstat: r.u32(), leaseMs: r.u32(), instance: Buffer.from(r.fixedOpaque(INSTANCE_LEN)) }),
};
export const delegateRes = {
  enc: (w: XdrWriter, v: DelegateRes) => {
    leaseRes.enc(w, v);
    postOpAttr.enc(w, v.attr);
  },
  dec: (r: XdrReader): DelegateRes => {
    const v: DelegateRes = leaseRes.dec(r);
    const attr = postOpAttr.dec(r);
    return attr ? { ...v, attr } : v;
  },
};
export const delegateReadArgs = {
  enc: (w: XdrWriter, v: DelegateReadArgs) => void w.opaque(v.fh).opaque(v.clientId).u32(v.dataMax),
  dec: (r: XdrReader): DelegateReadArgs => ({ fh: Buffer.from(r.opaque(64)), clientId: Buffer.from(r.opaque(CLIENT_ID_MAX)), dataMax: r.u32() }),
};
export const delegateReadRes = {
  enc: (w: XdrWriter, v: DelegateReadRes) => {
    delegateRes.enc(w, v);
    w.bool(v.data !== undefined);
    if (v.data) w.opaque(v.data);
  },
  dec: (r: XdrReader): DelegateReadRes => {
    const v: DelegateReadRes = delegateRes.dec(r);
    return r.bool() ? { ...v, data: Buffer.from(r.opaque(DELEGATE_DATA_MAX)) } : v;
  },
};
export const renewArgs = {
  enc: (w: XdrWriter, v: RenewArgs) => void w.opaque(v.clientId).bool(v.reclaimDone),
  dec: (r: XdrReader): RenewArgs => ({ clientId: Buffer.from(r.opaque(CLIENT_ID_MAX)), reclaimDone: r.bool() }),
};
export const renewRes = {
  enc: (w: XdrWriter, v: RenewRes) => {
    leaseRes.enc(w, v);
    w.bool(v.grace);
  },
  dec: (r: XdrReader): RenewRes => ({ ...leaseRes.dec(r), grace: r.bool() }),
};
