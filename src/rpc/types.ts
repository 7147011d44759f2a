/** ONC RPC v2 message constants (RFC 5531 §9). */
export const RPC_VERSION = 2;

export const enum MsgType { CALL = 0, REPLY = 1 }
export const enum ReplyStat { MSG_ACCEPTED = 0, MSG_DENIED = 1 }
export const enum AcceptStat {
  SUCCESS = 0,
  PROG_UNAVAIL = 1,
  PROG_MISMATCH = 2,
  PROC_UNAVAIL = 3,
  GARBAGE_ARGS = 4,
  SYSTEM_ERR = 5,
}
export const enum RejectStat { RPC_MISMATCH = 0, AUTH_ERROR = 1 }
export const enum AuthStat {
  AUTH_OK = 0,
  AUTH_BADCRED = 1,
  AUTH_REJECTEDCRED = 2,
  AUTH_BADVERF = 3,
  AUTH_REJECTEDVERF = 4,
  AUTH_TOOWEAK = 5,
  AUTH_INVALIDRESP = 6,
  AUTH_FAILED = 7,
}
export const enum AuthFlavor { AUTH_NONE = 0, AUTH_SYS = 1, AUTH_SHORT = 2, AUTH_DH = 3, RPCSEC_GSS = 6 }

/** opaque_auth body limit (RFC 5531: at most 400 bytes). */
export const MAX_AUTH_BYTES = 400;

export interface OpaqueAuth {
  flavor: number;
  body: Buffer;
}

/** AUTH_SYS credential body (RFC 5531 appendix A). */
export interface AuthSys {
  stamp: number;
  machine: string;
  uid: number;
  gid: number;
  gids: number[];
}

export interface CallHeader {
  xid: number;
  prog: number;
  vers: number;
  proc: number;
  cred: OpaqueAuth;
  verf: OpaqueAuth;
}

/** Caller identity as procedures see it: AUTH_SYS decoded, or anonymous for AUTH_NONE. */
export interface Credentials {
  flavor: number;
  uid: number;
  gid: number;
  gids: number[];
  machine?: string;
  /**
   * Who the caller is beyond AUTH_SYS numbers: the grid identity a GVFS
   * proxy client announced for its session on this connection. Identity
   * mapping keys on it; absent for plain NFS clients.
   */
  principal?: string;
  /** The session whose key this connection proved (channel/proof.ts); absent on insecure servers. */
  session?: string;
}

/** One string per identity a server tells apart (AUTH_SYS numbers and session): "the same caller" as a map key. */
export const credKey = (c: Credentials): string => `${c.uid}:${c.gid}:${c.gids.join(',')}:${c.session ?? ''}`;

/** Failure of an RPC as a whole (as opposed to a procedure's own status). */
export class RpcError extends Error {
  override name = 'RpcError';
  constructor(
    message: string,
    readonly kind:
      | 'prog_unavail'
      | 'prog_mismatch'
      | 'proc_unavail'
      | 'garbage_args'
      | 'system_err'
      | 'rpc_mismatch'
      | 'auth_error'
      | 'timeout'
      | 'disconnected'
      | 'closed'
      | 'bad_reply'
      /** The peer speaks another protocol than this channel (TLS, SSH, plain RPC): final, never retried. */
      | 'wrong_channel',
    readonly detail?: number,
  ) {
    super(message);
  }
}
