import type { Backend, SourcedRead } from '../../backend/backend.js';
import { localReadsOf, wholeFilesOf, type LocalRead, type LocalReads, type WholeFiles } from '../../backend/capabilities.js';
import { fetchMeta, setOrder, type ExtLink } from '../../ext/meta-client.js';
import { MAX_BULK, MAX_ORDER, MetaStatus } from '../../ext/meta-codec.js';
import { Codec } from '../../meta/compress.js';
import { decodeMeta, isZero, sameVersion, type FileMeta, type TransferHint } from '../../meta/format.js';
import { FType, type StableHow } from '../../nfs3/constants.js';
import type { Fattr3, NfsTime, Sattr3, WccData, WriteResult } from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import { newCounters, snapshot, type CounterSnapshot, type DataCounters } from '../../util/counters.js';
import { logger } from '../../util/log.js';
import { isFsError } from '../../backend/errors.js';
import { AccessGate } from '../cache/access-gate.js';
import type { CacheBackend } from '../cache/cache-backend.js';
import { PassthroughBackend } from '../passthrough.js';
import { BulkFetcher, MetaUnusable, type FetcherCounters } from './bulk-fetcher.js';

const log = logger('meta');

export interface MetaOptions {
  /** The link to the proxy server (GVFS extension calls). */
  link: ExtLink;
  /** The disk cache under this wrapper: bulk-fetched chunks land in it, and it decides the chunk size. */
  cache?: CacheBackend;
  /** Bulk calls on the wire at once for a background transfer (default 4). */
  window?: number;
  /** How long a file's version is trusted before it is checked again (ms, default 1000; the cache's attribute timeout applies below). */
  validateMs?: number;
  /** How long "no meta-data" is remembered before asking again (ms, default 30 s). */
  absentMs?: number;
  /** Compression asked of the proxy server (default zstd). */
  compress?: boolean;
  /** Run background transfers (whole-file, prefetch); off: zero blocks and verified demand reads only. */
  background?: boolean;
  /** Files smaller than this are read the plain way, without asking for meta-data (default 1 MiB). */
  minSize?: number;
  /** The session's data counters (util/counters.ts; default: the cache's, else new ones). */
  counters?: DataCounters;
}

export const DEFAULT_MIN_SIZE = 1 << 20;

/** `gvfs meta stats`: the session's data counters (zeroBytes, bulkWireBytes, bulkRawBytes ... defined in util/counters.ts) and the meta-data layer's own. */
export interface MetaStats extends FetcherCounters, CounterSnapshot {
  files: number;
  withMeta: number;
  /** Bytes of client READs answered through the meta-data path (zero or verified data). */
  metaBytes: number;
  /** Bytes read the plain way (no meta-data, stale, retired). */
  plainBytes: number;
  metaFetches: number;
  stale: number;
  retired: number;
  transfers: number;
  recording: boolean;
}

interface FileEntry {
  fh: Buffer;
  /** undefined: not looked up yet; null: none usable. */
  meta?: FileMeta | null;
  attr?: Fattr3;
  checkedAt: number;
  retryAt: number;
  loading?: Promise<void>;
  /** Written through this mount: the meta-data describes a version that is gone. */
  written?: boolean;
  fetcher?: BulkFetcher;
}

interface Recording {
  files: Map<string, { fh: Buffer; cred: Credentials; meta: FileMeta; order: number[]; seen: Set<number> }>;
}

const MAX_FILES = 10_000;

/**
 * The meta-data wrapper (proxy client: front end ∘ meta-data ∘ cache ∘
 * link). For a file whose meta-data matches its current version:
 * - reads of blocks the meta-data names zero are answered here, with no traffic;
 * - other blocks come through BULK_READ (compressed), each checked against
 *   its hash before it is served or cached — or from the disk cache;
 * - a whole-file hint starts one background transfer of the file's
 *   non-zero blocks at the first read, a prefetch hint one in the recorded
 *   order; readers take what has arrived and jump the queue for the rest.
 * A file without (usable) meta-data is read through the layer below as
 * ever. A write through this mount retires the file's meta-data here.
 */
