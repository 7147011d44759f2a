import { constants } from 'node:os';
import { FsError, type FsErrorCode } from '../../backend/errors.js';
import { logger } from '../../util/log.js';

const log = logger('local-export');

/** errno (from node:fs) → backend error code: the one table for local disk errors. */
const ERRNO: Record<string, FsErrorCode> = {
  EPERM: 'PERM',
  ENOENT: 'NOENT',
  EIO: 'IO',
  ENXIO: 'NXIO',
  EACCES: 'ACCES',
  EEXIST: 'EXIST',
  EXDEV: 'XDEV',
  ENODEV: 'NODEV',
  ENOTDIR: 'NOTDIR',
  EISDIR: 'ISDIR',
  EINVAL: 'INVAL',
  EFBIG: 'FBIG',
  ENOSPC: 'NOSPC',
  EROFS: 'ROFS',
  EMLINK: 'MLINK',
  ENAMETOOLONG: 'NAMETOOLONG',
  ENOTEMPTY: 'NOTEMPTY',
  EDQUOT: 'DQUOT',
  ESTALE: 'STALE',
  ELOOP: 'INVAL',
  EBADF: 'STALE',
  ENOTSUP: 'NOTSUPP',
  EOPNOTSUPP: 'NOTSUPP',
  ENOSYS: 'NOTSUPP',
  EAGAIN: 'JUKEBOX',
  EBUSY: 'ACCES',
  ETXTBSY: 'ACCES',
  EOVERFLOW: 'FBIG',
};

/** Convert anything thrown by node:fs into an FsError (FsErrors pass through). */
export function toFsError(e: unknown, what: string): FsError {
  if (e instanceof FsError) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  // A failed sync (COMMIT's, or the one after a namespace change): IO whatever the errno, and said in the log.
  if ((e as NodeJS.ErrnoException)?.syscall === 'fsync') {
    log.error({ err: e, what }, 'local disk: a sync failed; what was written or changed may not survive a crash');
    return new FsError('IO', `${what}: sync failed: ${code ?? (e as Error)?.message}`);
  }
  const mapped = code ? ERRNO[code] : undefined;
  if (mapped) return new FsError(mapped, `${what}: ${code}`);
  log.error({ err: e, what }, 'unmapped local error collapsed to IO');
  return new FsError('IO', `${what}: ${(e as Error)?.message ?? String(e)}`);
}

/** A Node-style error for an errno a native job reported per name (statNames' list). */
export function errnoError(errno: number, syscall: string, name: string): NodeJS.ErrnoException {
  const code = Object.entries(constants.errno).find(([, v]) => v === errno)?.[0] ?? 'EIO';
  return Object.assign(new Error(`${code}: ${syscall} '${name}'`), { code, errno: -errno, syscall, path: name });
}
