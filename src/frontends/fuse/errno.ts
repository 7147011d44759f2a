import os from 'node:os';
import { isFsError, type FsErrorCode } from '../../backend/errors.js';
import { logger } from '../../util/log.js';

const log = logger('fuse');
const E = os.constants.errno;

/**
 * Backend error code → errno a program sees through the mount: the one table
 * of this boundary. `null` marks the codes that have no honest errno and
 * collapse to EIO with a loud log line (a stale handle the front end could not
 * recover from by looking the path up again, a server fault, a forged handle).
 */
export const ERRNO_OF: Record<FsErrorCode, number | null> = {
  PERM: E.EPERM,
  NOENT: E.ENOENT,
  IO: E.EIO,
  NXIO: E.ENXIO,
  ACCES: E.EACCES,
  EXIST: E.EEXIST,
  XDEV: E.EXDEV,
  NODEV: E.ENODEV,
  NOTDIR: E.ENOTDIR,
  ISDIR: E.EISDIR,
  INVAL: E.EINVAL,
  FBIG: E.EFBIG,
  NOSPC: E.ENOSPC,
  ROFS: E.EROFS,
  MLINK: E.EMLINK,
  NAMETOOLONG: E.ENAMETOOLONG,
  NOTEMPTY: E.ENOTEMPTY,
  DQUOT: E.EDQUOT,
  // Linux EREMOTE ("object is remote"); not in Node's table.
  REMOTE: 66,
  NOTSUPP: E.EOPNOTSUPP,
  // A server that stays busy past the front end's retries.
  JUKEBOX: E.EAGAIN,
  // No errno says these; each collapses to EIO and is logged.
  STALE: null,
  BADHANDLE: null,
  NOT_SYNC: null,
  BAD_COOKIE: null,
  TOOSMALL: null,
  SERVERFAULT: null,
  BADTYPE: null,
};

const NAME_OF = new Map<number, string>(Object.entries(E).map(([k, v]) => [v, k]));

/** -ENOENT → 'ENOENT' (for counters and logs). */
export const errnoName = (neg: number): string => NAME_OF.get(-neg) ?? String(-neg);

/**
 * Any failure of a front-end operation → negative errno for libfuse. FsErrors
 * go through the table; anything else is a bug somewhere below and becomes
 * EIO, loudly.
 */
export function toErrno(e: unknown, op: string, path: string): number {
  if (isFsError(e)) {
    const n = ERRNO_OF[e.code];
    if (n !== null) {
      log.debug({ op, path, code: e.code }, e.message);
      return -n;
    }
    log.error({ op, path, code: e.code, err: e.message }, `${op} ${path}: backend error ${e.code} has no errno; reporting EIO`);
    return -E.EIO;
  }
  log.error({ op, path, err: e instanceof Error ? e.stack : String(e) }, `${op} ${path}: unexpected failure; reporting EIO`);
  return -E.EIO;
}
