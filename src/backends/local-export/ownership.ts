import type { Credentials } from '../../rpc/types.js';
import type { Fattr3, Sattr3 } from '../../nfs3/types.js';
import { FType } from '../../nfs3/constants.js';
import { FsError } from '../../backend/errors.js';
import { inGroup, permBits, R, W } from './permissions.js';

/**
 * Owners, groups and set-ID bits: what the Linux kernel would do if the
 * caller (after identity mapping and squashing) made the system call itself.
 * The server runs as root and cannot switch identity per request (issue 17
 * moves this into per-thread credentials), so every procedure asks here
 * before it acts and applies exactly what it is told. Pure functions, no I/O.
 *
 * Checked against Linux 6.18 on ext4 as uid 2001 (setpriv); the table is
 * test/security/owners-expected.ts, checked against the running kernel by
 * owners-kernel.test.ts:
 *  - new objects belong to the caller's fsuid; group = the caller's fsgid, or
 *    the directory's group if the directory is setgid (new subdirectories of
 *    a setgid directory are setgid too);
 *  - mkdir(2) ignores S_ISUID/S_ISGID in the requested mode;
 *  - a new non-directory loses S_ISGID when it has S_IXGRP and the caller is
 *    not in its group (only possible below a setgid directory);
 *  - chown: only root gives an object away; only the owner (or root) changes
 *    the group, and only to one of its groups or to the current group; a
 *    non-owner's no-op chown is EPERM too;
 *  - chown of a non-directory clears S_ISUID, and S_ISGID when S_IXGRP is
 *    set — whoever calls, root included; for a caller not in the file's group
 *    S_ISGID goes as well;
 *  - chmod: owner or root; a non-root chmod drops S_ISGID silently when the
 *    caller is not in the (new) group; S_ISVTX on a file is allowed;
 *  - write or truncate of a regular file by a non-root caller clears
 *    S_ISUID, and S_ISGID when S_IXGRP is set or the caller is not in the
 *    file's group;
 *  - times: explicit times need owner or root; "now" needs write permission;
 *  - link: a non-owner may hard-link only a regular file it may read and
 *    write that is neither set-user-ID nor group-executable setgid
 *    (fs.protected_hardlinks = 1, every distribution's default).
 * Like knfsd (nfsd_create_setattr), the uid and gid a non-root caller puts in
 * CREATE/MKDIR/SYMLINK/MKNOD attributes are ignored, not refused: a squashed
 * root client that sends uid 0 on create still creates its files. Root's are
 * applied as a chown after the create, so they clear set-ID bits too.
 */
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_ISVTX = 0o1000;
export const S_IXGRP = 0o0010;

export function isRoot(cred: Credentials): boolean {
  return cred.uid === 0;
}

export interface NewOwnership {
  uid: number;
  gid: number;
  /** The new object's mode (symlinks: ignored). */
  mode: number;
}

/** Owner, group and mode of an object `cred` creates in `dir` asking for `attrs` (default mode `defMode`). */
export function newObject(cred: Credentials, dir: Fattr3, type: FType, attrs: Sattr3 | undefined, defMode: number): NewOwnership {
  const setgidDir = (dir.mode & S_ISGID) !== 0;
  let uid = cred.uid;
  let gid = setgidDir ? dir.gid : cred.gid;
  let mode = (attrs?.mode ?? defMode) & 0o7777;
  if (type === FType.DIR) {
    mode = (mode & 0o1777) | (setgidDir ? S_ISGID : 0);
  } else if ((mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP) && !isRoot(cred) && !inGroup(cred, gid)) {
    mode &= ~S_ISGID;
  }
  if (isRoot(cred) && (attrs?.uid !== undefined || attrs?.gid !== undefined)) {
    // Root may create objects for others. knfsd applies the ids as a chown after creating,
    // which takes the set-ID bits of a non-directory away like any chown.
    uid = attrs.uid ?? uid;
    gid = attrs.gid ?? gid;
    if (type !== FType.DIR && type !== FType.LNK) {
      mode &= ~S_ISUID;
      if (mode & S_IXGRP) mode &= ~S_ISGID;
    }
  }
  return { uid, gid, mode };
}

