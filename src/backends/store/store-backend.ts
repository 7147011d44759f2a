import { createHash } from 'node:crypto';
import type { Backend, DirPage, ExportInfo, SourcedRead } from '../../backend/backend.js';
import { FsError } from '../../backend/errors.js';
import { FSF3_HOMOGENEOUS, FSF3_SYMLINK, FType } from '../../nfs3/constants.js';
import { readdirEntrySize, readdirplusEntrySize } from '../../nfs3/codec.js';
import type { DirEntry, DirEntryPlus, Fattr3, FsInfo, FsStat, NewObject, NfsTime, PathConf, WccData, WriteResult } from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import { logger } from '../../util/log.js';
import { ChunkError, imageKey } from '../../image/layout.js';
import type { Entry } from '../../image/manifest.js';
import { listImages } from '../../image/catalog.js';
import { verifySigned } from '../../image/signature.js';
import { isStoreError, type ObjectStore } from '../../store/store.js';
import { accessFromBits, permBits } from '../local-export/permissions.js';
import { ChunkCache } from './chunk-cache.js';
import type { SiteCacheClient } from '../../sitecache/site-client.js';
import type { MetaSource, StoredFiles } from '../../backend/capabilities.js';
import { encodeMeta, HASH_LEN } from '../../meta/format.js';

const log = logger('store');

/**
 * Images of an object store, read-only, as one file tree: the root lists
 * the images (by name), each image is a directory of its files.
 *
 * Handles carry no server state: 0x53 | image digest (16) | path hash (16),
 * where the digest is the first 16 bytes of the SHA-256 of the verified
 * manifest and the path hash the first 16 of SHA-256(path). Every server
 * that verifies the same manifest issues and accepts the same handles, so
 * a client moves between servers of one store (the proxy's export wrapper
 * adds its MAC on top; servers of one store share its secret, see
 * --handle-secret). A handle of an image version this server has not seen
 * makes it re-read the store once; a version gone from the store is STALE.
 *
 * Only manifests signed by a trusted publisher are served; others are
 * logged and left out. Chunks are verified on arrival (ChunkCache), zero
 * runs are answered without the store. Owner root, modes from the manifest.
 */
const TAG = 0x53;
export const STORE_HANDLE_LEN = 33;
const ROOT_ID = Buffer.alloc(32);
const READ_MAX = 1 << 20;

interface Node {
  path: string;
  entry?: Entry;
  fh: Buffer;
  fileid: bigint;
  /** Directory: children in cookie order (nameCookie), with their nodes. */
  children?: Child[];
  parent?: Node;
}

interface Child {
  name: string;
  node: Node;
  cookie: bigint;
}

const byCookie = (a: Child, b: Child) => (a.cookie < b.cookie ? -1 : a.cookie > b.cookie ? 1 : 0);

interface Loaded {
  name: string;
  digest: Buffer;
  created: number;
  root: Node;
  byHash: Map<string, Node>;
  size: number;
  etag: string;
  /** The signed envelope as stored (compute hosts verify it themselves: STORE_FILE). */
  envelope: Buffer;
  /** The full SHA-256 of the manifest's bytes. */
  fullDigest: Buffer;
}

/** A file's chunks as "hash:len", computed once per entry. */
const entryChunks = new WeakMap<Entry, Set<string>>();
function chunksOfEntry(e: Entry & { type: 'file' }): Set<string> {
  let s = entryChunks.get(e);
  if (!s) {
    s = new Set();
    for (const [, len, h] of e.extents) if (h) s.add(`${h}:${len}`);
    entryChunks.set(e, s);
  }
  return s;
}

function h16(s: string | Buffer): Buffer {
  return createHash('sha256').update(s).digest().subarray(0, 16);
}

function fileidOf(digest: Buffer, path: string): bigint {
  const b = createHash('sha256').update(digest).update('\0').update(path).digest();
  return (b.readBigUInt64BE(0) & 0x7fffffffffffffffn) | 2n;
}

