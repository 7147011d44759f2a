import type { FsErrorCode } from '../backend/errors.js';
import { MountStat } from './codec.js';

/** Backend error → mountstat3 (server side); anything else is MNT3ERR_IO. */
export const MOUNT_STATUS_OF: Partial<Record<FsErrorCode, MountStat>> = {
  PERM: MountStat.PERM,
  NOENT: MountStat.NOENT,
  IO: MountStat.IO,
  ACCES: MountStat.ACCES,
  NOTDIR: MountStat.NOTDIR,
  INVAL: MountStat.INVAL,
  NAMETOOLONG: MountStat.NAMETOOLONG,
  NOTSUPP: MountStat.NOTSUPP,
  SERVERFAULT: MountStat.SERVERFAULT,
  STALE: MountStat.NOENT,
};

const CODE_OF = new Map<number, FsErrorCode>(
  (Object.entries(MOUNT_STATUS_OF) as Array<[FsErrorCode, MountStat]>).filter(([k]) => k !== 'STALE').map(([k, v]) => [v, k]),
);

/** mountstat3 → backend error (client side). */
export function codeOfMountStatus(s: number): FsErrorCode {
  return CODE_OF.get(s) ?? 'IO';
}

const NAMES: Record<number, string> = {
  0: 'MNT3_OK',
  1: 'MNT3ERR_PERM',
  2: 'MNT3ERR_NOENT',
  5: 'MNT3ERR_IO',
  13: 'MNT3ERR_ACCES',
  20: 'MNT3ERR_NOTDIR',
  22: 'MNT3ERR_INVAL',
  63: 'MNT3ERR_NAMETOOLONG',
  10004: 'MNT3ERR_NOTSUPP',
  10006: 'MNT3ERR_SERVERFAULT',
};

const MEANING: Record<number, string> = {
  1: 'not owner',
  2: 'no such export or directory',
  5: 'I/O error on the server',
  13: 'not allowed',
  20: 'not a directory',
  22: 'invalid argument',
  63: 'path too long',
  10004: 'operation not supported',
  10006: 'server fault',
};

/** RFC 1813 name of a mountstat3 ("MNT3ERR_ACCES"; unknown values as "mountstat3 N"). */
export function mountStatusName(s: number): string {
  return NAMES[s] ?? `mountstat3 ${s}`;
}

/** The message for a refused MNT: "MNT3ERR_ACCES: export /x not allowed". */
export function mountRefusal(s: number, path: string): string {
  return `${mountStatusName(s)}: export ${path} ${MEANING[s] ?? 'refused'}`;
}
