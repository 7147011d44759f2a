import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Backend, DirPage } from '../../backend/backend.js';
import { FsError, isFsError } from '../../backend/errors.js';
import { ACCESS3_EXTEND, ACCESS3_MODIFY, FType, StableHow } from '../../nfs3/constants.js';
import type { CreateHow, DirEntryPlus, Fattr3, MknodType, NewObject, NfsTime, ReadResult, Sattr3, WccData, WriteResult } from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import { logger } from '../../util/log.js';
import { PassthroughBackend } from '../passthrough.js';
import { NameCache } from './attr-cache.js';
import { BlockStore } from './block-store.js';
import { startControlSocket } from './control-socket.js';
import * as f from './fs-cb.js';
import { Journal } from './journal.js';
import { resolveCacheOptions, type CacheOptions, type ResolvedCacheOptions } from './options.js';
import { FetchLimiter, SequentialDetector } from './read-ahead.js';
import { lockSession, readSmallFile, sessionPath, writeFileAtomic } from './session-dir.js';
import { candidateTags, extendLineage, fileKey, sameVersion, touchedBlocks, versionTag, type Lineage } from './versions.js';
import { WriteBack, type FlushFailure, type FlushReport } from './write-back.js';
import type { WccAttr } from '../../nfs3/types.js';

const log = logger('cache');

/** Largest READ sent to the server for one piece of a block (the wire's MAX_DATA). */
const MAX_READ = 1 << 20;
/** How often a file's cache directory is listed for blocks other processes stored. */
const DISCOVER_EVERY_MS = 1000;
/** Files whose state (attributes, version, read-ahead) is remembered. */
const MAX_FILES = 50_000;

/**
 * The counters `gvfs cache stats` prints and tests and benchmarks read.
 * Block counters count blocks touched by client READs; bytes count payload.
 */
export interface CacheStats {
  dir: string;
  session: string;
  mode: 'write-back' | 'write-through';
  blockSize: number;
  capacity: number;
  /** Bytes of cached blocks this process accounts for, and the journal's bytes on disk. */
  used: number;
  blocks: number;
  journalBytes: number;
  hits: number;
  misses: number;
  /** READ payload bytes fetched from the server (demand and read-ahead). */
  bytesFetched: number;
  /** Bytes of client READs served from the disk cache. */
  bytesFromCache: number;
  /** Bytes of client READs served straight from a fetch. */
  bytesFromNetwork: number;
  serverReads: number;
  readAheadBlocks: number;
  evictions: number;
  invalidations: number;
  attrHits: number;
  attrMisses: number;
  lookupHits: number;
  lookupMisses: number;
  /** Bytes whose newest data is only in the journal. */
  dirtyBytes: number;
  /** What a flush still has to send (journal records, in bytes). */
  flushBacklog: { files: number; records: number; bytes: number };
  flushedBytes: number;
  flushRounds: number;
  flushFailures: number;
  discardedBytes: number;
  flushErrors: FlushFailure[];
}

interface FileState {
  key: string;
  fh: Buffer;
  /** Last server attributes and when they came (Date.now()). */
  attr?: Fattr3;
  at: number;
  fk?: string;
  tag?: string;
  lineage?: Lineage;
  /** Bumped at the start and end of each of our own WRITE/SETATTR on the server. */
  epoch: number;
  writing: number;
  /** Our writes' wcc (before → after) not yet chained to the version we know. */
  edges: Array<{ before: WccAttr; after: Fattr3; touched: number[] }>;
  seq?: SequentialDetector;
  getattr?: Promise<Fattr3>;
  /** Per caller: write permission checked at. */
  writable?: Map<string, number>;
}

/** The part of one block a client READ needs: block idx (blen bytes), [blockOff, blockOff+len) → buf[bufOff..]. */
interface Part {
  idx: number;
  blen: number;
  bufOff: number;
  blockOff: number;
  len: number;
}

interface Fetched {
  data: Buffer;
  /** The bytes are the whole block of the version asked for. */
  ok: boolean;
  /** All bytes came, but the server's version moved meanwhile because of our own writes (the overlay covers them). */
  ownChange?: boolean;
}

/**
 * The cache wrapper (proxy client: front end ∘ cache ∘ remote link).
 *
 * Reads: file data in blocks on local disk (block-store.ts) named by file
 * version (versions.ts), so nothing of an older version is ever served; a
 * version is trusted for `attrTimeoutMs`, then GETATTR checks it. Misses are
 * fetched whole-block with read-ahead on sequential access (read-ahead.ts).
 * Reads of a file with unflushed writes overlay them (read-your-writes) and
 * GETATTR reports the size including them.
 *
 * Writes: write-through (forwarded; blocks they touch are dropped, and the
 * server's wcc data carries the rest of the cache over to the new version),
 * or write-back (write-back.ts: journalled, acknowledged locally, flushed in
 * order). Namespace operations are write-through; a file's unflushed data is
 * flushed first when the operation could expose or lose it (SETATTR of a
 * dirty file, REMOVE of its name, RENAME over it).
 *
 * `ready` settles once the cache directory is locked, the journal recovered
 * and the control socket listening; every call waits for it.
 */
