import type { Credentials } from '../../rpc/types.js';
import type { Fattr3 } from '../../nfs3/types.js';
import {
  ACCESS3_DELETE,
  ACCESS3_EXECUTE,
  ACCESS3_EXTEND,
  ACCESS3_LOOKUP,
  ACCESS3_MODIFY,
  ACCESS3_READ,
  FType,
} from '../../nfs3/constants.js';
import { FsError } from '../../backend/errors.js';

/**
 * Permission checks done by the server itself: it runs as one account
 * (usually root) and cannot switch identity per request, so it applies the
 * POSIX mode-bit rules for the caller's AUTH_SYS uid/gid before acting.
 */
export const R = 4;
export const W = 2;
export const X = 1;

export function inGroup(cred: Credentials, gid: number): boolean {
  return cred.gid === gid || cred.gids.includes(gid);
}

/** The rwx bits (0..7) the caller has on an object. Root gets everything but x on non-executables. */
export function permBits(cred: Credentials, a: Fattr3): number {
  if (cred.uid === 0) {
    const anyX = (a.mode & 0o111) !== 0 || a.type === FType.DIR;
    return R | W | (anyX ? X : 0);
  }
  if (cred.uid === a.uid) return (a.mode >> 6) & 7;
  if (inGroup(cred, a.gid)) return (a.mode >> 3) & 7;
  return a.mode & 7;
}

export function require(cred: Credentials, a: Fattr3, want: number, what: string): void {
  if ((permBits(cred, a) & want) !== want) throw new FsError('ACCES', `${what}: permission denied`);
}

/**
 * Data access on an open file: like nfsd, the owner may read and write a
 * file regardless of its mode bits, so a program that creates a file 0444
 * and then writes through its open descriptor keeps working.
 */
export function requireData(cred: Credentials, a: Fattr3, want: number, what: string): void {
  if (cred.uid === a.uid) return;
  require(cred, a, want, what);
}

/** Sticky directories: only the owner of the entry, of the directory, or root may remove or rename it. */
export function requireSticky(cred: Credentials, dir: Fattr3, obj: Fattr3, what: string): void {
  if ((dir.mode & 0o1000) === 0 || cred.uid === 0) return;
  if (cred.uid !== dir.uid && cred.uid !== obj.uid) throw new FsError('ACCES', `${what}: sticky directory`);
}

/** The ACCESS procedure's answer: which of the asked bits the caller has. */
export function accessMask(cred: Credentials, a: Fattr3, mask: number, readOnly: boolean): number {
  const bits = permBits(cred, a);
  let out = 0;
  if (bits & R) out |= ACCESS3_READ;
  if (a.type === FType.DIR) {
    if (bits & X) out |= ACCESS3_LOOKUP;
    if (bits & W && !readOnly) out |= ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;
  } else {
    if (bits & W && !readOnly) out |= ACCESS3_MODIFY | ACCESS3_EXTEND;
    if (bits & X) out |= ACCESS3_EXECUTE;
  }
  return out & mask;
}
