import type { XdrReader, XdrWriter } from '../xdr/index.js';
import { HINTS, type MetaVersion, type TransferHint } from '../meta/format.js';

/**
 * The meta-data procedures of the GVFS extension program (v1):
 *
 *   GET_META(fh, offset, count)      → the file's meta-data bytes (format.ts), paged
 *   BULK_READ(fh, version, codec, ranges) → those byte ranges of that version, compressed
 *   SET_ORDER(fh, version, hint, order) → store a recorded prefetch order
 *
 * The meta-data files themselves are hidden from NFS (wrappers/metadata/hide.ts),
 * so they travel only through these calls, permission-checked as the
 * session's mapped account.
 */
export const enum MetaProc {
  GET_META = 4,
  BULK_READ = 5,
  SET_ORDER = 6,
}

export const enum MetaStatus {
  OK = 0,
  /** The file has no meta-data. */
  NONE = 1,
  /** The meta-data (or the BULK_READ version) names another version of the file. */
  STALE = 2,
  /** An NFS error (`nfsstat` says which): no access, no such file ... */
  NFSERR = 3,
  /** A request over the limits below. */
  TOOBIG = 4,
}

/** Raw bytes one BULK_READ may ask for (its reply stays under the 1 MiB + 64 KiB record limit even uncompressed). */
export const MAX_BULK = 1 << 20;
export const MAX_RANGES = 256;
export const MAX_META_PAGE = 1 << 20;
/** Longest prefetch order SET_ORDER accepts (a 12 GiB file in 64 KiB blocks). */
export const MAX_ORDER = 200_000;

export interface GetMetaArgs {
  fh: Buffer;
  offset: number;
  count: number;
}
export interface GetMetaRes {
  status: MetaStatus;
  nfsstat: number;
  total: number;
  data: Buffer;
}

export interface ByteRange {
  offset: number;
  len: number;
}
export interface BulkReadArgs {
  fh: Buffer;
  version: MetaVersion;
  codec: number;
  ranges: ByteRange[];
}
export interface BulkRange {
  offset: number;
  rawLen: number;
  codec: number;
  data: Buffer;
}
export interface BulkReadRes {
  status: MetaStatus;
  nfsstat: number;
  ranges: BulkRange[];
}

export interface SetOrderArgs {
  fh: Buffer;
  version: MetaVersion;
  hint: TransferHint;
  order: number[];
}
export interface SetOrderRes {
  status: MetaStatus;
  nfsstat: number;
}

const version = {
  enc: (w: XdrWriter, v: MetaVersion) => void w.u64big(v.fileid).u64(v.size).u32(v.mtime.sec).u32(v.mtime.nsec).u32(v.ctime.sec).u32(v.ctime.nsec),
  dec: (r: XdrReader): MetaVersion => ({ fileid: r.u64big(), size: r.u64(), mtime: { sec: r.u32(), nsec: r.u32() }, ctime: { sec: r.u32(), nsec: r.u32() } }),
};

export const getMetaArgs = {
  enc: (w: XdrWriter, a: GetMetaArgs) => void w.opaque(a.fh).u32(a.offset).u32(a.count),
  dec: (r: XdrReader): GetMetaArgs => ({ fh: Buffer.from(r.opaque(64)), offset: r.u32(), count: r.u32() }),
};
export const getMetaRes = {
  enc: (w: XdrWriter, v: GetMetaRes) => void w.u32(v.status).u32(v.nfsstat).u32(v.total).opaque(v.data),
  dec: (r: XdrReader): GetMetaRes => ({ status: r.u32(), nfsstat: r.u32(), total: r.u32(), data: Buffer.from(r.opaque(MAX_META_PAGE)) }),
};

export const bulkReadArgs = {
  enc: (w: XdrWriter, a: BulkReadArgs) => {
    w.opaque(a.fh);
    version.enc(w, a.version);
    w.u32(a.codec).u32(a.ranges.length);
    for (const x of a.ranges) w.u64(x.offset).u32(x.len);
  },
  dec: (r: XdrReader): BulkReadArgs => {
    const fh = Buffer.from(r.opaque(64));
    const v = version.dec(r);
    const codec = r.u32();
    const n = r.u32();
    if (n > MAX_RANGES) throw new RangeError(`${n} ranges (at most ${MAX_RANGES})`);
    const ranges: ByteRange[] = [];
    for (let i = 0; i < n; i++) ranges.push({ offset: r.u64(), len: r.u32() });
    return { fh, version: v, codec, ranges };
  },
};
export const bulkReadRes = {
  enc: (w: XdrWriter, v: BulkReadRes) => {
    w.u32(v.status).u32(v.nfsstat).u32(v.ranges.length);
    for (const x of v.ranges) w.u64(x.offset).u32(x.rawLen).u32(x.codec).opaque(x.data);
  },
  dec: (r: XdrReader): BulkReadRes => {
    const status = r.u32();
    const nfsstat = r.u32();
    const n = r.u32();
    if (n > MAX_RANGES) throw new RangeError(`${n} ranges (at most ${MAX_RANGES})`);
    const ranges: BulkRange[] = [];
    for (let i = 0; i < n; i++) ranges.push({ offset: r.u64(), rawLen: r.u32(), codec: r.u32(), data: Buffer.from(r.opaque(MAX_BULK + 4096)) });
    return { status, nfsstat, ranges };
  },
};

export const setOrderArgs = {
  enc: (w: XdrWriter, a: SetOrderArgs) => {
    w.opaque(a.fh);
    version.enc(w, a.version);
    w.u32(HINTS.indexOf(a.hint)).u32(a.order.length);
    for (const i of a.order) w.u32(i);
  },
  dec: (r: XdrReader): SetOrderArgs => {
    const fh = Buffer.from(r.opaque(64));
    const v = version.dec(r);
    const hint = HINTS[r.u32()];
    if (!hint) throw new RangeError('unknown hint');
    const n = r.u32();
    if (n > MAX_ORDER) throw new RangeError(`order of ${n} blocks (at most ${MAX_ORDER})`);
    const order: number[] = [];
    for (let i = 0; i < n; i++) order.push(r.u32());
    return { fh, version: v, hint, order };
  },
};
export const setOrderRes = {
  enc: (w: XdrWriter, v: SetOrderRes) => void w.u32(v.status).u32(v.nfsstat),
  dec: (r: XdrReader): SetOrderRes => ({ status: r.u32(), nfsstat: r.u32() }),
};
