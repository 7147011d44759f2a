import { XdrError, type XdrReader, type XdrWriter } from '../xdr/index.js';
import {
  CreateMode,
  FType,
  MAX_NAME,
  MAX_PATH,
  NFS3_FHSIZE,
  Nfs3Status,
  type StableHow,
  TimeHow,
} from './constants.js';
import type {
  CreateHow,
  DirEntry,
  DirEntryPlus,
  Fattr3,
  FsInfo,
  FsStat,
  MknodType,
  NewObject,
  NfsTime,
  PathConf,
  ReadResult,
  Res,
  Sattr3,
  WccAttr,
  WccData,
  WriteResult,
} from './types.js';

/**
 * NFSv3 XDR codecs (RFC 1813), both directions from one place: every type
 * has an encoder and a decoder side by side, so the server (decode args,
 * encode results) and the client (encode args, decode results) share them.
 * Hand-written: no maintained XDR code generator for TypeScript exists that
 * we would trust with zero-copy READ/WRITE payloads.
 */
export interface Codec<T> {
  enc(w: XdrWriter, v: T): void;
  dec(r: XdrReader): T;
}

/** Largest READ/WRITE payload accepted on the wire (matches the server's FSINFO rtmax/wtmax). */
export const MAX_DATA = 1 << 20;
/** Bound on entries decoded from one READDIR(PLUS) reply. */
const MAX_DIR_ENTRIES = 65536;

// ---------- basic types ----------

export const fh3: Codec<Buffer> = {
  enc: (w, v) => void w.opaque(v),
  dec: (r) => r.opaque(NFS3_FHSIZE),
};

export const filename3: Codec<string> = {
  enc: (w, v) => void w.string(v),
  dec: (r) => r.string(MAX_NAME),
};

export const nfspath3: Codec<string> = {
  enc: (w, v) => void w.string(v),
  dec: (r) => r.string(MAX_PATH),
};

export const nfstime3: Codec<NfsTime> = {
  enc: (w, v) => void w.u32(v.sec).u32(v.nsec),
  dec: (r) => ({ sec: r.u32(), nsec: r.u32() }),
};

export const fattr3: Codec<Fattr3> = {
  enc(w, a) {
    w.u32(a.type).u32(a.mode).u32(a.nlink).u32(a.uid).u32(a.gid);
    w.u64(a.size).u64(a.used).u32(a.rdev.major).u32(a.rdev.minor);
    w.u64big(a.fsid).u64big(a.fileid);
    nfstime3.enc(w, a.atime);
    nfstime3.enc(w, a.mtime);
    nfstime3.enc(w, a.ctime);
  },
  dec(r) {
    const type = r.u32() as FType;
    const mode = r.u32();
    const nlink = r.u32();
    const uid = r.u32();
    const gid = r.u32();
    const size = r.u64();
    const used = r.u64();
    const rdev = { major: r.u32(), minor: r.u32() };
    const fsid = r.u64big();
    const fileid = r.u64big();
    return { type, mode, nlink, uid, gid, size, used, rdev, fsid, fileid, atime: nfstime3.dec(r), mtime: nfstime3.dec(r), ctime: nfstime3.dec(r) };
  },
};

export const postOpAttr: Codec<Fattr3 | undefined> = {
  enc: (w, v) => void w.optional(v, fattr3.enc),
  dec: (r) => r.optional(fattr3.dec),
};

export const postOpFh: Codec<Buffer | undefined> = {
  enc: (w, v) => void w.optional(v, fh3.enc),
  dec: (r) => r.optional(fh3.dec),
};

export const wccAttr: Codec<WccAttr> = {
  enc: (w, v) => {
    w.u64(v.size);
    nfstime3.enc(w, v.mtime);
    nfstime3.enc(w, v.ctime);
  },
  dec: (r) => ({ size: r.u64(), mtime: nfstime3.dec(r), ctime: nfstime3.dec(r) }),
};

