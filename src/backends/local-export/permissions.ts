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
 * Permission checks done in TypeScript. A root server has the kernel decide
 * most of them, as the caller (src/native); these remain for what the
 * kernel cannot see (NFS's owner-may-always-write rule for open files,
 * lookups answered from the attribute cache) and for a server that is not
 * root and so cannot act as anyone else.
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
  return accessFromBits(permBits(cred, a), a.type, mask, readOnly);
}

/** ACCESS3 bits from rwx (R 4, W 2, X 1): computed here, or asked of the kernel as the caller. */
export function accessFromBits(bits: number, type: FType, mask: number, readOnly: boolean): number {
  let out = 0;
  if (bits & R) out |= ACCESS3_READ;
  if (type === FType.DIR) {
    if (bits & X) out |= ACCESS3_LOOKUP;
    if (bits & W && !readOnly) out |= ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;
  } else {
    if (bits & W && !readOnly) out |= ACCESS3_MODIFY | ACCESS3_EXTEND;
    if (bits & X) out |= ACCESS3_EXECUTE;
  }
  return out & mask;
}
