import type { BigIntStats } from 'node:fs';
import { FType } from '../../nfs3/constants.js';
import type { Fattr3, NfsTime, WccAttr } from '../../nfs3/types.js';

const NS = 1_000_000_000n;

export function nsToTime(ns: bigint): NfsTime {
  if (ns < 0n) ns = 0n;
  return { sec: Number(ns / NS) >>> 0, nsec: Number(ns % NS) };
}

export function fileType(st: BigIntStats): FType {
  if (st.isFile()) return FType.REG;
  if (st.isDirectory()) return FType.DIR;
  if (st.isSymbolicLink()) return FType.LNK;
  if (st.isCharacterDevice()) return FType.CHR;
  if (st.isBlockDevice()) return FType.BLK;
  if (st.isSocket()) return FType.SOCK;
  return FType.FIFO;
}

/** lstat (bigint) → fattr3. `fsid` is the export's, so one export looks like one file system. */
export function toFattr(st: BigIntStats, fsid: bigint): Fattr3 {
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

export function toWccAttr(st: BigIntStats): WccAttr {
  return { size: Number(st.size), mtime: nsToTime(st.mtimeNs), ctime: nsToTime(st.ctimeNs) };
}
