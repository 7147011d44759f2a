import type { Backend, SourcedRead } from '../../backend/backend.js';
import { FsError } from '../../backend/errors.js';
import { ChunkStatus, GET_CHUNK, getChunkArgs, getChunkRes, MAX_MANIFEST_PAGE, STORE_FILE, storeFileArgs, storeFileRes, type StoreFileRes } from '../../ext/chunks-codec.js';
import type { ExtLink } from '../../ext/meta-client.js';
import { ChunkError } from '../../image/layout.js';
import type { Entry, Extent } from '../../image/manifest.js';
import { MAX_MANIFEST_BYTES } from '../../image/manifest.js';
import { SignatureError, verifySigned } from '../../image/signature.js';
import { FType } from '../../nfs3/constants.js';
import type { Fattr3 } from '../../nfs3/types.js';
import { codeOfStatus } from '../../nfs3/status.js';
import { RpcError, type Credentials } from '../../rpc/types.js';
import type { DiskLru } from '../../sitecache/disk-lru.js';
import type { SiteCacheClient } from '../../sitecache/site-client.js';
import { logger } from '../../util/log.js';
import { AccessGate } from '../cache/access-gate.js';
import { PassthroughBackend } from '../passthrough.js';
import { ChunkStore, type ChunkFile, type ServerChunk } from './chunk-store.js';

const log = logger('chunks');
/** Files remembered (stored or not) at most; the oldest are forgotten first. */
const MAX_FILES = 100_000;
/** Verified manifests kept at most (each is a whole image's chunk lists). */
const MAX_MANIFESTS = 64;
const MAX_READ = 1 << 20;

type FileEntry = Entry & { type: 'file' };

export interface ChunkOptions {
  /** Publisher keys this compute host trusts (raw Ed25519, image/signature.ts). */
  trusted: Buffer[];
  /** The link to the proxy server's GVFS program (STORE_FILE, GET_CHUNK). */
  link: ExtLink;
  /** Stored chunks on the cache disk (absent: memory only). */
  disk?: DiskLru | Promise<DiskLru>;
  /** The site cache tier (--site-cache), asked before the proxy server. */
  site?: SiteCacheClient;
  /** Decoded chunks kept in memory (bytes). */
  memBytes?: number;
  /** How long a READ permission answer is trusted (ms). */
  accessTtlMs?: number;
  /** Chunks fetched ahead of a read, in bytes of the file after it (0: none). Default 8 MiB. */
  readAheadBytes?: number;
}

/**
 * Store-backed files by chunk hash, on the compute host (issues 21, 22).
 *
 * For each file read, the proxy server is asked once whether it is a file
 * of a store image (STORE_FILE); if so, the image's signed manifest is
 * fetched once per image version and verified here against the publisher
 * keys this host trusts, and reads of the file are answered from its chunk
 * list: zero runs locally, chunks from the ChunkStore (memory, the cache
 * disk, the site tier, the proxy server; each verified). Two images that
 * share chunks fetch them once. Files that are not stored (another kind of
 * export, a server without the procedures) pass through unchanged.
 *
 * Cached bytes are served to a caller only after the server said that
 * caller may read the file (AccessGate, as the block cache does). A
 * manifest that does not verify fails the read with EIO: a host that
 * trusts publisher keys serves nothing it cannot check.
 */
export class ChunkBackend extends PassthroughBackend {
  private readonly files = new Map<string, Promise<FileEntry | null>>();
  private readonly manifests = new Map<string, Promise<Map<string, FileEntry>>>();
  private unsupported = false;
  /** Each verified file entry's image name (the site tier is told which file a chunk belongs to). */
  private readonly imageOf = new WeakMap<FileEntry, string>();
  readonly store: ChunkStore;
  private readonly gate: AccessGate;
  readonly stats = { storedReads: 0, passedReads: 0, zeroBytes: 0, manifests: 0, manifestRefused: 0 };

  constructor(
    inner: Backend,
    private readonly o: ChunkOptions,
  ) {
    super(inner);
    this.store = new ChunkStore({ disk: o.disk, site: o.site, memBytes: o.memBytes });
    this.gate = new AccessGate((c, fh, mask) => this.inner.access(c, fh, mask), () => o.accessTtlMs ?? 1000);
  }

