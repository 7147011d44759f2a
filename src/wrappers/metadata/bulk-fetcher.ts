import { bulkRead, type ExtLink } from '../../ext/meta-client.js';
import { MAX_BULK, MAX_RANGES, MetaStatus, type ByteRange } from '../../ext/meta-codec.js';
import { Codec } from '../../meta/compress.js';
import { defaultChunkPool } from '../../image/chunk-pool.js';
import { blockHash, HASH_LEN, hashOf, isZero, type FileMeta } from '../../meta/format.js';
import type { Credentials } from '../../rpc/types.js';
import type { DataCounters } from '../../util/counters.js';
import { logger } from '../../util/log.js';

const log = logger('meta');

/** The meta-data cannot be used for this file (it no longer matches, or data keeps failing its hashes): read it the plain way. */
export class MetaUnusable extends Error {
  override name = 'MetaUnusable';
}

export interface FetcherCounters {
  bulkCalls: number;
  demandChunks: number;
  backgroundChunks: number;
  hashMismatches: number;
  refetches: number;
}

export interface FetcherOptions {
  link: ExtLink;
  cred: Credentials;
  fh: Buffer;
  meta: FileMeta;
  /** Unit of fetching and of storing: the cache's block size (a multiple of the meta-data block size). */
  chunkSize: number;
  /** Bulk calls on the wire at once for the background transfer. */
  window: number;
  codec: Codec;
  counters: FetcherCounters;
  /** The session's byte counters (util/counters.ts): bulk bytes on the wire and raw. */
  bytes: Pick<DataCounters, 'bulkRawBytes' | 'bulkWireBytes'>;
  /** A verified chunk: hand it to the disk cache. */
  deliver?: (off: number, data: Buffer) => Promise<unknown>;
  /** Is this chunk already in the disk cache? (the background transfer skips it) */
  cached?: (off: number, end: number) => Promise<boolean>;
}

const enum St {
  TODO = 0,
  INFLIGHT = 1,
  DONE = 2,
}

/** Chunks kept in memory after arrival, for readers that wait on them while the cache writes them to disk. */
const RECENT = 32;
/** A chunk whose data failed its hashes is fetched again once; a second failure retires the meta-data. */
const MAX_ATTEMPTS = 2;

/**
 * Moves one file's non-zero blocks with BULK_READ calls, by chunks (the disk
 * cache's blocks). A background transfer (whole-file: in file order;
 * prefetch: in the recorded order) keeps `window` calls on the wire; a
 * demand read of a chunk not yet asked for is sent at once, ahead of the
 * queue. Every meta-data block is checked against its hash before its chunk
 * is delivered or served; zero blocks are never asked for.
 */
export class BulkFetcher {
  private readonly st: Uint8Array;
  private readonly attempts: Uint8Array;
  private readonly waiting = new Map<number, Promise<Buffer>>();
  private readonly recent = new Map<number, Buffer>();
  private queue: number[] = [];
  private qpos = 0;
  private active = 0;
  private stopped = false;
  readonly nChunks: number;
  /** Settles when the background transfer has nothing left to do. */
  done?: Promise<void>;
  private finish?: () => void;

  constructor(private readonly o: FetcherOptions) {
    this.nChunks = Math.ceil(o.meta.size / o.chunkSize);
    this.st = new Uint8Array(this.nChunks);
    this.attempts = new Uint8Array(this.nChunks);
  }

  private get per(): number {
    return this.o.chunkSize / this.o.meta.blockSize;
  }

  /** Meta-data blocks of chunk c that have data (not all zero). */
  private dataBlocks(c: number): number[] {
    const m = this.o.meta;
    const n = Math.ceil(m.size / m.blockSize);
    const out: number[] = [];
    for (let i = c * this.per; i < Math.min(n, (c + 1) * this.per); i++) if (!isZero(m, i)) out.push(i);
    return out;
  }

