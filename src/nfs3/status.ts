import type { FsErrorCode } from '../backend/errors.js';
import { Nfs3Status } from './constants.js';

/** Backend error code → nfsstat3: the one table for the wire. */
export const STATUS_OF: Record<FsErrorCode, Nfs3Status> = {
  PERM: Nfs3Status.PERM,
  NOENT: Nfs3Status.NOENT,
  IO: Nfs3Status.IO,
  NXIO: Nfs3Status.NXIO,
  ACCES: Nfs3Status.ACCES,
  EXIST: Nfs3Status.EXIST,
  XDEV: Nfs3Status.XDEV,
  NODEV: Nfs3Status.NODEV,
  NOTDIR: Nfs3Status.NOTDIR,
  ISDIR: Nfs3Status.ISDIR,
  INVAL: Nfs3Status.INVAL,
  FBIG: Nfs3Status.FBIG,
  NOSPC: Nfs3Status.NOSPC,
  ROFS: Nfs3Status.ROFS,
  MLINK: Nfs3Status.MLINK,
  NAMETOOLONG: Nfs3Status.NAMETOOLONG,
  NOTEMPTY: Nfs3Status.NOTEMPTY,
  DQUOT: Nfs3Status.DQUOT,
  STALE: Nfs3Status.STALE,
  REMOTE: Nfs3Status.REMOTE,
  BADHANDLE: Nfs3Status.BADHANDLE,
  NOT_SYNC: Nfs3Status.NOT_SYNC,
  BAD_COOKIE: Nfs3Status.BAD_COOKIE,
  NOTSUPP: Nfs3Status.NOTSUPP,
  TOOSMALL: Nfs3Status.TOOSMALL,
  SERVERFAULT: Nfs3Status.SERVERFAULT,
  BADTYPE: Nfs3Status.BADTYPE,
  JUKEBOX: Nfs3Status.JUKEBOX,
};

const CODE_OF = new Map<number, FsErrorCode>(Object.entries(STATUS_OF).map(([k, v]) => [v, k as FsErrorCode]));

/** nfsstat3 → backend error code (the NFS client's direction); unknown statuses become IO. */
export function codeOfStatus(s: number): FsErrorCode {
  return CODE_OF.get(s) ?? 'IO';
}