  override async read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead> {
    const f = this.unsupported ? null : await this.fileOf(cred, fh);
    if (!f) {
      this.stats.passedReads++;
      return this.inner.read(cred, fh, offset, count);
    }
    this.stats.storedReads++;
    await this.gate.check(cred, fh);
    const attr = await this.inner.getattr(cred, fh);
    if (attr.type !== FType.REG || attr.size !== f.size) throw new FsError('IO', 'the server\'s attributes do not match the signed manifest');
    const end = Math.min(f.size, offset + Math.min(count, MAX_READ));
    if (offset >= end) return { attr, count: 0, eof: offset >= f.size, data: Buffer.alloc(0), from: {} };
    const out = Buffer.alloc(end - offset);
    const from = { cache: 0, zero: 0 };
    const parts: Promise<void>[] = [];
    for (let i = firstExtent(f.extents, offset); i < f.extents.length && f.extents[i][0] < end; i++) {
      const [xo, xl, hash] = f.extents[i];
      const s = Math.max(offset, xo);
      const t = Math.min(end, xo + xl);
      if (!hash) {
        from.zero += t - s; // zero run: answered here, `out` is zero-filled
        continue;
      }
      parts.push(
        this.store.get(hash, xl, () => this.fromServer(cred, fh, hash, xo, xl), this.whereOf(f)).then(({ raw, from: src }) => {
          raw.copy(out, s - offset, s - xo, t - xo);
          if (src === 'memory' || src === 'disk') from.cache += t - s;
        }),
      );
    }
    try {
      await Promise.all(parts);
    } catch (e) {
      if (e instanceof ChunkError) throw new FsError('IO', e.message, { attr });
      throw e;
    }
    this.stats.zeroBytes += from.zero;
    this.readAhead(cred, fh, f, end);
    return { attr, count: out.length, eof: end >= f.size, data: out, from };
  }

  /**
   * Ask for the chunks after a read before they are read (a clone reads
   * files in order): each is one round trip to the tier or the server, so
   * without this a reader waits one round trip per READ. Not awaited;
   * failures are the later read's to see. Chunks already here cost a map
   * lookup (memory) or a disk read.
   */
  private readAhead(cred: Credentials, fh: Buffer, f: FileEntry, from: number): void {
    const want = this.o.readAheadBytes ?? 8 << 20;
    if (want <= 0 || from >= f.size) return;
    const until = Math.min(f.size, from + want);
    for (let i = firstExtent(f.extents, from); i < f.extents.length && f.extents[i][0] < until; i++) {
      const [xo, xl, hash] = f.extents[i];
      if (!hash || this.store.has(hash)) continue;
      this.store.get(hash, xl, () => this.fromServer(cred, fh, hash, xo, xl), this.whereOf(f)).catch(() => undefined);
    }
  }

  private whereOf(f: FileEntry): ChunkFile | undefined {
    const image = this.imageOf.get(f);
    return image === undefined ? undefined : { image, path: f.path };
  }

  override async access(cred: Credentials, fh: Buffer, mask: number): Promise<{ access: number; attr?: Fattr3 }> {
    const at = Date.now();
    const r = await this.inner.access(cred, fh, mask);
    this.gate.note(cred, fh, mask, r.access, at);
    return r;
  }

  /** The file's verified entry, or null: not a stored file (read through the layers below). */
  private fileOf(cred: Credentials, fh: Buffer): Promise<FileEntry | null> {
    const k = fh.toString('hex');
    let p = this.files.get(k);
    if (!p) {
      p = this.lookupFile(cred, fh);
      this.files.set(k, p);
      if (this.files.size > MAX_FILES) this.files.delete(this.files.keys().next().value!);
      // A failure (server down, no permission, a manifest refused) is not remembered: the next read asks again.
      p.catch(() => this.files.delete(k));
    }
    return p;
  }

