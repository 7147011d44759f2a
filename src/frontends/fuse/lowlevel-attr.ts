import { FType } from '../../nfs3/constants.js';
import type { Fattr3, FsStat, NfsTime, Sattr3, SetTime } from '../../nfs3/types.js';
import type { LlAttr, LlStatfs } from '../../native/fuse-ll.js';

/** The kernel's FATTR_* bits of a SETATTR (fuse_lowlevel.h FUSE_SET_ATTR_*). */
export const SET_MODE = 1 << 0;
export const SET_UID = 1 << 1;
export const SET_GID = 1 << 2;
export const SET_SIZE = 1 << 3;
export const SET_ATIME = 1 << 4;
export const SET_MTIME = 1 << 5;
export const SET_ATIME_NOW = 1 << 7;
export const SET_MTIME_NOW = 1 << 8;

const IFMT_OF: Record<FType, number> = {
  [FType.REG]: 0o100000,
  [FType.DIR]: 0o040000,
  [FType.LNK]: 0o120000,
  [FType.CHR]: 0o020000,
  [FType.BLK]: 0o060000,
  [FType.FIFO]: 0o010000,
  [FType.SOCK]: 0o140000,
};

export const typeBits = (t: FType): number => IFMT_OF[t] ?? 0o100000;

const NS = 1_000_000_000n;
export const toNs = (t: NfsTime): bigint => BigInt(t.sec) * NS + BigInt(t.nsec);

/** Nanoseconds since the epoch → NFS time (floor: -1 ns is 1969-12-31T23:59:59.999999999). */
export function fromNs(ns: bigint): NfsTime {
  let sec = ns / NS;
  let nsec = ns % NS;
  if (nsec < 0n) {
    nsec += NS;
    sec -= 1n;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

/** glibc's dev_t encoding (gnu_dev_makedev), 64 bits. */
export const makedev = (major: number, minor: number): number =>
  Number((BigInt(major & 0xfffff000) << 32n) | (BigInt(major & 0xfff) << 8n) | (BigInt(minor & 0xffffff00) << 12n) | BigInt(minor & 0xff));

/** NFSv3 attributes → stat as the kernel gets it: the full 64-bit fileid, nanosecond times. */
export function toLlAttr(a: Fattr3, blksize: number): LlAttr {
  return {
    ino: a.fileid,
    mode: typeBits(a.type) | (a.mode & 0o7777),
    nlink: a.nlink,
    uid: a.uid,
    gid: a.gid,
    rdev: makedev(a.rdev.major, a.rdev.minor),
    size: a.size,
    // st_blocks is in 512-byte units whatever the block size: sparse files show what they use.
    blocks: Math.ceil(a.used / 512),
    blksize,
    atimeNs: toNs(a.atime),
    mtimeNs: toNs(a.mtime),
    ctimeNs: toNs(a.ctime),
  };
}

/**
 * A kernel SETATTR → sattr3. Each time is left alone (UTIME_OMIT: bit not
 * set), set to the server's clock (UTIME_NOW), or set to the exact
 * nanosecond; so `touch -m` changes the mtime alone.
 */
export function toSattr(toSet: number, r: { mode?: number; uid2?: number; gid2?: number; size?: number; atimeNs?: bigint; mtimeNs?: bigint }): Sattr3 {
  const s: Sattr3 = {};
  if (toSet & SET_MODE) s.mode = (r.mode ?? 0) & 0o7777;
  if (toSet & SET_UID) s.uid = r.uid2;
  if (toSet & SET_GID) s.gid = r.gid2;
  if (toSet & SET_SIZE) s.size = r.size;
  const time = (now: number, set: number, ns: bigint | undefined): SetTime | undefined =>
    toSet & now ? 'server' : toSet & set ? fromNs(ns ?? 0n) : undefined;
  const at = time(SET_ATIME_NOW, SET_ATIME, r.atimeNs);
  const mt = time(SET_MTIME_NOW, SET_MTIME, r.mtimeNs);
  if (at !== undefined) s.atime = at;
  if (mt !== undefined) s.mtime = mt;
  return s;
}

/** FSSTAT → statvfs, 64-bit counts in 4 KiB blocks. */
export function toLlStatfs(s: FsStat, nameMax: number): LlStatfs {
  const bsize = 4096;
  const blocks = (n: number) => Math.floor(n / bsize);
  return {
    bsize,
    frsize: bsize,
    blocks: blocks(s.tbytes),
    bfree: blocks(s.fbytes),
    bavail: blocks(s.abytes),
    files: s.tfiles,
    ffree: s.ffiles,
    favail: s.afiles,
    namemax: nameMax,
  };
}