/** A directory entry's cookie: 48 bits of its name's hash, above '.' and '..'. */
function nameCookie(name: string): bigint {
  return BigInt(createHash('sha256').update(name).digest().readUIntBE(0, 6)) + 3n;
}

function timeOf(ms: number): NfsTime {
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: Math.floor((ms - sec * 1000) * 1e6) };
}

export interface StoreBackendOptions {
  store: ObjectStore;
  trusted: Buffer[];
  /** Re-list the store at most this often (ms) when the root is read. */
  refreshMs?: number;
  /** Decoded chunks kept in memory (bytes). */
  cacheBytes?: number;
  /** The site cache tier, asked for chunks before the store (--site-cache). */
  site?: SiteCacheClient;
}

/** Encoded meta-data kept per file handle (GET_META is paged; each page would rebuild it). */
const META_CACHE_ENTRIES = 256;

export class StoreBackend implements Backend, MetaSource {
  private readonly metaCache = new Map<string, Buffer>();
  private images = new Map<string, Loaded>();
  /** Every version served since start (a client keeps old handles across a re-push until gc). */
  private readonly byDigest = new Map<string, Loaded>();
  private lastRefresh = 0;
  private refreshing?: Promise<void>;
  readonly chunks: ChunkCache;
  readonly stats = { zeroReads: 0, refusedManifests: 0 };
  private readonly rootNode: Node;

  private constructor(private readonly o: StoreBackendOptions) {
    this.chunks = new ChunkCache(o.store, o.cacheBytes, o.site);
    this.rootNode = { path: '', fh: Buffer.concat([Buffer.from([TAG]), ROOT_ID]), fileid: 1n, children: [] };
  }

  static async open(o: StoreBackendOptions): Promise<StoreBackend> {
    const b = new StoreBackend(o);
    await b.refresh(true);
    return b;
  }

  /** Re-read the list of images; load new or changed manifests (verified). */
  refresh(force = false): Promise<void> {
    if (!force && Date.now() - this.lastRefresh < (this.o.refreshMs ?? 2000)) return Promise.resolve();
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = undefined;
      this.lastRefresh = Date.now();
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    const next = new Map<string, Loaded>();
    for (const l of await listImages(this.o.store)) {
      const etag = `${l.size}:${l.mtime.getTime()}`;
      const old = this.images.get(l.name);
      if (old && old.etag === etag) {
        next.set(l.name, old);
        continue;
      }
      try {
        const envelope = await this.o.store.get(imageKey(l.name));
        const v = verifySigned(envelope, this.o.trusted, l.name);
        const img = this.build(l.name, v.digest, v.manifest.entries, Date.parse(v.manifest.created) || 0, etag, envelope);
        next.set(l.name, img);
        this.byDigest.set(img.digest.toString('hex'), img);
      } catch (e) {
        if (isStoreError(e, 'NOT_FOUND')) continue;
        this.stats.refusedManifests++;
        log.error({ image: l.name, err: (e as Error).message }, 'image refused: not served');
      }
    }
    this.images = next;
    this.rootNode.children = [...next.values()].map((i) => ({ name: i.name, node: i.root, cookie: nameCookie(i.name) })).sort(byCookie);
  }

  private build(name: string, digest: Buffer, entries: Entry[], created: number, etag: string, envelope: Buffer): Loaded {
    const d16 = digest.subarray(0, 16);
    const mk = (path: string, entry?: Entry): Node => ({ path, entry, fh: Buffer.concat([Buffer.from([TAG]), d16, h16(path)]), fileid: fileidOf(d16, path), children: !entry || entry.type === 'dir' ? [] : undefined });
    const root = mk('');
    root.parent = this.rootNode;
    const byPath = new Map<string, Node>([['', root]]);
    let size = 0;
    for (const e of entries) {
      const n = mk(e.path, e);
      const slash = e.path.lastIndexOf('/');
      const parent = byPath.get(slash < 0 ? '' : e.path.slice(0, slash))!;
      n.parent = parent;
      const base = e.path.slice(slash + 1);
      parent.children!.push({ name: base, node: n, cookie: nameCookie(base) });
      byPath.set(e.path, n);
      if (e.type === 'file') size += e.size;
    }
    const byHash = new Map<string, Node>();
    for (const n of byPath.values()) {
      n.children?.sort(byCookie);
      byHash.set(n.fh.subarray(17).toString('hex'), n);
    }
    return { name, digest: d16, created, root, byHash, size, etag, envelope, fullDigest: digest };
  }