export class CacheBackend extends PassthroughBackend {
  readonly opts: ResolvedCacheOptions;
  readonly ready: Promise<void>;
  readonly store: BlockStore;
  readonly sessionDir: string;
  private wb?: WriteBack;
  private journal?: Journal;
  private readonly files = new Map<string, FileState>();
  private readonly names: NameCache;
  private readonly limiter: FetchLimiter;
  private readonly inflight = new Map<string, Promise<Fetched>>();
  private readonly puts = new Set<Promise<void>>();
  /** Fetched blocks on their way to disk: served from memory meanwhile. */
  private readonly staged = new Map<string, Buffer>();
  private readonly stagedGen = new Map<string, number>();
  private readonly maxPuts: number;
  private readonly bootVerf = randomBytes(8);
  private control?: { path: string; close(): Promise<void> };
  private lock?: { release(): Promise<void> };
  private timers: NodeJS.Timeout[] = [];
  private scanning?: Promise<void>;
  private closing = false;
  private readonly c = {
    hits: 0,
    misses: 0,
    bytesFetched: 0,
    bytesFromCache: 0,
    bytesFromNetwork: 0,
    serverReads: 0,
    readAheadBlocks: 0,
    invalidations: 0,
    attrHits: 0,
    attrMisses: 0,
  };

  constructor(inner: Backend, o: CacheOptions) {
    super(inner);
    this.opts = resolveCacheOptions(o);
    this.sessionDir = sessionPath(this.opts.dir, this.opts.session);
    this.store = new BlockStore({ dir: this.opts.dir, policy: this.opts.policy, limit: () => this.opts.capacity - (this.journal?.diskBytes ?? 0) });
    this.names = new NameCache(this.opts.dirTimeoutMs);
    this.limiter = new FetchLimiter(Math.max(4, Math.floor(this.opts.fetchBytesInFlight / this.opts.blockSize)));
    this.maxPuts = Math.max(4, Math.floor((32 << 20) / this.opts.blockSize));
    this.ready = this.open();
    this.ready.catch(() => undefined);
  }

  private async open(): Promise<void> {
    await f.mkdir(this.opts.dir);
    this.lock = await lockSession(this.sessionDir);
    try {
      await this.store.init();
      // The journal is opened in either mode: a write-through session still owes the server what an earlier write-back run journalled.
      const { journal, files } = await Journal.open(this.sessionDir, this.opts.journal);
      this.journal = journal;
      this.wb = new WriteBack(
        journal,
        {
          write: (cred, fh, off, data) => this.inner.write(cred, fh, off, data, StableHow.UNSTABLE),
          commit: (cred, fh) => this.inner.commit(cred, fh, 0, 0),
          writeStart: (fh) => this.writeStart(this.file(fh)),
          writeEnd: (fh, off, len, wcc, ok) => this.writeEnd(this.file(fh), off, len, wcc, ok),
          discarded: (fh) => (this.file(fh).at = 0),
        },
        {
          dirtyLimit: this.opts.dirtyLimit,
          dirtyMax: this.opts.dirtyMax,
          maxAgeMs: this.opts.maxDirtyAgeMs,
          flushWriteBytes: this.opts.flushWriteBytes,
          roundBytes: 64 << 20,
          admitWaitMs: this.opts.admitWaitMs,
          flushParallel: 4,
        },
        files,
      );
      if (files.length) {
        const s = this.wb.recoveredSummary;
        log.warn({ files: s.files, bytes: s.bytes, dir: this.sessionDir }, 'cache: journal holds unflushed writes from an earlier run; flushing them now');
        void this.wb.flushAll().catch(() => undefined);
      }
      const hot = new Set((await readSmallFile(path.join(this.sessionDir, 'hot.list')))?.split('\n').filter(Boolean) ?? []);
      this.scanning = this.store.scan(hot).catch((e) => log.warn({ err: e }, 'cache: scanning the cache directory failed'));
      if (this.opts.controlSocket) {
        this.control = await startControlSocket(this.sessionDir, async (req) => {
          if (req.op === 'flush') return { report: await this.flush({ discard: !!req.discard }) };
          if (req.op === 'stats') return { stats: this.stats() };
          throw new Error(`unknown request ${JSON.stringify(req.op)}`);
        });
      }
      const rescan = setInterval(() => {
        if (!this.scanning) this.scanning = this.store.scan().catch(() => undefined).finally(() => (this.scanning = undefined));
        void this.saveState();
      }, this.opts.rescanMs);
      rescan.unref();
      this.timers.push(rescan);
      log.info({ dir: this.opts.dir, session: this.opts.session, mode: this.opts.writeBack ? 'write-back' : 'write-through', capacity: this.opts.capacity, blockSize: this.opts.blockSize }, 'cache: ready');
    } catch (e) {
      await this.lock.release();
      throw e;
    }
  }

  private async up(): Promise<void> {
    try {
      await this.ready;
    } catch (e) {
      throw new FsError('IO', `cache unavailable: ${(e as Error).message}`);
    }
  }