export const wccData: Codec<WccData> = {
  enc: (w, v) => {
    w.optional(v.before, wccAttr.enc);
    w.optional(v.after, fattr3.enc);
  },
  dec: (r) => ({ before: r.optional(wccAttr.dec), after: r.optional(fattr3.dec) }),
};

function setTime(w: XdrWriter, t: Sattr3['atime']): void {
  if (t === undefined) w.u32(TimeHow.DONT_CHANGE);
  else if (t === 'server') w.u32(TimeHow.SET_TO_SERVER_TIME);
  else {
    w.u32(TimeHow.SET_TO_CLIENT_TIME);
    nfstime3.enc(w, t);
  }
}

function getTime(r: XdrReader): Sattr3['atime'] {
  const how = r.u32();
  if (how === TimeHow.DONT_CHANGE) return undefined;
  if (how === TimeHow.SET_TO_SERVER_TIME) return 'server';
  if (how === TimeHow.SET_TO_CLIENT_TIME) return nfstime3.dec(r);
  throw new XdrError(`bad time_how ${how}`);
}

export const sattr3: Codec<Sattr3> = {
  enc(w, s) {
    w.optional(s.mode, (x, v) => x.u32(v));
    w.optional(s.uid, (x, v) => x.u32(v));
    w.optional(s.gid, (x, v) => x.u32(v));
    w.optional(s.size, (x, v) => x.u64(v));
    setTime(w, s.atime);
    setTime(w, s.mtime);
  },
  dec(r) {
    const s: Sattr3 = {};
    const mode = r.optional((x) => x.u32());
    const uid = r.optional((x) => x.u32());
    const gid = r.optional((x) => x.u32());
    const size = r.optional((x) => x.u64());
    const atime = getTime(r);
    const mtime = getTime(r);
    if (mode !== undefined) s.mode = mode;
    if (uid !== undefined) s.uid = uid;
    if (gid !== undefined) s.gid = gid;
    if (size !== undefined) s.size = size;
    if (atime !== undefined) s.atime = atime;
    if (mtime !== undefined) s.mtime = mtime;
    return s;
  },
};

export const diropargs3: Codec<{ dir: Buffer; name: string }> = {
  enc: (w, v) => {
    fh3.enc(w, v.dir);
    filename3.enc(w, v.name);
  },
  dec: (r) => ({ dir: fh3.dec(r), name: filename3.dec(r) }),
};

const verf8: Codec<Buffer> = {
  enc: (w, v) => void w.fixedOpaque(v.length === 8 ? v : Buffer.concat([v, Buffer.alloc(8)]).subarray(0, 8)),
  dec: (r) => Buffer.from(r.fixedOpaque(8)),
};

/** Build a result codec: status, then the resok or resfail body. */
function result<Ok, Fail>(ok: Codec<Ok>, fail: Codec<Fail>): Codec<Res<Ok, Fail>> {
  return {
    enc(w, v) {
      w.u32(v.status);
      if (v.status === Nfs3Status.OK) ok.enc(w, v as Ok);
      else fail.enc(w, v as unknown as Fail);
    },
    dec(r) {
      const status = r.u32() as Nfs3Status;
      if (status === Nfs3Status.OK) return { status, ...ok.dec(r) } as Res<Ok, Fail>;
      return { status, ...fail.dec(r) } as Res<Ok, Fail>;
    },
  };
}

function fields<T>(spec: { [K in keyof T]-?: Codec<T[K]> }): Codec<T> {
  const keys = Object.keys(spec) as Array<keyof T>;
  return {
    enc(w, v) {
      for (const k of keys) spec[k].enc(w, v[k]);
    },
    dec(r) {
      const o = {} as T;
      for (const k of keys) o[k] = spec[k].dec(r);
      return o;
    },
  };
}

const EMPTY: Codec<{}> = { enc: () => undefined, dec: () => ({}) };
const u32: Codec<number> = { enc: (w, v) => void w.u32(v), dec: (r) => r.u32() };
const u64: Codec<number> = { enc: (w, v) => void w.u64(v), dec: (r) => r.u64() };
const bool: Codec<boolean> = { enc: (w, v) => void w.bool(v), dec: (r) => r.bool() };
const attrOnly = fields<{ attr?: Fattr3 }>({ attr: postOpAttr });
const wccOnly = fields<{ wcc: WccData }>({ wcc: wccData });