export interface SetattrPlan {
  /** lchown to these ids (both given, current values where unchanged). */
  chown?: { uid: number; gid: number };
  /** The mode to set afterwards (undefined: leave it as chown left it). */
  mode?: number;
}

/**
 * Check a SETATTR's owner, group and mode change for `cred` on object `a`
 * (EPERM as the kernel would) and say what to apply. Size and times are
 * checked by the caller (they need the permission bits).
 */
export function planSetattr(cred: Credentials, a: Fattr3, attrs: Sattr3): SetattrPlan {
  const root = isRoot(cred);
  const owner = root || cred.uid === a.uid;
  const plan: SetattrPlan = {};
  const chown = attrs.uid !== undefined || attrs.gid !== undefined;
  if (attrs.uid !== undefined && !root && (cred.uid !== a.uid || attrs.uid !== a.uid)) {
    throw new FsError('PERM', 'only root may change the owner');
  }
  if (attrs.gid !== undefined && !root && !(cred.uid === a.uid && (attrs.gid === a.gid || inGroup(cred, attrs.gid)))) {
    throw new FsError('PERM', 'only the owner may change the group, and only to one of its groups');
  }
  // knfsd ignores mode changes on symlinks (chmod would follow the link).
  const wantMode = attrs.mode !== undefined && a.type !== FType.LNK;
  if (wantMode && !owner) throw new FsError('PERM', 'only the owner may change the mode');
  const gid = attrs.gid ?? a.gid;
  if (chown) plan.chown = { uid: attrs.uid ?? a.uid, gid };
  let mode: number | undefined;
  if (wantMode) {
    mode = attrs.mode! & 0o7777;
    if (!root && !inGroup(cred, gid)) mode &= ~S_ISGID;
  }
  if (chown && a.type !== FType.DIR && a.type !== FType.LNK) {
    // A chown takes the set-ID bits away (from the new mode when one is set in the same call, as knfsd does).
    const m = mode ?? a.mode;
    let kill = S_ISUID;
    if (m & S_IXGRP || (!root && !inGroup(cred, a.gid))) kill |= S_ISGID;
    if (m & kill) mode = m & ~kill;
  }
  if (mode !== undefined) plan.mode = mode;
  return plan;
}

/** protected_hardlinks (may_linkat): EPERM unless the caller owns `a` or it is a safe source. */
export function requireHardlinkSource(cred: Credentials, a: Fattr3): void {
  if (isRoot(cred) || cred.uid === a.uid) return;
  const safe =
    a.type === FType.REG &&
    (a.mode & S_ISUID) === 0 &&
    (a.mode & (S_ISGID | S_IXGRP)) !== (S_ISGID | S_IXGRP) &&
    (permBits(cred, a) & (R | W)) === (R | W);
  if (!safe) throw new FsError('PERM', 'link: may not hard-link a file of another user that is set-ID, special or not readable and writable');
}

/**
 * Root squash as knfsd does it (nfsd_setuser): `root` maps uid 0 to the
 * anonymous uid, gid 0 to the anonymous gid — whatever the uid — and group 0
 * among the supplementary groups to the anonymous gid; `all` makes everyone
 * the anonymous account with no supplementary groups. It stays with the
 * local export (its `squash` option): the proxy server replaces identities
 * through the identity-map wrapper instead and never squashes.
 */
export function squash(cred: Credentials, how: 'none' | 'root' | 'all', anonUid: number, anonGid: number): Credentials {
  if (how === 'all') return { ...cred, uid: anonUid, gid: anonGid, gids: [] };
  if (how === 'root') {
    if (cred.uid !== 0 && cred.gid !== 0 && !cred.gids.includes(0)) return cred;
    return {
      ...cred,
      uid: cred.uid === 0 ? anonUid : cred.uid,
      gid: cred.gid === 0 ? anonGid : cred.gid,
      gids: cred.gids.map((g) => (g === 0 ? anonGid : g)),
    };
  }
  return cred;
}