export class MetaBackend extends PassthroughBackend {
  private readonly files = new Map<string, FileEntry>();
  private recording?: Recording;
  private readonly c = {
    metaBytes: 0,
    plainBytes: 0,
    metaFetches: 0,
    stale: 0,
    retired: 0,
    transfers: 0,
  };
  private readonly fc: FetcherCounters = { bulkCalls: 0, demandChunks: 0, backgroundChunks: 0, hashMismatches: 0, refetches: 0 };
  readonly counters: DataCounters;
  /**
   * Read permission per caller (cache/access-gate.ts): the cache's gate, or
   * one of our own without a cache. Zero blocks answered here, chunks a
   * transfer brought for another caller and cached blocks are served only
   * to a caller it lets through.
   */
  private readonly gate: AccessGate;
  /** Invalidations from the cache so far: attributes of a reply that crossed one are not kept. */
  private invalSeen = 0;

  constructor(
    inner: Backend,
    private readonly o: MetaOptions,
  ) {
    super(inner);
    this.counters = o.counters ?? o.cache?.counters ?? newCounters();
    this.gate = o.cache?.gate ?? new AccessGate((cred, fh, mask) => this.inner.access(cred, fh, mask), () => this.o.validateMs ?? 1000);
    // A file the cache drops (changed elsewhere) is checked again here too before its meta-data is used.
    o.cache?.invalidations.onInvalidate((w) => {
      this.invalSeen++;
      if (w === 'all') for (const f of this.files.values()) f.checkedAt = 0;
      else {
        const f = this.files.get(w.toString('hex'));
        if (f) f.checkedAt = 0;
      }
    });
    o.cache?.controlOps.set('meta-stats', async () => ({ stats: this.stats() }));
    o.cache?.controlOps.set('meta-record', async (req) => {
      if (req.action === 'start') return { started: this.startRecording() };
      if (req.action === 'stop') return { files: await this.stopRecording((req.hint as TransferHint | undefined) ?? 'prefetch') };
      throw new Error('meta-record: action is start or stop');
    });
  }

  stats(): MetaStats {
    let withMeta = 0;
    for (const f of this.files.values()) if (f.meta) withMeta++;
    return { ...snapshot(this.counters, this.o.cache?.channelTotals?.()), files: this.files.size, withMeta, ...this.c, ...this.fc, recording: !!this.recording };
  }

  /** Chunks a file's background transfer still has to bring (0: none running or done). */
  pending(fh: Buffer): number {
    return this.files.get(fh.toString('hex'))?.fetcher?.pending ?? 0;
  }

  private entry(fh: Buffer): FileEntry {
    const k = fh.toString('hex');
    let f = this.files.get(k);
    if (!f) {
      if (this.files.size >= MAX_FILES) {
        for (const [key, e] of this.files) {
          if (!e.fetcher || !e.fetcher.pending) {
            e.fetcher?.stop();
            this.files.delete(key);
            break;
          }
        }
      }
      this.files.set(k, (f = { fh, checkedAt: 0, retryAt: 0 }));
    }
    return f;
  }

  /** The file's usable meta-data and current attributes, or undefined (read it the plain way). */
  /** usable() for a read: a refusal is the caller's answer; any other failure to check means a plain read. */
  private async usableForRead(cred: Credentials, fh: Buffer): Promise<Awaited<ReturnType<MetaBackend['usable']>>> {
    try {
      return await this.usable(cred, fh);
    } catch (e) {
      if (isFsError(e, 'ACCES')) throw e;
      log.debug({ err: e }, 'meta-data check failed; plain read');
      return undefined;
    }
  }

  private async usable(cred: Credentials, fh: Buffer): Promise<{ f: FileEntry; meta: FileMeta; attr: Fattr3 } | undefined> {
    const f = this.entry(fh);
    const now = Date.now();
    if (f.written || (f.meta === null && now < f.retryAt)) return undefined;
    const a = !f.attr || now - f.checkedAt >= (this.o.validateMs ?? 1000) ? this.checked(f, await this.inner.getattr(cred, fh), Date.now()) : f.attr;
    // Small files gain nothing from meta-data, and asking would cost each one a round trip.
    if (a.type !== FType.REG || a.size < (this.o.minSize ?? DEFAULT_MIN_SIZE)) return undefined;
    // Nothing of the file (its meta-data, zero blocks, chunks) for a caller the server does not let read it.
    await this.gate.check(cred, fh);
    if (f.meta === undefined || (f.meta === null && now >= f.retryAt)) {
      f.loading ??= this.load(cred, f, a).finally(() => (f.loading = undefined));
      await f.loading;
    }
    return f.meta ? { f, meta: f.meta, attr: a } : undefined;
  }