  // ---------------------------------------------------------------- state

  private file(fh: Buffer): FileState {
    const key = fh.toString('hex');
    let s = this.files.get(key);
    if (!s) {
      if (this.files.size >= MAX_FILES) this.trimFiles();
      s = { key, fh: Buffer.from(fh), at: 0, epoch: 0, writing: 0, edges: [] };
      this.files.set(key, s);
    }
    return s;
  }

  private trimFiles(): void {
    for (const [k, s] of this.files) {
      if (this.files.size < MAX_FILES * 0.9) break;
      if (s.writing || s.getattr || this.wb?.dirty(k)) continue;
      this.files.delete(k);
    }
  }

  /** Attributes from the server (a reply of any kind). `epoch`: the file's epoch when the call went out. */
  private noteAttr(s: FileState, a: Fattr3, epoch?: number): void {
    if (epoch !== undefined && epoch !== s.epoch) return; // the call crossed one of our writes: may predate it
    if (s.writing) return;
    const now = Date.now();
    if (a.type === FType.REG) {
      s.fk ??= fileKey(this.opts.serverId, this.opts.blockSize, a);
      const tag = versionTag(a);
      if (s.tag !== tag) {
        if (s.tag !== undefined) {
          this.c.invalidations++;
          log.debug({ fh: s.key, from: s.tag, to: tag }, 'cache: file changed on the server; its cached blocks are dropped');
        }
        // Blocks of any other version of this file can never be served again.
        this.store.dropFile(s.fk, new Set([tag]));
        s.tag = tag;
        s.lineage = undefined;
        s.edges = [];
      }
    } else if (a.type === FType.DIR && s.attr && (s.attr.mtime.sec !== a.mtime.sec || s.attr.mtime.nsec !== a.mtime.nsec)) {
      this.names.bump(s.key);
    }
    s.attr = a;
    s.at = now;
  }

  /** Server attributes, from the cache while younger than the attribute timeout. */
  private async attrs(cred: Credentials, s: FileState): Promise<Fattr3> {
    if (s.attr && Date.now() - s.at < this.opts.attrTimeoutMs && !s.writing) {
      this.c.attrHits++;
      return s.attr;
    }
    this.c.attrMisses++;
    if (!s.getattr) {
      const ep = s.epoch;
      s.getattr = this.inner.getattr(cred, s.fh).then(
        (a) => {
          s.getattr = undefined;
          this.noteAttr(s, a, ep);
          return a;
        },
        (e) => {
          s.getattr = undefined;
          throw e;
        },
      );
    }
    return s.getattr;
  }

  /** What clients see: the server's attributes, with unflushed writes' size and time. */
  private present(s: FileState, a: Fattr3): Fattr3 {
    const d = this.wb?.dirty(s.key);
    if (!d) return a;
    const size = Math.max(a.size, d.maxEnd);
    const t = nfsTime(d.lastWriteAt);
    return { ...a, size, used: Math.max(a.used, size), mtime: t, ctime: t };
  }

  private presentMaybe(fh: Buffer | undefined, a: Fattr3 | undefined): Fattr3 | undefined {
    if (!fh || !a) return a;
    const s = this.file(fh);
    this.noteAttr(s, a, s.epoch);
    return this.present(s, a);
  }

  private noteWcc(fh: Buffer, wcc: WccData | undefined): void {
    if (wcc?.after) {
      const s = this.file(fh);
      this.noteAttr(s, wcc.after, s.epoch);
    }
  }

  private writeStart(s: FileState): void {
    s.writing++;
    s.epoch++;
  }

  /**
   * One of our writes (WRITE, or SETATTR of the size) ended. The blocks it
   * touched are dropped whatever their version; if the server's wcc data
   * chains from the version we know, the new version inherits the other
   * blocks (lineage), otherwise the file is checked again.
   */
  private writeEnd(s: FileState, off: number, len: number, wcc: WccData | undefined, ok: boolean): void {
    s.writing--;
    s.epoch++;
    const sizes = [s.attr?.size ?? 0, wcc?.before?.size ?? 0, wcc?.after?.size ?? 0];
    const touched = touchedBlocks(this.opts.blockSize, off, len, Math.min(...sizes), Math.max(...sizes));
    if (s.fk) this.store.dropBlocks(s.fk, touched);
    if (!ok || !wcc?.before || !wcc.after || !s.tag || !s.attr) {
      s.at = 0;
      s.edges = [];
      if (!s.writing) s.lineage = undefined;
      return;
    }
    s.edges.push({ before: wcc.before, after: wcc.after, touched });
    for (let moved = true; moved; ) {
      moved = false;
      const i = s.edges.findIndex((e) => sameVersion(e.before, s.attr!));
      if (i < 0) break;
      const e = s.edges.splice(i, 1)[0];
      const tag = versionTag(e.after);
      s.lineage = extendLineage(s.tag, tag, e.touched, s.lineage);
      s.tag = tag;
      s.attr = e.after;
      s.at = Date.now();
      moved = true;
    }
    if (!s.writing && s.edges.length) {
      // Someone else's change is in between: start over from the server's word.
      this.c.invalidations++;
      s.edges = [];
      s.lineage = undefined;
      s.tag = undefined;
      s.attr = undefined;
      s.at = 0;
      if (s.fk) this.store.dropFile(s.fk);
    }
  }