  /** Start the background transfer in this order of chunks (each once; all-zero chunks skipped). */
  start(chunks: Iterable<number>): void {
    if (this.done) return;
    const seen = new Set<number>();
    for (const c of chunks) if (c < this.nChunks && !seen.has(c) && this.dataBlocks(c).length) (seen.add(c), this.queue.push(c));
    this.done = new Promise((r) => (this.finish = r));
    void this.pump();
  }

  stop(): void {
    this.stopped = true;
    this.finish?.();
  }

  get pending(): number {
    return this.queue.length - this.qpos + this.active;
  }

  /** A chunk that arrived recently (still in memory). */
  recentChunk(c: number): Buffer | undefined {
    return this.recent.get(c);
  }

  /** Chunk c's verified bytes: from a call already on the wire, or a new one sent ahead of the background queue. */
  demand(c: number): Promise<Buffer> {
    const r = this.recent.get(c);
    if (r) return Promise.resolve(r);
    const w = this.waiting.get(c);
    if (w) return w;
    this.o.counters.demandChunks++;
    return this.send([c])[0];
  }

  private async pump(): Promise<void> {
    while (!this.stopped && this.active < this.o.window && this.qpos < this.queue.length) {
      // The slot is taken before the cache is asked (an await): pumps running at once never exceed the window.
      this.active++;
      // Take queued chunks (skipping what is on the wire, done or cached) until a call is full.
      const take: number[] = [];
      let bytes = 0;
      let ranges = 0;
      while (this.qpos < this.queue.length) {
        const c = this.queue[this.qpos];
        if (this.st[c] !== St.TODO) {
          this.qpos++;
          continue;
        }
        const nb = this.rangesOf(c);
        const b = nb.reduce((s, r) => s + r.len, 0);
        if (take.length && (bytes + b > MAX_BULK || ranges + nb.length > MAX_RANGES)) break;
        this.qpos++;
        const off = c * this.o.chunkSize;
        if (this.o.cached && (await this.o.cached(off, Math.min(this.o.meta.size, off + this.o.chunkSize)).catch(() => false))) {
          this.st[c] = St.DONE;
          continue;
        }
        take.push(c);
        bytes += b;
        ranges += nb.length;
      }
      // A demand read may have sent a chunk taken earlier while this pump awaited the cache about a later one.
      const still = take.filter((c) => this.st[c] === St.TODO);
      if (!still.length) {
        this.active--;
        if (!take.length) break;
        continue;
      }
      this.o.counters.backgroundChunks += still.length;
      const ps = this.send(still);
      void Promise.allSettled(ps).then(() => {
        this.active--;
        void this.pump();
      });
    }
    if (this.active === 0 && this.qpos >= this.queue.length) this.finish?.();
  }

  /** Byte ranges of chunk c's runs of consecutive data blocks. */
  private rangesOf(c: number): ByteRange[] {
    const m = this.o.meta;
    const out: ByteRange[] = [];
    for (const i of this.dataBlocks(c)) {
      const off = i * m.blockSize;
      const len = Math.min(m.blockSize, m.size - off);
      const last = out[out.length - 1];
      if (last && last.offset + last.len === off) last.len += len;
      else out.push({ offset: off, len });
    }
    return out;
  }

  /** One BULK_READ for these chunks; a promise per chunk. */
  private send(chunks: number[]): Promise<Buffer>[] {
    const call = this.call(chunks);
    return chunks.map((c, k) => {
      this.st[c] = St.INFLIGHT;
      const p = call.then((bufs) => bufs[k]);
      this.waiting.set(c, p);
      p.then(
        (b) => {
          this.st[c] = St.DONE;
          this.remember(c, b);
        },
        () => {
          if (this.st[c] === St.INFLIGHT) this.st[c] = St.TODO;
        },
      ).finally(() => {
        if (this.waiting.get(c) === p) this.waiting.delete(c);
      });
      return p;
    });
  }

  private remember(c: number, b: Buffer): void {
    this.recent.delete(c);
    this.recent.set(c, b);
    if (this.recent.size > RECENT) this.recent.delete(this.recent.keys().next().value!);
  }

