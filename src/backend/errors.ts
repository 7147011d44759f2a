import type { Fattr3, WccData } from '../nfs3/types.js';

/**
 * The backend's error codes. Named after NFSv3's statuses (the interface has
 * NFSv3 semantics); each front end maps them once, in its own table:
 * nfsstat3 on the wire, negative errno at FUSE.
 */
export type FsErrorCode =
  | 'PERM'
  | 'NOENT'
  | 'IO'
  | 'NXIO'
  | 'ACCES'
  | 'EXIST'
  | 'XDEV'
  | 'NODEV'
  | 'NOTDIR'
  | 'ISDIR'
  | 'INVAL'
  | 'FBIG'
  | 'NOSPC'
  | 'ROFS'
  | 'MLINK'
  | 'NAMETOOLONG'
  | 'NOTEMPTY'
  | 'DQUOT'
  | 'STALE'
  | 'REMOTE'
  | 'BADHANDLE'
  | 'NOT_SYNC'
  | 'BAD_COOKIE'
  | 'NOTSUPP'
  | 'TOOSMALL'
  | 'SERVERFAULT'
  | 'BADTYPE'
  | 'JUKEBOX';

/**
 * A failed backend operation. Like an NFSv3 failure reply it may carry the
 * attributes the failure body has room for (post-op attributes, wcc data), so
 * a proxy passes an upstream failure through unchanged.
 */
export class FsError extends Error {
  override name = 'FsError';
  attr?: Fattr3;
  wcc?: WccData;
  /** Second wcc (RENAME's target directory). */
  wcc2?: WccData;

  constructor(
    readonly code: FsErrorCode,
    message?: string,
    body?: { attr?: Fattr3; wcc?: WccData; wcc2?: WccData },
  ) {
    super(message ?? code);
    if (body) Object.assign(this, body);
  }
}

export function isFsError(e: unknown, code?: FsErrorCode): e is FsError {
  return e instanceof FsError && (code === undefined || e.code === code);
}