  // ---------------------------------------------------------------- reads

  override async read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<ReadResult> {
    await this.up();
    const s = this.file(fh);
    count = Math.min(count, MAX_READ);
    for (let attempt = 0; ; attempt++) {
      // Unflushed bytes first (see WriteBack.overlay), then the server's version.
      const overlay = this.wb ? await this.wb.overlay(s.key, offset, offset + count) : [];
      const a0 = await this.attrs(cred, s);
      // While our own writes are on the wire the chained version (s.attr) is the one the blocks are named by.
      const a = a0.type === FType.REG && s.tag && s.attr ? s.attr : a0;
      if (a.type !== FType.REG) {
        const r = await this.inner.read(cred, fh, offset, count);
        return { ...r, attr: this.presentMaybe(fh, r.attr) };
      }
      // No version to name blocks by (our own writes are on the wire and no chain is known): read uncached, still overlaid.
      const cached = !!(s.tag && s.fk);
      const size = Math.max(a.size, this.wb?.dirty(s.key)?.maxEnd ?? 0);
      if (offset >= size || count === 0) return { count: 0, eof: offset >= size, data: Buffer.alloc(0), attr: this.present(s, a) };
      const end = Math.min(offset + count, size);
      const buf = Buffer.allocUnsafe(end - offset);
      const srvEnd = Math.min(end, a.size);
      if (srvEnd > offset && !cached) await this.fillDirect(cred, s, buf, offset, srvEnd);
      else if (srvEnd > offset && !(await this.fill(cred, s, a, buf, offset, srvEnd, attempt >= 2))) {
        if (attempt < 3) continue; // the file changed under the read: read it again, all of one version
        throw new FsError('IO', 'the file keeps shrinking on the server during the read');
      }
      if (srvEnd < end) buf.fill(0, Math.max(0, srvEnd - offset));
      for (const p of overlay) {
        if (p.start >= end) continue;
        p.data.copy(buf, p.start - offset, 0, Math.min(p.data.length, end - p.start));
      }
      if (cached) this.readAhead(cred, s, a, offset, end);
      return { count: buf.length, eof: end >= size, data: buf, attr: this.present(s, a) };
    }
  }

  /** Server bytes [off, end) straight from the server, uncached (zeros past its end of file). */
  private async fillDirect(cred: Credentials, s: FileState, buf: Buffer, off: number, end: number): Promise<void> {
    let got = 0;
    while (off + got < end) {
      this.c.serverReads++;
      const r = await this.inner.read(cred, s.fh, off + got, Math.min(MAX_READ, end - off - got));
      r.data.copy(buf, got);
      got += r.count;
      this.c.bytesFetched += r.count;
      this.c.bytesFromNetwork += r.count;
      if (r.count === 0) break;
    }
    buf.fill(0, got, end - off);
  }

  /**
   * Server bytes [off, end) of version `a` into buf; false if the version
   * changed meanwhile (`accept`: unless all bytes came, which a last attempt
   * settles for, as a READ racing a WRITE on any server would). Blocks come
   * from the disk cache, from a fetch already on the wire, or from new
   * fetches — consecutive missing blocks in one READ of up to MAX_READ.
   */
  private async fill(cred: Credentials, s: FileState, a: Fattr3, buf: Buffer, off: number, end: number, accept: boolean): Promise<boolean> {
    const bs = this.opts.blockSize;
    const tag = s.tag!;
    const lin = s.lineage;
    const parts: Part[] = [];
    for (let i = Math.floor(off / bs); i * bs < end; i++) {
      const bStart = i * bs;
      const from = Math.max(off, bStart);
      const to = Math.min(end, bStart + bs);
      parts.push({ idx: i, blen: Math.min(bs, a.size - bStart), bufOff: from - off, blockOff: from - bStart, len: to - from });
    }
    let missing = await this.fromCache(s, tag, lin, parts, buf);
    if (!missing.length) return true;
    // Not known here: another process (or an earlier run) may have stored them.
    await this.discover(s, tag, a.size);
    missing = await this.fromCache(s, tag, lin, missing, buf);
    if (!missing.length) return true;
    this.c.misses += missing.length;
    const fetches = new Map<number, Promise<Fetched>>();
    let run: number[] = [];
    const go = () => {
      if (run.length) for (const [i, p] of this.fetchRun(cred, s, tag, a.size, run[0], run.length, true)) fetches.set(i, p);
      run = [];
    };
    for (const p of missing) {
      const cur = this.inflight.get(BlockStore.key(s.fk!, p.idx, tag));
      if (cur) {
        go();
        fetches.set(p.idx, cur);
        continue;
      }
      if (run.length && (p.idx !== run[run.length - 1] + 1 || (run.length + 1) * bs > MAX_READ)) go();
      run.push(p.idx);
    }
    go();
    const ok = await Promise.all(
      missing.map(async (p) => {
        const r = await fetches.get(p.idx)!;
        if (!r.ok && !((r.ownChange || accept) && r.data.length === p.blen)) return false;
        r.data.copy(buf, p.bufOff, p.blockOff, p.blockOff + p.len);
        if (r.ok) this.store.noteRead(BlockStore.key(s.fk!, p.idx, tag), p.blockOff, p.blockOff + p.len);
        this.c.bytesFromNetwork += p.len;
        return true;
      }),
    );
    return ok.every(Boolean);
  }