  /** The file's attributes as of `at`: its meta-data is retired if they show another version. */
  private checked(f: FileEntry, a: Fattr3, at: number): Fattr3 {
    f.checkedAt = at;
    if (f.attr && f.meta && !sameVersion(f.meta, a)) this.retire(f, 'the file changed on the server');
    return (f.attr = a);
  }

  private async load(cred: Credentials, f: FileEntry, a: Fattr3): Promise<void> {
    this.c.metaFetches++;
    try {
      const r = await fetchMeta(this.o.link, cred, f.fh);
      if (r.status === MetaStatus.OK && r.bytes) {
        const m = decodeMeta(r.bytes);
        if (sameVersion(m, a)) {
          f.meta = m;
          log.debug({ size: m.size, hint: m.hint, blockSize: m.blockSize }, 'meta-data in use');
          return;
        }
        r.status = MetaStatus.STALE;
      }
      if (r.status === MetaStatus.STALE) {
        this.c.stale++;
        log.info({ fileid: String(a.fileid) }, 'meta-data is stale (the file changed after meta gen): reading on demand');
      } else if (r.status !== MetaStatus.NONE) log.debug({ status: r.status, nfsstat: r.nfsstat }, 'meta-data unavailable');
    } catch (e) {
      log.warn({ err: e }, 'meta-data lookup failed: reading on demand');
    }
    f.meta = null;
    f.retryAt = Date.now() + (this.o.absentMs ?? 30_000);
  }

  private retire(f: FileEntry, why: string): void {
    if (!f.meta) return;
    this.c.retired++;
    log.warn({ why }, 'meta-data retired for a file; reading it on demand');
    f.fetcher?.stop();
    f.fetcher = undefined;
    f.meta = null;
    f.retryAt = Date.now() + (this.o.absentMs ?? 30_000);
  }

  /** Chunks are the cache's blocks when they are whole multiples of meta-data blocks and fit one BULK_READ. */
  private chunkSize(m: FileMeta): number {
    const cb = this.o.cache?.opts.blockSize;
    if (cb && cb % m.blockSize === 0 && cb <= MAX_BULK) return cb;
    return Math.max(1, Math.floor(MAX_BULK / m.blockSize)) * m.blockSize;
  }

  private fetcher(cred: Credentials, f: FileEntry, m: FileMeta, a: Fattr3): BulkFetcher {
    if (f.fetcher) return f.fetcher;
    const cache = this.o.cache;
    const chunkSize = this.chunkSize(m);
    const storable = !!cache && chunkSize === cache.opts.blockSize;
    f.fetcher = new BulkFetcher({
      link: this.o.link,
      cred,
      fh: f.fh,
      meta: m,
      chunkSize,
      window: this.o.window ?? 4,
      codec: this.o.compress === false ? Codec.NONE : Codec.ZSTD,
      counters: this.fc,
      bytes: this.counters,
      deliver: storable ? (off, data) => cache.offer(f.fh, a, off, data) : undefined,
      cached: storable ? (off, end) => cache.hasCached(f.fh, a, off, end) : undefined,
    });
    // Background transfers need somewhere to put what they bring: the disk cache.
    if (storable && this.o.background !== false && m.hint !== 'ondemand') {
      const per = chunkSize / m.blockSize;
      const order = m.hint === 'whole' ? range(f.fetcher.nChunks) : m.order.map((i) => Math.floor(i / per));
      if (order.length) {
        this.c.transfers++;
        f.fetcher.start(order);
      }
    }
    return f.fetcher;
  }

  override async read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead> {
    const u = await this.usableForRead(cred, fh);
    if (!u) return this.plain(cred, fh, offset, count);
    try {
      return await this.metaRead(cred, u.f, u.meta, u.attr, offset, count);
    } catch (e) {
      if (e instanceof MetaUnusable) this.retire(u.f, e.message);
      else log.warn({ err: e }, 'meta-data read failed; plain read');
      return this.plain(cred, fh, offset, count);
    }
  }

