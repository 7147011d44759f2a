import { FType } from '../../nfs3/constants.js';
import type { Fattr3, FsStat, NfsTime, SetTime } from '../../nfs3/types.js';
import type { FuseStat, FuseStatfs } from './binding.js';

const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;

const IFMT_OF: Record<FType, number> = {
  [FType.REG]: S_IFREG,
  [FType.DIR]: S_IFDIR,
  [FType.LNK]: S_IFLNK,
  [FType.CHR]: S_IFCHR,
  [FType.BLK]: S_IFBLK,
  [FType.FIFO]: S_IFIFO,
  [FType.SOCK]: S_IFSOCK,
};

export const fileType = (mode: number): number => mode & S_IFMT;

/** The binding carries times as milliseconds (its stat array has no room for nanoseconds). */
const ms = (t: NfsTime): number => t.sec * 1000 + Math.floor(t.nsec / 1e6);

/** Linux dev_t from major/minor (the binding carries 32 bits). */
const makedev = (major: number, minor: number): number => (((major & 0xfff) << 8) | (minor & 0xff) | ((minor & 0xfff00) << 12)) >>> 0;

/**
 * fileid (64 bits) → st_ino (the binding carries 32): the halves folded
 * together so that distinct fileids on one export rarely meet; never 0.
 */
export function foldIno(fileid: bigint): number {
  const n = Number(fileid & 0xffffffffn) ^ Number((fileid >> 32n) & 0xffffffffn);
  return n >>> 0 || 1;
}

/** NFSv3 attributes → what stat(2) shows through the mount. */
export function toStat(a: Fattr3, blksize: number): FuseStat {
  return {
    mode: (IFMT_OF[a.type] ?? S_IFREG) | (a.mode & 0o7777),
    uid: a.uid,
    gid: a.gid,
    size: a.size,
    dev: 0,
    nlink: a.nlink,
    ino: foldIno(a.fileid),
    rdev: makedev(a.rdev.major, a.rdev.minor),
    blksize,
    // st_blocks is in 512-byte units whatever the block size: sparse files show what they use.
    blocks: Math.ceil(a.used / 512),
    atime: ms(a.atime),
    mtime: ms(a.mtime),
    ctime: ms(a.ctime),
  };
}

/**
 * FSSTAT → statvfs. The binding carries each count in 32 bits, so the block
 * size grows (from 4 KiB) until the total fits.
 */
export function toStatfs(s: FsStat, nameMax: number): FuseStatfs {
  let bsize = 4096;
  while (s.tbytes / bsize > 0xffffffff) bsize *= 2;
  const blocks = (n: number) => Math.min(0xffffffff, Math.floor(n / bsize));
  const files = (n: number) => Math.min(0xffffffff, n);
  return {
    bsize,
    frsize: bsize,
    blocks: blocks(s.tbytes),
    bfree: blocks(s.fbytes),
    bavail: blocks(s.abytes),
    files: files(s.tfiles),
    ffree: files(s.ffiles),
    favail: files(s.afiles),
    fsid: 0,
    flag: 0,
    namemax: nameMax,
  };
}

/**
 * utimens time (ms) → sattr3 time. libfuse 2 passes UTIME_NOW / UTIME_OMIT as
 * {tv_sec 0, tv_nsec 2^30-1 / 2^30-2}, which the binding turns into 1073 ms;
 * the two cannot be told apart there, and "now" is the safe reading of both
 * (libfuse only sends a special value when the caller asked for "now" on at
 * least one of the two times).
 */
export const UTIME_SPECIAL_MS = 1073;
export function setTimeOf(msSinceEpoch: number): SetTime {
  if (msSinceEpoch === UTIME_SPECIAL_MS) return 'server';
  const sec = Math.floor(msSinceEpoch / 1000);
  return { sec, nsec: (msSinceEpoch - sec * 1000) * 1e6 };
}