// ---------- procedures: arguments ----------

export const GETATTR = {
  args: fields<{ fh: Buffer }>({ fh: fh3 }),
  res: result(fields<{ attr: Fattr3 }>({ attr: fattr3 }), EMPTY),
};

export const SETATTR = {
  args: fields<{ fh: Buffer; attrs: Sattr3; guard?: NfsTime }>({
    fh: fh3,
    attrs: sattr3,
    guard: { enc: (w, v) => void w.optional(v, nfstime3.enc), dec: (r) => r.optional(nfstime3.dec) },
  }),
  res: result(wccOnly, wccOnly),
};

export const LOOKUP = {
  args: diropargs3,
  res: result(
    fields<{ fh: Buffer; attr?: Fattr3; dirAttr?: Fattr3 }>({ fh: fh3, attr: postOpAttr, dirAttr: postOpAttr }),
    fields<{ dirAttr?: Fattr3 }>({ dirAttr: postOpAttr }),
  ),
};

export const ACCESS = {
  args: fields<{ fh: Buffer; access: number }>({ fh: fh3, access: u32 }),
  res: result(fields<{ attr?: Fattr3; access: number }>({ attr: postOpAttr, access: u32 }), attrOnly),
};

export const READLINK = {
  args: fields<{ fh: Buffer }>({ fh: fh3 }),
  res: result(fields<{ attr?: Fattr3; path: string }>({ attr: postOpAttr, path: nfspath3 }), attrOnly),
};

export const READ = {
  args: fields<{ fh: Buffer; offset: number; count: number }>({ fh: fh3, offset: u64, count: u32 }),
  res: result<ReadResult, { attr?: Fattr3 }>(
    {
      enc(w, v) {
        postOpAttr.enc(w, v.attr);
        w.u32(v.data.length).bool(v.eof).opaque(v.data);
      },
      dec(r) {
        const attr = postOpAttr.dec(r);
        const count = r.u32();
        const eof = r.bool();
        const data = r.opaque(MAX_DATA);
        return { attr, count, eof, data };
      },
    },
    attrOnly,
  ),
};

export const WRITE = {
  args: {
    enc(w: XdrWriter, v: { fh: Buffer; offset: number; stable: StableHow; data: Buffer }) {
      fh3.enc(w, v.fh);
      w.u64(v.offset).u32(v.data.length).u32(v.stable).opaque(v.data);
    },
    dec(r: XdrReader) {
      const fh = fh3.dec(r);
      const offset = r.u64();
      const count = r.u32();
      const stable = r.u32() as StableHow;
      if (stable > 2) throw new XdrError(`bad stable_how ${stable}`);
      const data = r.opaque(MAX_DATA);
      if (count > data.length) throw new XdrError('WRITE count exceeds data');
      return { fh, offset, stable, data: data.subarray(0, count) };
    },
  } satisfies Codec<{ fh: Buffer; offset: number; stable: StableHow; data: Buffer }>,
  res: result<Omit<WriteResult, never>, { wcc: WccData }>(
    {
      enc(w, v) {
        wccData.enc(w, v.wcc);
        w.u32(v.count).u32(v.committed);
        verf8.enc(w, v.verf);
      },
      dec(r) {
        return { wcc: wccData.dec(r), count: r.u32(), committed: r.u32() as StableHow, verf: verf8.dec(r) };
      },
    },
    wccOnly,
  ),
};

const createHow: Codec<CreateHow> = {
  enc(w, v) {
    if (v.mode === 'exclusive') {
      w.u32(CreateMode.EXCLUSIVE);
      verf8.enc(w, v.verf);
    } else {
      w.u32(v.mode === 'guarded' ? CreateMode.GUARDED : CreateMode.UNCHECKED);
      sattr3.enc(w, v.attrs);
    }
  },
  dec(r) {
    const m = r.u32();
    if (m === CreateMode.EXCLUSIVE) return { mode: 'exclusive', verf: verf8.dec(r) };
    if (m === CreateMode.UNCHECKED || m === CreateMode.GUARDED) return { mode: m === CreateMode.GUARDED ? 'guarded' : 'unchecked', attrs: sattr3.dec(r) };
    throw new XdrError(`bad createmode3 ${m}`);
  },
};