  private async call(chunks: number[]): Promise<Buffer[]> {
    const m = this.o.meta;
    const ranges = chunks.flatMap((c) => this.rangesOf(c));
    this.o.counters.bulkCalls++;
    const r = await bulkRead(this.o.link, this.o.cred, { fh: this.o.fh, version: m, codec: this.o.codec, ranges });
    if (r.status === MetaStatus.STALE || r.status === MetaStatus.NONE) throw new MetaUnusable('the file changed since its meta-data was made');
    if (r.status !== MetaStatus.OK) throw new Error(`BULK_READ failed: status ${r.status}, NFS status ${r.nfsstat}`);
    const out: Buffer[] = [];
    const bad = new Set<number>();
    for (const c of chunks) {
      const start = c * this.o.chunkSize;
      out.push(Buffer.alloc(Math.min(this.o.chunkSize, m.size - start)));
    }
    const byOffset = new Map(r.ranges.map((x) => [x.offset, x]));
    for (const want of ranges) {
      const c = Math.floor(want.offset / this.o.chunkSize);
      const k = chunks.indexOf(c);
      const got = byOffset.get(want.offset);
      let data: Buffer | undefined;
      let hashes!: Buffer;
      try {
        if (got) this.o.bytes.bulkWireBytes += got.data.length; // crossed the channel, usable or not
        if (!got || got.rawLen !== want.len) throw new Error('range missing or short');
        // zstd ranges (the default) are decoded and hashed on a pool thread, so the proxy client serves its kernel
        // meanwhile; ranges sent uncompressed are only hashed, here.
        ({ raw: data, hashes } = got.codec === Codec.NONE ? { raw: got.data, hashes: blockHashes(got.data, m.blockSize) } : await defaultChunkPool().unpackHashed(got.data, got.codec, got.rawLen, m.blockSize));
        if (data.length !== got.rawLen) throw new Error(`range decodes to ${data.length} bytes, ${got.rawLen} expected`);
        this.o.bytes.bulkRawBytes += got.rawLen;
      } catch (e) {
        log.error({ err: e, offset: want.offset }, 'bulk data undecodable; fetching again');
        bad.add(c);
        continue;
      }
      // Every block against its hash, before anything is served or cached.
      for (let at = 0; at < data.length; at += m.blockSize) {
        const i = (want.offset + at) / m.blockSize;
        const j = at / m.blockSize;
        if (!hashes.subarray(j * HASH_LEN, (j + 1) * HASH_LEN).equals(hashOf(m, i))) {
          this.o.counters.hashMismatches++;
          log.error({ block: i, offset: want.offset + at }, 'block does not match its meta-data hash: not served, fetching again');
          bad.add(c);
          break;
        }
      }
      if (!bad.has(c)) data.copy(out[k], want.offset - c * this.o.chunkSize);
    }
    const results: Buffer[] = [];
    for (const [k, c] of chunks.entries()) {
      if (!bad.has(c)) {
        await this.o.deliver?.(c * this.o.chunkSize, out[k]).catch((e) => log.warn({ err: e }, 'caching a bulk chunk failed'));
        results.push(out[k]);
        continue;
      }
      // Fetch a bad chunk again on its own; twice bad and the meta-data is retired for this file.
      if (++this.attempts[c] >= MAX_ATTEMPTS) throw new MetaUnusable(`chunk ${c} failed its hashes ${this.attempts[c]} times`);
      this.o.counters.refetches++;
      results.push(await this.call([c]).then((b) => b[0]));
    }
    return results;
  }
}

function blockHashes(data: Buffer, blockSize: number): Buffer {
  const n = Math.ceil(data.length / blockSize);
  const out = Buffer.alloc(n * HASH_LEN);
  for (let i = 0; i < n; i++) blockHash(data.subarray(i * blockSize, Math.min(data.length, (i + 1) * blockSize))).copy(out, i * HASH_LEN);
  return out;
}
