import type { BigIntStats } from 'node:fs';
import { FType } from '../../nfs3/constants.js';
import type { Fattr3, NfsTime, WccAttr } from '../../nfs3/types.js';
import type { Statx } from '../../native/native.js';

/** What the export reads of a stat result: node:fs's BigIntStats, or a statx from the native layer (StatxStats). */
export type LocalStat = Pick<
  BigIntStats,
  | 'ino'
  | 'mode'
  | 'nlink'
  | 'uid'
  | 'gid'
  | 'size'
  | 'blocks'
  | 'rdev'
  | 'atimeNs'
  | 'mtimeNs'
  | 'ctimeNs'
  | 'birthtimeNs'
  | 'isFile'
  | 'isDirectory'
  | 'isSymbolicLink'
  | 'isCharacterDevice'
  | 'isBlockDevice'
  | 'isSocket'
  | 'isFIFO'
>;

const S_IFMT = 0o170000n;

/** A statx result (native layer) read like node:fs's BigIntStats, so both share one attribute cache. */
export class StatxStats implements LocalStat {
  readonly ino: bigint;
  readonly mode: bigint;
  readonly nlink: bigint;
  readonly uid: bigint;
  readonly gid: bigint;
  readonly size: bigint;
  readonly blocks: bigint;
  readonly rdev: bigint;
  readonly atimeNs: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  readonly birthtimeNs: bigint;

  constructor(x: Statx) {
    this.ino = x.ino;
    this.mode = BigInt(x.mode);
    this.nlink = BigInt(x.nlink);
    this.uid = BigInt(x.uid);
    this.gid = BigInt(x.gid);
    this.size = x.size;
    this.blocks = x.blocks;
    // glibc's makedev(), as libuv builds st_rdev from statx.
    const ma = BigInt(x.rdevMajor);
    const mi = BigInt(x.rdevMinor);
    this.rdev = ((ma & 0xfffn) << 8n) | ((ma & 0xfffff000n) << 32n) | (mi & 0xffn) | ((mi & 0xffffff00n) << 12n);
    this.atimeNs = x.atimeNs;
    this.mtimeNs = x.mtimeNs;
    this.ctimeNs = x.ctimeNs;
    this.birthtimeNs = x.btimeNs;
  }

  private is(t: number): boolean {
    return (this.mode & S_IFMT) === BigInt(t);
  }
  isFile(): boolean {
    return this.is(0o100000);
  }
  isDirectory(): boolean {
    return this.is(0o040000);
  }
  isSymbolicLink(): boolean {
    return this.is(0o120000);
  }
  isCharacterDevice(): boolean {
    return this.is(0o020000);
  }
  isBlockDevice(): boolean {
    return this.is(0o060000);
  }
  isSocket(): boolean {
    return this.is(0o140000);
  }
  isFIFO(): boolean {
    return this.is(0o010000);
  }
}

const NS = 1_000_000_000n;

export function nsToTime(ns: bigint): NfsTime {
  if (ns < 0n) ns = 0n;
  return { sec: Number(ns / NS) >>> 0, nsec: Number(ns % NS) };
}

export function fileType(st: LocalStat): FType {
  if (st.isFile()) return FType.REG;
  if (st.isDirectory()) return FType.DIR;
  if (st.isSymbolicLink()) return FType.LNK;
  if (st.isCharacterDevice()) return FType.CHR;
  if (st.isBlockDevice()) return FType.BLK;
  if (st.isSocket()) return FType.SOCK;
  return FType.FIFO;
}

/** lstat (bigint) → fattr3. `fsid` is the export's, so one export looks like one file system. */
export function toFattr(st: LocalStat, fsid: bigint): Fattr3 {
  const rdev = Number(st.rdev);
  return {
    type: fileType(st),
    mode: Number(st.mode & 0o7777n),
    nlink: Number(st.nlink),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    used: Number(st.blocks) * 512,
    rdev: { major: (rdev >>> 8) & 0xfff, minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00) },
    fsid,
    fileid: st.ino,
    atime: nsToTime(st.atimeNs),
    mtime: nsToTime(st.mtimeNs),
    ctime: nsToTime(st.ctimeNs),
  };
}

export function toWccAttr(st: LocalStat): WccAttr {
  return { size: Number(st.size), mtime: nsToTime(st.mtimeNs), ctime: nsToTime(st.ctimeNs) };
}
