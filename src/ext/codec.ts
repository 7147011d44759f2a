import type { XdrReader, XdrWriter } from '../xdr/index.js';

/**
 * The GVFS extension program: what NFSv3 cannot say travels as a separate
 * ONC RPC program on the same connection (user-defined program range of
 * RFC 5531). An unmodified NFS client never calls it.
 *
 * v1: NULL; HELLO (insecure sessions: a proxy client announces the grid
 * identity of its session); CHALLENGE and AUTH (a proxy client proves the
 * session key on a new connection, see channel/proof.ts).
 */
export const GVFS_PROGRAM = 0x2047_4653;
export const GVFS_V1 = 1;

export const enum GvfsProc {
  NULL = 0,
  HELLO = 1,
  CHALLENGE = 2,
  AUTH = 3,
}

export const enum HelloStatus {
  OK = 0,
  /** The identity is not one this server maps. */
  DENIED = 1,
}

export const MAX_PRINCIPAL = 255;

export interface HelloArgs {
  principal: string;
}

export interface HelloRes {
  status: HelloStatus;
}

export const helloArgs = {
  enc: (w: XdrWriter, v: HelloArgs) => void w.string(v.principal),
  dec: (r: XdrReader): HelloArgs => ({ principal: r.string(MAX_PRINCIPAL) }),
};

export const helloRes = {
  enc: (w: XdrWriter, v: HelloRes) => void w.u32(v.status),
  dec: (r: XdrReader): HelloRes => ({ status: r.u32() as HelloStatus }),
};

export const enum AuthStatus {
  OK = 0,
  /** Unknown session or wrong proof (deliberately the same answer). */
  DENIED = 1,
  /** AUTH without a CHALLENGE first on this connection. */
  NO_CHALLENGE = 2,
  /** Valid proof, but the session has expired. */
  EXPIRED = 3,
}

export interface AuthArgs {
  sessionId: string;
  clientNonce: Buffer;
  proof: Buffer;
}

export interface AuthRes {
  status: AuthStatus;
  serverProof: Buffer;
}

export const challengeRes = {
  enc: (w: XdrWriter, v: Buffer) => void w.opaque(v),
  dec: (r: XdrReader): Buffer => Buffer.from(r.opaque(64)),
};

export const authArgs = {
  enc: (w: XdrWriter, v: AuthArgs) => void w.string(v.sessionId).opaque(v.clientNonce).opaque(v.proof),
  dec: (r: XdrReader): AuthArgs => ({ sessionId: r.string(64), clientNonce: Buffer.from(r.opaque(64)), proof: Buffer.from(r.opaque(64)) }),
};

export const authRes = {
  enc: (w: XdrWriter, v: AuthRes) => void w.u32(v.status).opaque(v.serverProof),
  dec: (r: XdrReader): AuthRes => ({ status: r.u32() as AuthStatus, serverProof: Buffer.from(r.opaque(64)) }),
};
