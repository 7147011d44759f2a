import type { XdrReader, XdrWriter } from '../xdr/index.js';

/**
 * The GVFS extension program: what NFSv3 cannot say travels as a separate
 * ONC RPC program on the same connection (user-defined program range of
 * RFC 5531). An unmodified NFS client never calls it.
 *
 * v1: NULL, HELLO (a proxy client announces the grid identity of its session
 * for the connection).
 */
export const GVFS_PROGRAM = 0x2047_4653;
export const GVFS_V1 = 1;

export const enum GvfsProc {
  NULL = 0,
  HELLO = 1,
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
