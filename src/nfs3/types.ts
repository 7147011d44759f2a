import type { FType, Nfs3Status, StableHow } from './constants.js';

/** NFSv3 data types (RFC 1813 §2.5) as plain objects. */
export interface NfsTime {
  sec: number;
  nsec: number;
}

export interface Fattr3 {
  type: FType;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  used: number;
  rdev: { major: number; minor: number };
  fsid: bigint;
  fileid: bigint;
  atime: NfsTime;
  mtime: NfsTime;
  ctime: NfsTime;
}

export interface WccAttr {
  size: number;
  mtime: NfsTime;
  ctime: NfsTime;
}

/** Weak cache consistency data: attributes before and after an operation. */
export interface WccData {
  before?: WccAttr;
  after?: Fattr3;
}

export type SetTime = 'server' | NfsTime;

/** sattr3: only the fields present are set. */
export interface Sattr3 {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: SetTime;
  mtime?: SetTime;
}

export type CreateHow =
  | { mode: 'unchecked' | 'guarded'; attrs: Sattr3 }
  | { mode: 'exclusive'; verf: Buffer };

export interface DirEntry {
  fileid: bigint;
  name: string;
  cookie: bigint;
}

export interface DirEntryPlus extends DirEntry {
  attr?: Fattr3;
  fh?: Buffer;
}

export interface FsStat {
  attr?: Fattr3;
  tbytes: number;
  fbytes: number;
  abytes: number;
  tfiles: number;
  ffiles: number;
  afiles: number;
  invarsec: number;
}

export interface FsInfo {
  attr?: Fattr3;
  rtmax: number;
  rtpref: number;
  rtmult: number;
  wtmax: number;
  wtpref: number;
  wtmult: number;
  dtpref: number;
  maxfilesize: number;
  timeDelta: NfsTime;
  properties: number;
}

export interface PathConf {
  attr?: Fattr3;
  linkmax: number;
  nameMax: number;
  noTrunc: boolean;
  chownRestricted: boolean;
  caseInsensitive: boolean;
  casePreserving: boolean;
}

export interface DirOpArgs {
  dir: Buffer;
  name: string;
}

/** Results of namespace-creating operations (CREATE, MKDIR, SYMLINK, MKNOD). */
export interface NewObject {
  fh?: Buffer;
  attr?: Fattr3;
  dirWcc: WccData;
}

export interface ReadResult {
  attr?: Fattr3;
  count: number;
  eof: boolean;
  data: Buffer;
}

export interface WriteResult {
  wcc: WccData;
  count: number;
  committed: StableHow;
  verf: Buffer;
}

export type MknodType =
  | { type: FType.CHR | FType.BLK; attrs: Sattr3; rdev: { major: number; minor: number } }
  | { type: FType.SOCK | FType.FIFO; attrs: Sattr3 }
  | { type: FType.REG | FType.DIR | FType.LNK };

/**
 * A procedure's result on the wire: OK with its resok body, or a status
 * with the failure body (which still carries attributes / wcc data).
 */
export type Res<Ok, Fail = {}> = ({ status: Nfs3Status.OK } & Ok) | ({ status: Exclude<Nfs3Status, Nfs3Status.OK> } & Fail);