  /** Copy what the disk cache (or a block on its way there) has; returns the parts it did not have, in order. */
  private async fromCache(s: FileState, tag: string, lin: Lineage | undefined, parts: Part[], buf: Buffer): Promise<Part[]> {
    const fk = s.fk!;
    const got = await Promise.all(
      parts.map(async (p) => {
        const tags = candidateTags(tag, p.idx, lin);
        for (const t of tags) {
          const k = BlockStore.key(fk, p.idx, t);
          if (this.store.has(k) && (await this.store.readInto(k, p.blen, buf, p.bufOff, p.blockOff, p.len))) return this.hit(p.len);
        }
        const primary = BlockStore.key(fk, p.idx, tag);
        const st = this.staged.get(primary);
        if (st && st.length === p.blen && this.stagedGen.get(primary) === this.store.gen(fk)) {
          st.copy(buf, p.bufOff, p.blockOff, p.blockOff + p.len);
          this.store.noteRead(primary, p.blockOff, p.blockOff + p.len);
          return this.hit(p.len);
        }
        return false;
      }),
    );
    return parts.filter((_, i) => !got[i]);
  }

  /** Blocks of this version other processes stored (see BlockStore.discover). */
  private discover(s: FileState, tag: string, size: number): Promise<void> {
    const bs = this.opts.blockSize;
    const tags = new Set([tag]);
    if (s.lineage && s.lineage.tag === tag) {
      tags.add(s.lineage.base);
      for (const t of s.lineage.overrides.values()) tags.add(t);
    }
    return this.store.discover(s.fk!, tags, (idx) => Math.min(bs, size - idx * bs), DISCOVER_EVERY_MS);
  }

  private hit(len: number): true {
    this.c.hits++;
    this.c.bytesFromCache += len;
    return true;
  }

  /**
   * Fetch blocks first..first+n-1 of version `tag` in as few READs as the
   * wire allows, each block registered as in flight so no one fetches it
   * twice; a block is stored only if the server's attributes after the READ
   * still name that version and none of our own writes to the file crossed it.
   */
  private fetchRun(cred: Credentials, s: FileState, tag: string, size: number, first: number, n: number, demand: boolean): Map<number, Promise<Fetched>> {
    const run = this.doFetchRun(cred, s, tag, size, first, n, demand);
    const out = new Map<number, Promise<Fetched>>();
    for (let i = 0; i < n; i++) {
      const key = BlockStore.key(s.fk!, first + i, tag);
      const p: Promise<Fetched> = run.then((rs) => rs[i]);
      void p.catch(() => undefined).finally(() => {
        if (this.inflight.get(key) === p) this.inflight.delete(key);
      });
      this.inflight.set(key, p);
      out.set(first + i, p);
    }
    return out;
  }

  private async doFetchRun(cred: Credentials, s: FileState, tag: string, size: number, first: number, n: number, demand: boolean): Promise<Fetched[]> {
    const bs = this.opts.blockSize;
    const start = first * bs;
    const len = Math.min(n * bs, size - start);
    const ep = s.epoch;
    const gen = this.store.gen(s.fk!);
    const clean = s.writing === 0;
    let data: Buffer | undefined;
    let got = 0;
    let same = true;
    await this.limiter.run(demand, async () => {
      while (got < len) {
        this.c.serverReads++;
        const r = await this.inner.read(cred, s.fh, start + got, Math.min(MAX_READ, len - got));
        // The usual case, one READ for the whole run: keep its bytes (a view of the reply, ours now) without a copy.
        if (got === 0 && r.count === len) data = r.data;
        else r.data.copy((data ??= Buffer.allocUnsafe(len)), got);
        got += r.count;
        this.c.bytesFetched += r.count;
        if (r.attr) {
          if (versionTag(r.attr) !== tag) same = false;
          this.noteAttr(s, r.attr, ep);
        } else same = false;
        if (r.count === 0) break;
      }
    });
    data ??= Buffer.alloc(0);
    const keep = same && clean && s.epoch === ep && s.tag === tag && !this.closing;
    const out: Fetched[] = [];
    for (let i = 0; i < n; i++) {
      const bStart = i * bs;
      const blen = Math.min(bs, len - bStart);
      const bytes = data.subarray(Math.min(bStart, got), Math.min(bStart + blen, got));
      if (bytes.length < blen || !same) {
        out.push({ data: bytes, ok: false, ownChange: !clean || s.epoch !== ep });
        continue;
      }
      if (keep) this.storeBlock(BlockStore.key(s.fk!, first + i, tag), bytes, 0, gen);
      out.push({ data: bytes, ok: true });
    }
    return out;
  }

