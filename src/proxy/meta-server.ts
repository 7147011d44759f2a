import { randomBytes } from 'node:crypto';
import type { Backend } from '../backend/backend.js';
import type { MetaSource } from '../backend/capabilities.js';
import { FsError, isFsError } from '../backend/errors.js';
import {
  MAX_BULK,
  MAX_META_PAGE,
  MAX_RANGES,
  MetaStatus,
  type BulkRange,
  type BulkReadArgs,
  type BulkReadRes,
  type GetMetaRes,
  type SetOrderArgs,
  type SetOrderRes,
} from '../ext/meta-codec.js';
import { Codec } from '../meta/compress.js';
import { defaultChunkPool, type ChunkPool } from '../image/chunk-pool.js';
import { blockCount, decodeMeta, encodeMeta, META_DIR, metaFileName, sameVersion, type MetaVersion } from '../meta/format.js';
import { ACCESS3_MODIFY, ACCESS3_READ, FType, StableHow } from '../nfs3/constants.js';
import { STATUS_OF } from '../nfs3/status.js';
import type { Fattr3 } from '../nfs3/types.js';
import { AuthFlavor, type Credentials } from '../rpc/types.js';
import { logger } from '../util/log.js';

const log = logger('meta');
const READ_PIECE = 1 << 20;

export interface MetaExport {
  /** The export's backend under the hiding wrapper (it can see `.gvfs-meta`). */
  raw: Backend;
  /** The path mounted on it. */
  path: string;
  /** Meta-data the export carries itself (a store's manifest), served instead of `.gvfs-meta/`. */
  meta?: MetaSource;
}

export interface MetaServerOptions {
  /** The session-facing stack (identity map ∘ proxy handles ∘ hide ∘ export): data reads and permission checks go through it. */
  top: Backend;
  /** The local account a session's call runs as (the identity map's decision). */
  mapCred: (c: Credentials) => Credentials;
  /** Proxy handle → export index and that export's handle. */
  unwrap: (fh: Buffer, c: Credentials) => { ex: number; ufh: Buffer };
  exports: MetaExport[];
  /** Where BULK_READ ranges are compressed (default: the process's pool; never the event loop). */
  pool?: ChunkPool;
  /** zstd level for BULK_READ (compress.ts). */
  level?: number;
}

/**
 * The proxy server's side of the meta-data procedures: reads a file's
 * meta-data from its export's `.gvfs-meta/` (as the session's mapped
 * account, only when that account may read the file), serves bulk reads of
 * block ranges (through the same stack as NFS READ, so the same permission
 * checks), compressed, and stores recorded prefetch orders.
 */
export class MetaServer {
  private readonly roots = new Map<number, Buffer>();
  readonly c = { getMeta: 0, bulkReads: 0, bulkRawBytes: 0, bulkWireBytes: 0, setOrders: 0 };

  constructor(private readonly o: MetaServerOptions) {}