const newObject = fields<NewObject>({ fh: postOpFh, attr: postOpAttr, dirWcc: wccData });
const dirWccOnly = fields<{ dirWcc: WccData }>({ dirWcc: wccData });

export const CREATE = {
  args: fields<{ where: { dir: Buffer; name: string }; how: CreateHow }>({ where: diropargs3, how: createHow }),
  res: result(newObject, dirWccOnly),
};

export const MKDIR = {
  args: fields<{ where: { dir: Buffer; name: string }; attrs: Sattr3 }>({ where: diropargs3, attrs: sattr3 }),
  res: result(newObject, dirWccOnly),
};

export const SYMLINK = {
  args: fields<{ where: { dir: Buffer; name: string }; attrs: Sattr3; target: string }>({ where: diropargs3, attrs: sattr3, target: nfspath3 }),
  res: result(newObject, dirWccOnly),
};

const mknodType: Codec<MknodType> = {
  enc(w, v) {
    w.u32(v.type);
    if (v.type === FType.CHR || v.type === FType.BLK) {
      sattr3.enc(w, v.attrs);
      w.u32(v.rdev.major).u32(v.rdev.minor);
    } else if (v.type === FType.SOCK || v.type === FType.FIFO) sattr3.enc(w, v.attrs);
  },
  dec(r) {
    const type = r.u32();
    if (type === FType.CHR || type === FType.BLK) {
      const attrs = sattr3.dec(r);
      return { type, attrs, rdev: { major: r.u32(), minor: r.u32() } };
    }
    if (type === FType.SOCK || type === FType.FIFO) return { type, attrs: sattr3.dec(r) };
    if (type === FType.REG || type === FType.DIR || type === FType.LNK) return { type };
    throw new XdrError(`bad ftype3 ${type}`);
  },
};

export const MKNOD = {
  args: fields<{ where: { dir: Buffer; name: string }; what: MknodType }>({ where: diropargs3, what: mknodType }),
  res: result(newObject, dirWccOnly),
};

export const REMOVE = { args: diropargs3, res: result(dirWccOnly, dirWccOnly) };
export const RMDIR = REMOVE;

const renameWcc = fields<{ fromWcc: WccData; toWcc: WccData }>({ fromWcc: wccData, toWcc: wccData });
export const RENAME = {
  args: fields<{ from: { dir: Buffer; name: string }; to: { dir: Buffer; name: string } }>({ from: diropargs3, to: diropargs3 }),
  res: result(renameWcc, renameWcc),
};

const linkRes = fields<{ attr?: Fattr3; dirWcc: WccData }>({ attr: postOpAttr, dirWcc: wccData });
export const LINK = {
  args: fields<{ fh: Buffer; link: { dir: Buffer; name: string } }>({ fh: fh3, link: diropargs3 }),
  res: result(linkRes, linkRes),
};

const cookie: Codec<bigint> = { enc: (w, v) => void w.u64big(v), dec: (r) => r.u64big() };

export const READDIR = {
  args: fields<{ dir: Buffer; cookie: bigint; verf: Buffer; count: number }>({ dir: fh3, cookie, verf: verf8, count: u32 }),
  res: result<{ dirAttr?: Fattr3; verf: Buffer; entries: DirEntry[]; eof: boolean }, { dirAttr?: Fattr3 }>(
    {
      enc(w, v) {
        postOpAttr.enc(w, v.dirAttr);
        verf8.enc(w, v.verf);
        w.list(v.entries, (x, e) => {
          x.u64big(e.fileid);
          filename3.enc(x, e.name);
          x.u64big(e.cookie);
        });
        w.bool(v.eof);
      },
      dec(r) {
        const dirAttr = postOpAttr.dec(r);
        const verf = verf8.dec(r);
        const entries = r.list(MAX_DIR_ENTRIES, (x) => ({ fileid: x.u64big(), name: filename3.dec(x), cookie: x.u64big() }));
        return { dirAttr, verf, entries, eof: r.bool() };
      },
    },
    fields<{ dirAttr?: Fattr3 }>({ dirAttr: postOpAttr }),
  ),
};