  private storeBlock(key: string, data: Buffer, readTo: number, gen: number): void {
    this.staged.set(key, data);
    this.stagedGen.set(key, gen);
    const p = (async () => {
      while (this.puts.size > this.maxPuts) await Promise.race(this.puts);
      await this.store.put(key, data, readTo, gen);
    })().catch((e) => log.warn({ err: e, key }, 'cache: storing a block failed (disk full?); it will be fetched again'));
    this.puts.add(p);
    void p.finally(() => {
      this.puts.delete(p);
      if (this.staged.get(key) === data) {
        this.staged.delete(key);
        this.stagedGen.delete(key);
      }
    });
  }

  /** On sequential access, fetch the next blocks ahead of the reader, concurrently. */
  private readAhead(cred: Credentials, s: FileState, a: Fattr3, off: number, end: number): void {
    const bs = this.opts.blockSize;
    s.seq ??= new SequentialDetector(Math.max(2, Math.ceil((1 << 20) / bs)), Math.max(2, Math.floor(this.opts.readAheadBytes / bs)));
    const n = s.seq.onRead(off, end);
    if (!n || a.size === 0) return;
    const last = Math.floor((a.size - 1) / bs);
    const cur = Math.floor((end - 1) / bs);
    const to = Math.min(last, cur + n);
    const tag = s.tag!;
    const from = Math.max(cur + 1, s.seq.next);
    s.seq.next = Math.max(s.seq.next, to + 1);
    if (from > to) return;
    void (async () => {
      await this.discover(s, tag, a.size);
      if (s.tag !== tag) return;
      let run: number[] = [];
      const go = () => {
        if (!run.length) return;
        this.c.readAheadBlocks += run.length;
        for (const p of this.fetchRun(cred, s, tag, a.size, run[0], run.length, false).values()) p.catch((e) => log.debug({ err: e }, 'cache: read-ahead failed'));
        run = [];
      };
      for (let i = from; i <= to; i++) {
        const key = BlockStore.key(s.fk!, i, tag);
        if (candidateTags(tag, i, s.lineage).some((t) => this.store.has(BlockStore.key(s.fk!, i, t))) || this.inflight.has(key) || this.staged.has(key)) {
          go();
          continue;
        }
        if (run.length && (run.length + 1) * bs > MAX_READ) go();
        run.push(i);
      }
      go();
    })().catch((e) => log.debug({ err: e }, 'cache: read-ahead failed'));
  }

  // ---------------------------------------------------------------- writes