  private async resolve(fh: Buffer): Promise<Node> {
    if (fh.length !== STORE_HANDLE_LEN || fh[0] !== TAG) throw new FsError('BADHANDLE', 'not a store handle');
    if (fh.subarray(1).equals(ROOT_ID)) return this.rootNode;
    const d = fh.subarray(1, 17).toString('hex');
    let img = this.byDigest.get(d);
    if (!img) {
      await this.refresh();
      img = this.byDigest.get(d);
    }
    if (!img) throw new FsError('STALE', 'image version not in the store');
    const n = img.byHash.get(fh.subarray(17).toString('hex'));
    if (!n) throw new FsError('BADHANDLE', 'no such path in the image');
    return n;
  }

  /** Optional capability (backend/capabilities.ts): files by chunk hash, for compute hosts that verify them. */
  readonly storedFiles: StoredFiles = {
    storedFile: async (fh) => {
      const n = await this.resolve(fh);
      const img = n.entry?.type === 'file' ? this.imageOf(n) : undefined;
      return img ? { image: img.name, path: n.path, digest: img.fullDigest, envelope: img.envelope } : undefined;
    },
    fileChunk: async (fh, hash, len) => {
      const n = await this.resolve(fh);
      if (n.entry?.type !== 'file' || !chunksOfEntry(n.entry).has(`${hash}:${len}`)) return undefined;
      try {
        return await this.chunks.stored(hash, len);
      } catch (err) {
        if (err instanceof ChunkError || isStoreError(err)) {
          log.error({ image: this.imageOf(n)?.name, path: n.path, err: (err as Error).message }, 'chunk unusable: GET_CHUNK fails with EIO');
          throw new FsError('IO', (err as Error).message);
        }
        throw err;
      }
    },
  };

  private attr(n: Node): Fattr3 {
    const e = n.entry;
    const img = n === this.rootNode ? undefined : this.imageOf(n);
    const mtime = timeOf(e ? e.mtime : (img?.created ?? 0));
    const type = !e || e.type === 'dir' ? FType.DIR : e.type === 'file' ? FType.REG : FType.LNK;
    const size = e?.type === 'file' ? e.size : e?.type === 'symlink' ? Buffer.byteLength(e.target) : 4096;
    const used = e?.type === 'file' ? e.extents.reduce((s, x) => s + (x[2] ? x[1] : 0), 0) : size;
    return {
      type,
      mode: e ? e.mode : 0o555,
      nlink: type === FType.DIR ? 2 + (n.children?.filter((c) => c.node.children).length ?? 0) : 1,
      uid: 0,
      gid: 0,
      size,
      used,
      rdev: { major: 0, minor: 0 },
      fsid: 0x53544f5245n,
      fileid: n.fileid,
      atime: mtime,
      mtime,
      ctime: mtime,
    };
  }

  private imageOf(n: Node): Loaded | undefined {
    let r = n;
    while (r.parent && r.parent !== this.rootNode) r = r.parent;
    return this.byDigest.get(r.fh.subarray(1, 17).toString('hex'));
  }

