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