  async getMeta(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<GetMetaRes> {
    this.c.getMeta++;
    return this.guard({ status: MetaStatus.OK, nfsstat: 0, total: 0, data: Buffer.alloc(0) }, async () => {
      const attr = await this.readable(cred, fh, ACCESS3_READ);
      if (attr.type !== FType.REG) return { status: MetaStatus.NONE, nfsstat: 0, total: 0, data: Buffer.alloc(0) };
      const { ex, ufh } = this.o.unwrap(fh, cred);
      const src = this.o.exports[ex].meta;
      if (src) {
        const bytes = await src.fileMeta(ufh);
        if (!bytes) return { status: MetaStatus.NONE, nfsstat: 0, total: 0, data: Buffer.alloc(0) };
        if (!sameVersion(headerVersion(bytes), attr)) return { status: MetaStatus.STALE, nfsstat: 0, total: bytes.length, data: Buffer.alloc(0) };
        return { status: MetaStatus.OK, nfsstat: 0, total: bytes.length, data: bytes.subarray(offset, offset + Math.min(count, MAX_META_PAGE)) };
      }
      const f = await this.metaFile(cred, fh, attr);
      if (!f) return { status: MetaStatus.NONE, nfsstat: 0, total: 0, data: Buffer.alloc(0) };
      const total = f.attr.size;
      const data = await this.readRaw(f.b, f.cred, f.fh, offset, Math.min(count, MAX_META_PAGE, Math.max(0, total - offset)));
      // The version is in the first bytes: a stale file is reported as such, not sent.
      if (offset === 0 && !sameVersion(headerVersion(data), attr)) return { status: MetaStatus.STALE, nfsstat: 0, total, data: Buffer.alloc(0) };
      return { status: MetaStatus.OK, nfsstat: 0, total, data };
    });
  }

  async bulkRead(cred: Credentials, a: BulkReadArgs): Promise<BulkReadRes> {
    this.c.bulkReads++;
    const bytes = a.ranges.reduce((s, r) => s + r.len, 0);
    if (a.ranges.length > MAX_RANGES || bytes > MAX_BULK || a.ranges.some((r) => r.len === 0)) return { status: MetaStatus.TOOBIG, nfsstat: 0, ranges: [] };
    return this.guard({ status: MetaStatus.OK, nfsstat: 0, ranges: [] as BulkRange[] }, async () => {
      const attr = await this.o.top.getattr(cred, a.fh);
      if (!sameVersion(attr, a.version)) return { status: MetaStatus.STALE, nfsstat: 0, ranges: [] };
      let moved = false;
      const ranges = await Promise.all(
        a.ranges.map(async (r) => {
          const data = await this.readRaw(this.o.top, cred, a.fh, r.offset, r.len, (at) => {
            if (!sameVersion(at, a.version)) moved = true;
          });
          const got = data.length;
          if (got < r.len) moved = true; // the file is shorter than the version said
          // zstd on a pool thread: a 1 MiB range is about a millisecond of CPU the event loop does not spend.
          const p = a.codec === Codec.ZSTD && data.length >= 64 ? await (this.o.pool ?? defaultChunkPool()).pack(data, Codec.ZSTD, this.o.level) : { codec: Codec.NONE, data };
          this.c.bulkRawBytes += got;
          this.c.bulkWireBytes += p.data.length;
          return { offset: r.offset, rawLen: got, codec: p.codec, data: p.data };
        }),
      );
      if (moved) return { status: MetaStatus.STALE, nfsstat: 0, ranges: [] };
      return { status: MetaStatus.OK, nfsstat: 0, ranges };
    });
  }

  async setOrder(cred: Credentials, a: SetOrderArgs): Promise<SetOrderRes> {
    this.c.setOrders++;
    return this.guard({ status: MetaStatus.OK, nfsstat: 0 }, async () => {
      const attr = await this.readable(cred, a.fh, ACCESS3_MODIFY);
      if (!sameVersion(attr, a.version)) return { status: MetaStatus.STALE, nfsstat: 0 };
      const f = await this.metaFile(cred, a.fh, attr);
      if (!f) return { status: MetaStatus.NONE, nfsstat: 0 };
      const m = decodeMeta(await this.readRaw(f.b, f.cred, f.fh, 0, f.attr.size));
      if (!sameVersion(m, attr)) return { status: MetaStatus.STALE, nfsstat: 0 };
      const n = blockCount(m);
      m.order = a.order.filter((i) => i < n);
      m.hint = a.hint;
      // The file's meta-data is rewritten as the owner of the old one (whoever ran meta gen): beside it, then renamed over it.
      const owner: Credentials = { flavor: AuthFlavor.AUTH_SYS, uid: f.attr.uid, gid: f.attr.gid, gids: [f.attr.gid] };
      const bytes = encodeMeta(m);
      const tmp = `.${metaFileName(attr.fileid)}.${randomBytes(6).toString('hex')}.tmp`;
      const made = await f.b.create(owner, f.dir, tmp, { mode: 'guarded', attrs: { mode: 0o644 } });
      try {
        const tfh = made.fh ?? (await f.b.lookup(owner, f.dir, tmp)).fh;
        for (let off = 0; off < bytes.length; off += READ_PIECE) await f.b.write(owner, tfh, off, bytes.subarray(off, off + READ_PIECE), StableHow.FILE_SYNC);
        await f.b.rename(owner, f.dir, tmp, f.dir, metaFileName(attr.fileid));
      } catch (e) {
        await f.b.remove(owner, f.dir, tmp).catch(() => undefined);
        throw e;
      }
      log.info({ fileid: String(attr.fileid), blocks: m.order.length, hint: m.hint }, 'prefetch order stored');
      return { status: MetaStatus.OK, nfsstat: 0 };
    });
  }

  /** Attributes of a file the session may access with `mask`; else ACCES. */
  private async readable(cred: Credentials, fh: Buffer, mask: number): Promise<Fattr3> {
    const r = await this.o.top.access(cred, fh, mask);
    if ((r.access & mask) !== mask) throw new FsError('ACCES', 'no access');
    return r.attr ?? (await this.o.top.getattr(cred, fh));
  }

  /** The meta-data file of `attr.fileid` in the export's `.gvfs-meta/`, looked up as the session's account. */
  private async metaFile(cred: Credentials, fh: Buffer, attr: Fattr3) {
    const m = this.o.mapCred(cred);
    const { ex } = this.o.unwrap(fh, cred);
    const e = this.o.exports[ex];
    let root = this.roots.get(ex);
    if (!root) this.roots.set(ex, (root = (await e.raw.mount(e.path, m)).fh));
    try {
      const dir = await e.raw.lookup(m, root, META_DIR);
      const f = await e.raw.lookup(m, dir.fh, metaFileName(attr.fileid));
      const fattr = f.attr ?? (await e.raw.getattr(m, f.fh));
      if (fattr.type !== FType.REG) return undefined;
      return { b: e.raw, cred: m, dir: dir.fh, fh: f.fh, attr: fattr };
    } catch (err) {
      if (isFsError(err, 'NOENT')) return undefined;
      throw err;
    }
  }

  /** Bytes [off, off+len) in READs of at most READ_PIECE (fewer at end of file); `seen` gets each READ's attributes. */
  private async readRaw(b: Backend, cred: Credentials, fh: Buffer, off: number, len: number, seen?: (a: Fattr3) => void): Promise<Buffer> {
    const out = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const r = await b.read(cred, fh, off + got, Math.min(READ_PIECE, len - got));
      if (r.attr) seen?.(r.attr);
      r.data.copy(out, got, 0, r.count);
      r.release?.(); // copied: its record may be used again
      got += r.count;
      if (r.count === 0) break;
    }
    return out.subarray(0, got);
  }

  /** An FsError becomes NFSERR with its status (the RPC itself succeeds); anything else is logged and reported as IO. */
  private async guard<R extends { status: MetaStatus; nfsstat: number }>(empty: R, f: () => Promise<R>): Promise<R> {
    try {
      return await f();
    } catch (e) {
      if (isFsError(e)) return { ...empty, status: MetaStatus.NFSERR, nfsstat: STATUS_OF[e.code] };
      log.error({ err: e }, 'meta-data procedure failed');
      return { ...empty, status: MetaStatus.NFSERR, nfsstat: STATUS_OF.IO };
    }
  }
}

/** The version fields at the start of a meta-data file (format.ts), without decoding the rest. */
function headerVersion(b: Buffer): MetaVersion {
  if (b.length < 48) return { fileid: -1n, size: -1, mtime: { sec: 0, nsec: 0 }, ctime: { sec: 0, nsec: 0 } };
  return {
    fileid: b.readBigUInt64BE(8),
    size: Number(b.readBigUInt64BE(16)),
    mtime: { sec: b.readUInt32BE(24), nsec: b.readUInt32BE(28) },
    ctime: { sec: b.readUInt32BE(32), nsec: b.readUInt32BE(36) },
  };
}