  /**
   * Optional capability (backend/capabilities.ts): the layer below's local
   * answer. A file without usable meta-data is read plainly, so that answer
   * is ours as it is. For a file with meta-data, when the cache holds every
   * block of the range (zero blocks included: their bytes are zeros there
   * too), the bytes are the ones metaRead would copy; what metaRead does
   * besides is done here too — the order recorded, the bytes counted as
   * zero or cache — and the cache reads nothing ahead (the prefetch is
   * ours, and zero blocks never cross the link). Otherwise undefined: read.
   */
  get localReads(): LocalReads | undefined {
    const below = localReadsOf(this.inner);
    return below && { readLocal: (cred, fh, offset, count) => this.readLocal(below, cred, fh, offset, count) };
  }

  /**
   * Optional capability: the layer below's whole local file. Its bytes are
   * the ones metaRead would give (a zero block is zeros there too) — except
   * while the order of reads is recorded (meta record): a file with
   * meta-data is not handed over then, as a kernel reading the file itself
   * would leave its reads out of the order.
   */
  get wholeFiles(): WholeFiles | undefined {
    const below = wholeFilesOf(this.inner);
    return (
      below && {
        wholeFile: async (cred, fh) => (this.recording && (await this.usableForRead(cred, fh)) ? undefined : below.wholeFile(cred, fh)),
      }
    );
  }

  private async readLocal(below: LocalReads, cred: Credentials, fh: Buffer, offset: number, count: number): Promise<LocalRead | undefined> {
    const u = await this.usableForRead(cred, fh);
    if (!u) {
      const r = await below.readLocal(cred, fh, offset, count);
      return r && this.counting(r, 'plainBytes');
    }
    const { f, meta: m, attr: a } = u;
    const end = Math.min(offset + count, m.size);
    if (offset >= end) return undefined;
    // metaRead never fails for the cache's sake (it reads around it): neither does this, it leaves the read to metaRead.
    const r = await below.readLocal(cred, fh, offset, end - offset, { readAhead: false }).catch((e) => {
      if (isFsError(e, 'ACCES')) throw e;
      log.debug({ err: e }, 'local read of a file with meta-data failed; reading it through the meta-data');
      return undefined;
    });
    if (!r) return undefined;
    if (r.count !== end - offset) {
      r.release(false);
      return undefined;
    }
    const bs = m.blockSize;
    const data: number[] = [];
    let zero = 0;
    for (let i = Math.floor(offset / bs); i * bs < end; i++) {
      if (!isZero(m, i)) data.push(i);
      else zero += Math.min(end, (i + 1) * bs) - Math.max(offset, i * bs);
    }
    this.record(cred, f, m, data);
    return { ...this.counting(r, 'metaBytes'), eof: end >= m.size, attr: a, from: { zero, cache: r.count - zero, channel: 0 } };
  }

  /** `r`, its bytes counted in `k` once they are answered (LocalRead.release). */
  private counting(r: LocalRead, k: 'plainBytes' | 'metaBytes'): LocalRead {
    return {
      ...r,
      release: (answered) => {
        if (answered) this.c[k] += r.count;
        r.release(answered);
      },
    };
  }