  async mount(path: string, _cred: Credentials): Promise<{ fh: Buffer; authFlavors: number[] }> {
    const p = path.replace(/\/+$/, '');
    if (p === '') return { fh: this.rootNode.fh, authFlavors: [1] };
    await this.refresh();
    const img = this.images.get(p.replace(/^\//, ''));
    if (!img) throw new FsError('NOENT', `no image ${p}`);
    return { fh: img.root.fh, authFlavors: [1] };
  }

  async exports(): Promise<ExportInfo[]> {
    return [{ path: '/', groups: [] }];
  }

  async getattr(_cred: Credentials, fh: Buffer): Promise<Fattr3> {
    return this.attr(await this.resolve(fh));
  }

  async lookup(cred: Credentials, dir: Buffer, name: string): Promise<{ fh: Buffer; attr?: Fattr3; dirAttr?: Fattr3 }> {
    const d = await this.resolve(dir);
    const dirAttr = this.attr(d);
    if (!d.children) throw new FsError('NOTDIR', 'lookup in a non-directory', { attr: dirAttr });
    if (!(permBits(cred, dirAttr) & 1)) throw new FsError('ACCES', 'lookup: permission denied', { attr: dirAttr });
    let n: Node | undefined;
    if (name === '.') n = d;
    else if (name === '..') n = d.parent ?? d;
    else {
      if (d === this.rootNode && !d.children.some((c) => c.name === name)) await this.refresh();
      n = d.children.find((c) => c.name === name)?.node;
    }
    if (!n) throw new FsError('NOENT', undefined, { attr: dirAttr });
    return { fh: n.fh, attr: this.attr(n), dirAttr };
  }

  async access(cred: Credentials, fh: Buffer, mask: number): Promise<{ access: number; attr?: Fattr3 }> {
    const a = this.attr(await this.resolve(fh));
    return { access: accessFromBits(permBits(cred, a), a.type, mask, true), attr: a };
  }

  async readlink(_cred: Credentials, fh: Buffer): Promise<{ path: string; attr?: Fattr3 }> {
    const n = await this.resolve(fh);
    if (n.entry?.type !== 'symlink') throw new FsError('INVAL', 'not a symbolic link', { attr: this.attr(n) });
    return { path: n.entry.target, attr: this.attr(n) };
  }

  async read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead> {
    const n = await this.resolve(fh);
    const attr = this.attr(n);
    const e = n.entry;
    if (e?.type !== 'file') throw new FsError(n.children ? 'ISDIR' : 'INVAL', 'read of a non-file', { attr });
    if (!(permBits(cred, attr) & 4) && cred.uid !== 0) throw new FsError('ACCES', 'read: permission denied', { attr });
    const end = Math.min(e.size, offset + Math.min(count, READ_MAX));
    if (offset >= end) return { attr, count: 0, eof: true, data: Buffer.alloc(0) };
    const out = Buffer.alloc(end - offset);
    // First extent that ends after `offset`.
    let lo = 0;
    let hi = e.extents.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (e.extents[mid][0] <= offset) lo = mid;
      else hi = mid - 1;
    }
    const parts: Promise<void>[] = [];
    let allZero = true;
    for (let i = lo; i < e.extents.length && e.extents[i][0] < end; i++) {
      const [xo, xl, hash] = e.extents[i];
      if (!hash) continue; // zero run: `out` is zero-filled already
      allZero = false;
      parts.push(
        this.chunks.get(hash, xl).then((raw) => {
          const s = Math.max(offset, xo);
          const t = Math.min(end, xo + xl);
          raw.copy(out, s - offset, s - xo, t - xo);
        }),
      );
    }
    try {
      await Promise.all(parts);
    } catch (err) {
      if (err instanceof ChunkError || isStoreError(err)) {
        log.error({ image: this.imageOf(n)?.name, path: n.path, err: (err as Error).message }, 'chunk unusable: READ fails with EIO');
        throw new FsError('IO', (err as Error).message, { attr });
      }
      throw err;
    }
    if (allZero) this.stats.zeroReads++;
    return { attr, count: out.length, eof: end >= e.size, data: out };
  }

  /**
   * The file's meta-data from its manifest entry (MetaSource): the hint, the
   * block hashes the publisher's `gvfs meta generate` computed (a chunk,
   * verified against its hash like any other), zero blocks (all-zero hash,
   * as the generator marks them) and the prefetch order — the manifest's
   * extents, first read first, as the blocks they cover. None without a
   * hint or block hashes.
   */
  async fileMeta(fh: Buffer): Promise<Buffer | undefined> {
    const n = await this.resolve(fh);
    const e = n.entry;
    if (e?.type !== 'file' || !e.hint || !e.blocks) return undefined;
    const key = fh.toString('hex');
    const hit = this.metaCache.get(key);
    if (hit) return hit;
    const img = this.imageOf(n);
    const bs = e.blocks.size;
    const nb = Math.ceil(e.size / bs);
    let hashes: Buffer;
    try {
      hashes = await this.chunks.get(e.blocks.hashes, nb * HASH_LEN);
    } catch (err) {
      if (err instanceof ChunkError || isStoreError(err)) {
        log.error({ image: img?.name, path: n.path, err: (err as Error).message }, 'block hashes unusable: GET_META fails with EIO');
        throw new FsError('IO', (err as Error).message);
      }
      throw err;
    }
    const zeroMap = Buffer.alloc(Math.ceil(nb / 8));
    const zero = (i: number) => (zeroMap[i >> 3] & (1 << (i & 7))) !== 0;
    for (let i = 0; i < nb; i++) if (hashes.subarray(i * HASH_LEN, (i + 1) * HASH_LEN).every((x) => x === 0)) zeroMap[i >> 3] |= 1 << (i & 7);
    const order: number[] = [];
    const taken = new Set<number>();
    for (const x of e.order ?? []) {
      const [off, len, hash] = e.extents[x];
      if (!hash) continue;
      for (let b = Math.floor(off / bs); b <= Math.floor((off + len - 1) / bs); b++) {
        if (zero(b) || taken.has(b)) continue;
        taken.add(b);
        order.push(b);
      }
    }
    const a = this.attr(n);
    const bytes = encodeMeta({ fileid: a.fileid, size: a.size, mtime: a.mtime, ctime: a.ctime, blockSize: bs, hint: e.hint, zeroMap, hashes, order, created: img?.created ?? 0, source: `${img?.name ?? ''}/${n.path}` });
    if (this.metaCache.size >= META_CACHE_ENTRIES) this.metaCache.delete(this.metaCache.keys().next().value!);
    this.metaCache.set(key, bytes);
    return bytes;
  }

  private rofs(): never {
    throw new FsError('ROFS', 'store images are read-only');
  }
  async setattr(): Promise<WccData> {
    return this.rofs();
  }
  async write(): Promise<WriteResult> {
    return this.rofs();
  }
  async create(): Promise<NewObject> {
    return this.rofs();
  }
  async mkdir(): Promise<NewObject> {
    return this.rofs();
  }
  async symlink(): Promise<NewObject> {
    return this.rofs();
  }
  async mknod(): Promise<NewObject> {
    return this.rofs();
  }
  async remove(): Promise<WccData> {
    return this.rofs();
  }
  async rmdir(): Promise<WccData> {
    return this.rofs();
  }
  async rename(): Promise<{ fromWcc: WccData; toWcc: WccData }> {
    return this.rofs();
  }
  async link(): Promise<{ attr?: Fattr3; dirWcc: WccData }> {
    return this.rofs();
  }

  private async dirOf(cred: Credentials, fh: Buffer): Promise<{ d: Node; attr: Fattr3; kids: Child[] }> {
    const d = await this.resolve(fh);
    const attr = this.attr(d);
    if (!d.children) throw new FsError('NOTDIR', 'readdir of a non-directory', { attr });
    if (!(permBits(cred, attr) & 4)) throw new FsError('ACCES', 'readdir: permission denied', { attr });
    if (d === this.rootNode) await this.refresh();
    // Cookies name entries, not positions: the root's listing changes as images come and go, and a
    // client paging through it must neither skip nor repeat an image ('.' 1, '..' 2, a name: its hash).
    const kids = [
      { name: '.', node: d, cookie: 1n },
      { name: '..', node: d.parent ?? d, cookie: 2n },
      ...d.children,
    ];
    return { d, attr, kids };
  }

  private verf(d: Node): Buffer {
    return d === this.rootNode ? Buffer.alloc(8) : Buffer.from(d.fh.subarray(1, 9));
  }

  async readdir(cred: Credentials, dir: Buffer, cookie: bigint, _verf: Buffer, count: number): Promise<DirPage<DirEntry>> {
    const { d, attr, kids } = await this.dirOf(cred, dir);
    let budget = count - 128;
    const entries: DirEntry[] = [];
    let i = kids.findIndex((k) => k.cookie > cookie);
    if (i < 0) i = kids.length;
    for (; i < kids.length; i++) {
      const sz = readdirEntrySize(kids[i].name);
      if (sz > budget) break;
      budget -= sz;
      entries.push({ fileid: kids[i].node.fileid, name: kids[i].name, cookie: kids[i].cookie });
    }
    if (!entries.length && i < kids.length) throw new FsError('TOOSMALL', 'READDIR count too small', { attr });
    return { dirAttr: attr, verf: this.verf(d), entries, eof: i >= kids.length };
  }

  async readdirplus(cred: Credentials, dir: Buffer, cookie: bigint, _verf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>> {
    const { d, attr, kids } = await this.dirOf(cred, dir);
    let budget = maxcount - 256;
    let names = dircount > 0 ? dircount : maxcount;
    const entries: DirEntryPlus[] = [];
    let i = kids.findIndex((k) => k.cookie > cookie);
    if (i < 0) i = kids.length;
    for (; i < kids.length; i++) {
      const sz = readdirplusEntrySize(kids[i].name, STORE_HANDLE_LEN);
      const nsz = readdirEntrySize(kids[i].name);
      if (sz > budget || (nsz > names && entries.length > 0)) break;
      budget -= sz;
      names -= nsz;
      const node = kids[i].node;
      entries.push({ fileid: node.fileid, name: kids[i].name, cookie: kids[i].cookie, attr: this.attr(node), fh: node.fh });
    }
    if (!entries.length && i < kids.length) throw new FsError('TOOSMALL', 'READDIRPLUS count too small', { attr });
    return { dirAttr: attr, verf: this.verf(d), entries, eof: i >= kids.length };
  }

  async fsstat(_cred: Credentials, fh: Buffer): Promise<FsStat> {
    const n = await this.resolve(fh);
    const total = [...this.images.values()].reduce((s, i) => s + i.size, 0);
    return { attr: this.attr(n), tbytes: total, fbytes: 0, abytes: 0, tfiles: this.images.size, ffiles: 0, afiles: 0, invarsec: 0 };
  }

  async fsinfo(_cred: Credentials, fh: Buffer): Promise<FsInfo> {
    const n = await this.resolve(fh);
    return { attr: this.attr(n), rtmax: READ_MAX, rtpref: READ_MAX, rtmult: 4096, wtmax: READ_MAX, wtpref: READ_MAX, wtmult: 4096, dtpref: 64 << 10, maxfilesize: Number.MAX_SAFE_INTEGER, timeDelta: { sec: 0, nsec: 1_000_000 }, properties: FSF3_SYMLINK | FSF3_HOMOGENEOUS };
  }

  async pathconf(_cred: Credentials, fh: Buffer): Promise<PathConf> {
    const n = await this.resolve(fh);
    return { attr: this.attr(n), linkmax: 1, nameMax: 255, noTrunc: true, chownRestricted: true, caseInsensitive: false, casePreserving: true };
  }

  async commit(): Promise<{ wcc: WccData; verf: Buffer }> {
    return this.rofs();
  }

  async close(): Promise<void> {
    this.o.site?.close();
    await this.o.store.close();
  }
}