  private async lookupFile(cred: Credentials, fh: Buffer): Promise<FileEntry | null> {
    let head: StoreFileRes;
    try {
      head = await this.storeFile(cred, fh, 0, 0);
    } catch (e) {
      if (e instanceof RpcError && (e.kind === 'proc_unavail' || e.kind === 'prog_unavail')) {
        log.info('the proxy server has no chunk procedures: store images are read over NFS');
        this.unsupported = true;
        return null;
      }
      throw e;
    }
    if (head.status === ChunkStatus.NOTSUPP) return null;
    if (head.status !== ChunkStatus.OK) throw new FsError(head.status === ChunkStatus.NFSERR ? codeOfStatus(head.nfsstat) : 'IO', 'STORE_FILE refused');
    const d = head.digest.toString('hex');
    let m = this.manifests.get(d);
    if (!m) {
      m = this.loadManifest(cred, fh, head);
      this.manifests.set(d, m);
      if (this.manifests.size > MAX_MANIFESTS) this.manifests.delete(this.manifests.keys().next().value!);
      m.catch(() => this.manifests.delete(d));
    }
    const e = (await m).get(head.path);
    if (!e) throw new FsError('IO', `the signed manifest of ${head.image} has no file ${head.path}`);
    return e;
  }

  private async loadManifest(cred: Credentials, fh: Buffer, head: StoreFileRes): Promise<Map<string, FileEntry>> {
    if (head.total > MAX_MANIFEST_BYTES + 4096) throw new FsError('IO', 'manifest too large');
    const pages: Buffer[] = [];
    let got = 0;
    while (got < head.total) {
      const r = await this.storeFile(cred, fh, got, MAX_MANIFEST_PAGE);
      if (r.status !== ChunkStatus.OK || !r.digest.equals(head.digest) || r.total !== head.total || r.data.length === 0) throw new FsError('IO', 'the image changed while its manifest was read');
      pages.push(r.data);
      got += r.data.length;
    }
    try {
      const v = verifySigned(Buffer.concat(pages), this.o.trusted, head.image);
      if (!v.digest.equals(head.digest)) throw new SignatureError(`${head.image}: the manifest is not the version the server named`);
      this.stats.manifests++;
      const byPath = new Map<string, FileEntry>();
      for (const e of v.manifest.entries) {
        if (e.type !== 'file') continue;
        byPath.set(e.path, e);
        this.imageOf.set(e, head.image);
      }
      return byPath;
    } catch (e) {
      this.stats.manifestRefused++;
      log.error({ image: head.image, err: (e as Error).message }, 'image manifest refused: its files are not served');
      throw new FsError('IO', (e as Error).message);
    }
  }

  private storeFile(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<StoreFileRes> {
    return this.o.link.ext(STORE_FILE, (w) => storeFileArgs.enc(w, { fh, offset, count }), storeFileRes.dec, cred);
  }

  private async fromServer(cred: Credentials, fh: Buffer, hash: string, xo: number, xl: number): Promise<ServerChunk> {
    const r = await this.o.link.ext(GET_CHUNK, (w) => getChunkArgs.enc(w, { fh, hash: Buffer.from(hash, 'hex'), len: xl }), getChunkRes.dec, cred);
    if (r.status === ChunkStatus.OK) return { stored: r.data };
    if (r.status === ChunkStatus.TOOBIG) {
      // Larger than one reply: the extent over NFS READ (verified by the caller all the same).
      const raw = Buffer.alloc(xl);
      for (let at = 0; at < xl; ) {
        const p = await this.inner.read(cred, fh, xo + at, Math.min(MAX_READ, xl - at));
        if (p.count === 0) throw new FsError('IO', 'short read of a stored chunk');
        p.data.copy(raw, at);
        at += p.count;
      }
      return { raw };
    }
    if (r.status === ChunkStatus.NFSERR) throw new FsError(codeOfStatus(r.nfsstat), 'GET_CHUNK refused');
    throw new FsError('IO', `GET_CHUNK: the proxy server refused chunk ${hash} (status ${r.status})`);
  }

  override async close(): Promise<void> {
    // One line operators (and the site benchmark) read: where this host's chunks came from.
    log.info({ ...this.stats, ...this.store.stats, site: this.o.site?.stats }, 'chunk reader closed');
    this.o.site?.close();
    await super.close();
  }
}

/** Index of the extent that holds `offset` (extents are contiguous from 0). */
function firstExtent(x: Extent[], offset: number): number {
  let lo = 0;
  let hi = x.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (x[mid][0] <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