export const READDIRPLUS = {
  args: fields<{ dir: Buffer; cookie: bigint; verf: Buffer; dircount: number; maxcount: number }>({
    dir: fh3,
    cookie,
    verf: verf8,
    dircount: u32,
    maxcount: u32,
  }),
  res: result<{ dirAttr?: Fattr3; verf: Buffer; entries: DirEntryPlus[]; eof: boolean }, { dirAttr?: Fattr3 }>(
    {
      enc(w, v) {
        postOpAttr.enc(w, v.dirAttr);
        verf8.enc(w, v.verf);
        w.list(v.entries, (x, e) => {
          x.u64big(e.fileid);
          filename3.enc(x, e.name);
          x.u64big(e.cookie);
          postOpAttr.enc(x, e.attr);
          postOpFh.enc(x, e.fh);
        });
        w.bool(v.eof);
      },
      dec(r) {
        const dirAttr = postOpAttr.dec(r);
        const verf = verf8.dec(r);
        const entries = r.list(MAX_DIR_ENTRIES, (x) => ({
          fileid: x.u64big(),
          name: filename3.dec(x),
          cookie: x.u64big(),
          attr: postOpAttr.dec(x),
          fh: postOpFh.dec(x),
        }));
        return { dirAttr, verf, entries, eof: r.bool() };
      },
    },
    fields<{ dirAttr?: Fattr3 }>({ dirAttr: postOpAttr }),
  ),
};

/** Bytes one READDIR entry takes on the wire (for filling a reply to `count`). */
export function readdirEntrySize(name: string): number {
  const n = Buffer.byteLength(name);
  return 4 + 8 + 4 + n + ((4 - (n & 3)) & 3) + 8;
}
/** Bytes one READDIRPLUS entry takes with attributes and a handle of `fhLen` bytes. */
export function readdirplusEntrySize(name: string, fhLen: number): number {
  return readdirEntrySize(name) + 4 + 84 + 4 + 4 + fhLen + ((4 - (fhLen & 3)) & 3);
}

export const FSSTAT = {
  args: fields<{ fh: Buffer }>({ fh: fh3 }),
  res: result<FsStat, { attr?: Fattr3 }>(
    fields<FsStat>({ attr: postOpAttr, tbytes: u64, fbytes: u64, abytes: u64, tfiles: u64, ffiles: u64, afiles: u64, invarsec: u32 }),
    attrOnly,
  ),
};

export const FSINFO = {
  args: fields<{ fh: Buffer }>({ fh: fh3 }),
  res: result<FsInfo, { attr?: Fattr3 }>(
    fields<FsInfo>({
      attr: postOpAttr,
      rtmax: u32,
      rtpref: u32,
      rtmult: u32,
      wtmax: u32,
      wtpref: u32,
      wtmult: u32,
      dtpref: u32,
      maxfilesize: u64,
      timeDelta: nfstime3,
      properties: u32,
    }),
    attrOnly,
  ),
};

export const PATHCONF = {
  args: fields<{ fh: Buffer }>({ fh: fh3 }),
  res: result<PathConf, { attr?: Fattr3 }>(
    fields<PathConf>({
      attr: postOpAttr,
      linkmax: u32,
      nameMax: u32,
      noTrunc: bool,
      chownRestricted: bool,
      caseInsensitive: bool,
      casePreserving: bool,
    }),
    attrOnly,
  ),
};

export const COMMIT = {
  args: fields<{ fh: Buffer; offset: number; count: number }>({ fh: fh3, offset: u64, count: u32 }),
  res: result(fields<{ wcc: WccData; verf: Buffer }>({ wcc: wccData, verf: verf8 }), wccOnly),
};