  private async plain(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead> {
    const r = await this.inner.read(cred, fh, offset, count);
    this.c.plainBytes += r.count;
    return r;
  }

  private async metaRead(cred: Credentials, f: FileEntry, m: FileMeta, a: Fattr3, offset: number, count: number): Promise<SourcedRead> {
    const end = Math.min(offset + count, m.size);
    if (offset >= end) return { count: 0, eof: true, data: Buffer.alloc(0), attr: a, from: {} };
    // Where this answer's bytes come from (util/counters.ts): zero blocks, chunks already here, chunks waited for.
    const src = { zero: 0, cache: 0, channel: 0 };
    const bs = m.blockSize;
    const cs = this.chunkSize(m);
    // Every byte is written below: zero blocks filled here, data blocks copied from their chunks.
    const buf = Buffer.allocUnsafe(end - offset);
    const data: number[] = [];
    /** Per chunk: bytes of this answer in its data blocks (a chunk's zero blocks count as zero, even when copied from it). */
    const dataBytes = new Map<number, number>();
    for (let i = Math.floor(offset / bs); i * bs < end; i++) {
      const from = Math.max(offset, i * bs);
      const to = Math.min(end, (i + 1) * bs);
      if (!isZero(m, i)) {
        data.push(i);
        const c = Math.floor((i * bs) / cs);
        dataBytes.set(c, (dataBytes.get(c) ?? 0) + to - from);
        continue;
      }
      buf.fill(0, from - offset, to - offset);
      src.zero += to - from;
    }
    this.record(cred, f, m, data);
    if (data.length) {
      const fetcher = this.fetcher(cred, f, m, a);
      await Promise.all(
        [...dataBytes.keys()].map(async (c) => {
          const cStart = c * cs;
          const from = Math.max(offset, cStart);
          const to = Math.min(end, cStart + cs);
          const n = dataBytes.get(c)!;
          const recent = fetcher.recentChunk(c);
          if (recent) {
            src.cache += n;
            return void recent.copy(buf, from - offset, from - cStart, to - cStart);
          }
          const cached = await this.o.cache?.cachedRead(f.fh, a, from, to);
          if (cached) {
            src.cache += n;
            return void cached.copy(buf, from - offset);
          }
          (await fetcher.demand(c)).copy(buf, from - offset, from - cStart, to - cStart);
          src.channel += n;
        }),
      );
    }
    this.c.metaBytes += buf.length;
    return { count: buf.length, eof: end >= m.size, data: buf, attr: a, from: src };
  }

  override async access(cred: Credentials, fh: Buffer, mask: number): Promise<{ access: number; attr?: Fattr3 }> {
    const at = Date.now();
    const inval = this.invalSeen;
    const r = await this.inner.access(cred, fh, mask);
    if (!this.o.cache) this.gate.note(cred, fh, mask, r.access, at); // the cache below notes it in the shared gate
    // The open's ACCESS brings the attributes the first read would otherwise ask a GETATTR for (counted from when it was sent).
    if (r.attr && inval === this.invalSeen) {
      const f = this.entry(fh);
      if (!f.written && at > f.checkedAt) this.checked(f, r.attr, at);
    }
    return r;
  }

  // ------------------------------------------------------- writes retire

  override async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    this.written(fh);
    return super.write(cred, fh, offset, data, stable);
  }

  override async setattr(cred: Credentials, fh: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<WccData> {
    if (attrs.size !== undefined || attrs.mtime !== undefined) this.written(fh);
    return super.setattr(cred, fh, attrs, guard);
  }

  private written(fh: Buffer): void {
    const f = this.entry(fh);
    if (f.meta) this.retire(f, 'written through this mount');
    f.written = true;
  }

  override async close(): Promise<void> {
    for (const f of this.files.values()) f.fetcher?.stop();
    return super.close();
  }

  // ------------------------------------------------------------ recording

  /** Start recording the order in which files with meta-data are read. */
  startRecording(): boolean {
    if (this.recording) return false;
    this.recording = { files: new Map() };
    return true;
  }

  private record(cred: Credentials, f: FileEntry, m: FileMeta, blocks: number[]): void {
    const r = this.recording;
    if (!r || !blocks.length) return;
    const k = f.fh.toString('hex');
    let e = r.files.get(k);
    if (!e) r.files.set(k, (e = { fh: f.fh, cred, meta: m, order: [], seen: new Set() }));
    for (const i of blocks) {
      if (e.seen.has(i) || e.order.length >= MAX_ORDER) continue;
      e.seen.add(i);
      e.order.push(i);
    }
  }

  /** Stop recording and store each file's order as its prefetch list (with `hint`) on the proxy server. */
  async stopRecording(hint: TransferHint): Promise<Array<{ fileid: string; source: string; blocks: number; stored: boolean; error?: string }>> {
    const r = this.recording;
    this.recording = undefined;
    if (!r) throw new Error('not recording');
    const out = [];
    for (const e of r.files.values()) {
      const res = await setOrder(this.o.link, e.cred, { fh: e.fh, version: e.meta, hint, order: e.order }).catch((err: Error) => ({ status: -1, nfsstat: 0, err }));
      const ok = res.status === MetaStatus.OK;
      out.push({
        fileid: String(e.meta.fileid),
        source: e.meta.source,
        blocks: e.order.length,
        stored: ok,
        ...(ok ? {} : { error: 'err' in res ? res.err.message : `status ${res.status}, NFS status ${res.nfsstat}` }),
      });
      // The meta-data this mount holds is now older than the server's: look it up again.
      const f = this.files.get(e.fh.toString('hex'));
      if (ok && f && !f.fetcher?.pending) (f.meta = undefined), (f.fetcher = undefined);
    }
    return out;
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