  override async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    await this.up();
    const s = this.file(fh);
    if (!this.opts.writeBack) {
      if (this.wb!.dirty(s.key)) await this.flushOne(s);
      this.writeStart(s);
      let r: WriteResult;
      try {
        r = await this.inner.write(cred, fh, offset, data, stable);
      } catch (e) {
        this.writeEnd(s, offset, data.length, (e as FsError).wcc, false);
        throw e;
      }
      this.writeEnd(s, offset, r.count, r.wcc, true);
      return r;
    }
    // The server unreachable: the journal still takes writes of a file we know (attributes older than the timeout).
    const a = await this.attrs(cred, s).catch((e) => {
      if (s.attr && isFsError(e, 'IO')) return s.attr;
      throw e;
    });
    if (a.type === FType.DIR) throw new FsError('ISDIR', 'write to a directory', { wcc: { after: a } });
    if (a.type !== FType.REG) return this.inner.write(cred, fh, offset, data, stable);
    if (offset + data.length > Number.MAX_SAFE_INTEGER) throw new FsError('FBIG', 'offset too large');
    await this.checkWritable(cred, s);
    const pre = this.present(s, a);
    if (data.length) await this.wb!.write(cred, fh, offset, data, stable, stable !== StableHow.UNSTABLE);
    return {
      wcc: { before: { size: pre.size, mtime: pre.mtime, ctime: pre.ctime }, after: this.present(s, s.attr ?? a) },
      count: data.length,
      committed: stable === StableHow.UNSTABLE ? StableHow.UNSTABLE : StableHow.FILE_SYNC,
      verf: this.bootVerf,
    };
  }

  /** A write-back write is checked against the server's permissions once per caller per attribute timeout. */
  private async checkWritable(cred: Credentials, s: FileState): Promise<void> {
    const who = `${cred.uid}:${cred.gid}:${cred.gids.join(',')}:${cred.session ?? ''}`;
    const at = s.writable?.get(who);
    if (at !== undefined && Date.now() - at < Math.max(this.opts.attrTimeoutMs, 1000)) return;
    let r;
    try {
      r = await this.inner.access(cred, s.fh, ACCESS3_MODIFY | ACCESS3_EXTEND);
    } catch (e) {
      if (at !== undefined && isFsError(e, 'IO')) return; // allowed before, server unreachable now
      throw e;
    }
    if (!(r.access & (ACCESS3_MODIFY | ACCESS3_EXTEND))) throw new FsError('ACCES', 'no write permission', { wcc: { after: r.attr } });
    (s.writable ??= new Map()).set(who, Date.now());
  }

  override async commit(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<{ wcc: WccData; verf: Buffer }> {
    await this.up();
    const s = this.file(fh);
    if (!this.opts.writeBack) {
      if (this.wb!.dirty(s.key)) await this.flushOne(s);
      return this.inner.commit(cred, fh, offset, count);
    }
    await this.wb!.commit();
    const a = s.attr ?? (await this.attrs(cred, s));
    return { wcc: { after: this.present(s, a) }, verf: this.bootVerf };
  }

  private async flushOne(s: FileState): Promise<void> {
    await this.wb!.flushFile(s.key);
  }

  // ---------------------------------------------------------------- attributes and names

  override async getattr(cred: Credentials, fh: Buffer): Promise<Fattr3> {
    await this.up();
    const s = this.file(fh);
    return this.present(s, await this.attrs(cred, s));
  }

  override async setattr(cred: Credentials, fh: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<WccData> {
    await this.up();
    const s = this.file(fh);
    // Unflushed data first: a truncate must land after it, and a flush after a chmod/utimes would undo the times.
    if (this.wb!.dirty(s.key)) await this.flushOne(s);
    const old = s.attr?.size ?? 0;
    this.writeStart(s);
    try {
      const wcc = await this.inner.setattr(cred, fh, attrs, guard);
      const size = attrs.size ?? old;
      this.writeEnd(s, Math.min(old, size), attrs.size !== undefined ? Math.abs(old - size) : 0, wcc, true);
      return wcc;
    } catch (e) {
      this.writeEnd(s, 0, 0, undefined, false);
      throw e;
    }
  }

  override async lookup(cred: Credentials, dir: Buffer, name: string): Promise<{ fh: Buffer; attr?: Fattr3; dirAttr?: Fattr3 }> {
    await this.up();
    const dk = dir.toString('hex');
    const cached = this.names.get(dk, name);
    if (cached) {
      const s = this.file(cached);
      const fresh = s.attr && Date.now() - s.at < this.opts.attrTimeoutMs && !s.writing;
      return { fh: cached, attr: fresh ? this.present(s, s.attr!) : undefined };
    }
    const r = await this.inner.lookup(cred, dir, name);
    this.names.set(dk, name, r.fh);
    if (r.dirAttr) this.noteAttr(this.file(dir), r.dirAttr);
    return { ...r, attr: this.presentMaybe(r.fh, r.attr) };
  }

  override async access(cred: Credentials, fh: Buffer, mask: number): Promise<{ access: number; attr?: Fattr3 }> {
    await this.up();
    const r = await this.inner.access(cred, fh, mask);
    return { ...r, attr: this.presentMaybe(fh, r.attr) };
  }

  override async readlink(cred: Credentials, fh: Buffer): Promise<{ path: string; attr?: Fattr3 }> {
    await this.up();
    return this.inner.readlink(cred, fh);
  }

  private created(dir: Buffer, name: string, r: NewObject): NewObject {
    const dk = dir.toString('hex');
    this.names.drop(dk, name);
    if (r.fh) this.names.set(dk, name, r.fh);
    this.noteWcc(dir, r.dirWcc);
    return { ...r, attr: this.presentMaybe(r.fh, r.attr) };
  }

  override async create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    await this.up();
    const dk = dir.toString('hex');
    // CREATE UNCHECKED with a size truncates an existing file: its unflushed data must land first.
    const old = how.mode !== 'exclusive' ? this.names.get(dk, name) : undefined;
    if (old && this.wb!.dirty(old.toString('hex'))) await this.flushOne(this.file(old));
    const r = await this.inner.create(cred, dir, name, how);
    if (r.fh) {
      const s = this.file(r.fh);
      s.at = 0;
      if (s.fk) this.store.dropFile(s.fk);
    }
    return this.created(dir, name, r);
  }
  override async mkdir(cred: Credentials, dir: Buffer, name: string, attrs: Sattr3): Promise<NewObject> {
    await this.up();
    return this.created(dir, name, await this.inner.mkdir(cred, dir, name, attrs));
  }
  override async symlink(cred: Credentials, dir: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject> {
    await this.up();
    return this.created(dir, name, await this.inner.symlink(cred, dir, name, target, attrs));
  }
  override async mknod(cred: Credentials, dir: Buffer, name: string, what: MknodType): Promise<NewObject> {
    await this.up();
    return this.created(dir, name, await this.inner.mknod(cred, dir, name, what));
  }

  /** The handle a name in a directory leads to, if any file with unflushed data might be it. */
  private async dirtyTarget(cred: Credentials, dir: Buffer, name: string): Promise<FileState | undefined> {
    if (!this.wb!.backlog.files) return undefined;
    const dk = dir.toString('hex');
    const fh = this.names.get(dk, name) ?? (await this.inner.lookup(cred, dir, name).then((r) => r.fh, () => undefined));
    return fh && this.wb!.dirty(fh.toString('hex')) ? this.file(fh) : undefined;
  }

  override async remove(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    await this.up();
    // Other links may keep the file: its data must be on the server before a name goes.
    const t = await this.dirtyTarget(cred, dir, name);
    if (t) await this.flushOne(t);
    const dk = dir.toString('hex');
    const fh = this.names.get(dk, name);
    const wcc = await this.inner.remove(cred, dir, name);
    this.names.drop(dk, name);
    if (fh) this.file(fh).at = 0;
    this.noteWcc(dir, wcc);
    return wcc;
  }

  override async rmdir(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    await this.up();
    const wcc = await this.inner.rmdir(cred, dir, name);
    this.names.drop(dir.toString('hex'), name);
    this.noteWcc(dir, wcc);
    return wcc;
  }

  override async rename(cred: Credentials, fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<{ fromWcc: WccData; toWcc: WccData }> {
    await this.up();
    const t = await this.dirtyTarget(cred, toDir, toName);
    if (t) await this.flushOne(t);
    const fk = fromDir.toString('hex');
    const tk = toDir.toString('hex');
    const moved = this.names.get(fk, fromName);
    const r = await this.inner.rename(cred, fromDir, fromName, toDir, toName);
    this.names.drop(fk, fromName);
    this.names.drop(tk, toName);
    if (moved) {
      this.names.set(tk, toName, moved);
      this.file(moved).at = 0;
    }
    if (t) t.at = 0;
    this.noteWcc(fromDir, r.fromWcc);
    this.noteWcc(toDir, r.toWcc);
    return r;
  }

  override async link(cred: Credentials, fh: Buffer, dir: Buffer, name: string): Promise<{ attr?: Fattr3; dirWcc: WccData }> {
    await this.up();
    const r = await this.inner.link(cred, fh, dir, name);
    this.names.set(dir.toString('hex'), name, fh);
    this.file(fh).at = 0;
    this.noteWcc(dir, r.dirWcc);
    return { ...r, attr: r.attr && this.present(this.file(fh), r.attr) };
  }

  override async readdirplus(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>> {
    await this.up();
    const page = await this.inner.readdirplus(cred, dir, cookie, verf, dircount, maxcount);
    const dk = dir.toString('hex');
    if (page.dirAttr) this.noteAttr(this.file(dir), page.dirAttr);
    const entries = page.entries.map((e) => {
      if (!e.fh) return e;
      this.names.set(dk, e.name, e.fh);
      return e.attr ? { ...e, attr: this.presentMaybe(e.fh, e.attr) } : e;
    });
    return { ...page, entries };
  }

  // ---------------------------------------------------------------- control

  stats(): CacheStats {
    const wb = this.wb;
    return {
      dir: this.opts.dir,
      session: this.opts.session,
      mode: this.opts.writeBack ? 'write-back' : 'write-through',
      blockSize: this.opts.blockSize,
      capacity: this.opts.capacity,
      used: this.store.used,
      blocks: this.store.count,
      journalBytes: this.journal?.diskBytes ?? 0,
      ...this.c,
      evictions: this.store.evictions,
      lookupHits: this.names.hits,
      lookupMisses: this.names.misses,
      dirtyBytes: wb?.dirtyBytes ?? 0,
      flushBacklog: wb?.backlog ?? { files: 0, records: 0, bytes: 0 },
      flushedBytes: wb?.stats.flushedBytes ?? 0,
      flushRounds: wb?.stats.flushRounds ?? 0,
      flushFailures: wb?.stats.flushFailures ?? 0,
      discardedBytes: wb?.stats.discardedBytes ?? 0,
      flushErrors: wb?.errors ?? [],
    };
  }

  /** Deliver every unflushed write; with `discard`, drop (with a warning) what cannot be delivered. */
  async flush(o: { discard?: boolean } = {}): Promise<FlushReport> {
    await this.up();
    const r = await this.wb!.flushAll();
    if (o.discard && r.failed.length) {
      r.discardedBytes = await this.wb!.discard(r.failed.map((x) => x.fh));
      r.failed = [];
    }
    return r;
  }

  /** Wait until blocks being stored are on disk (tests and benchmarks). */
  async settle(): Promise<void> {
    while (this.puts.size || this.inflight.size) await Promise.allSettled([...this.puts, ...this.inflight.values()]);
  }

  private async saveState(): Promise<void> {
    try {
      await writeFileAtomic(path.join(this.sessionDir, 'hot.list'), this.store.policy.protectedKeys().join('\n') + '\n');
      await writeFileAtomic(path.join(this.sessionDir, 'stats.json'), JSON.stringify({ ...this.stats(), savedAt: new Date().toISOString(), pid: process.pid }) + '\n');
    } catch (e) {
      log.warn({ err: e }, 'cache: could not save the hot list / stats');
    }
  }

  override async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    try {
      await this.ready;
    } catch {
      await this.inner.close();
      return;
    }
    for (const t of this.timers) clearInterval(t);
    await this.wb!.close();
    await this.settle();
    await this.scanning;
    await this.saveState();
    await this.control?.close();
    await this.store.close();
    await this.journal!.close();
    await this.lock!.release();
    await this.inner.close();
  }
}

function nfsTime(ms: number): NfsTime {
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}

export { isFsError };
