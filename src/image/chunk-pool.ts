import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { logger } from '../util/log.js';
import { ChunkError } from './layout.js';
import type { Codec } from '../meta/compress.js';

const log = logger('chunks');

/** A request to a pool thread: the bytes are a private copy, transferred (never a view of the caller's buffer). */
export type PoolRequest = { id: number; stored: ArrayBuffer } & PoolWork;

/**
 * chunk: decode a stored chunk and check it is `len` bytes hashing to `hash`
 *   (`codecless`: `stored` is the decoded bytes, check only; `wantRaw`: send them back);
 * pack / unpack: meta/compress.ts's, for bulk transfers (`rawLen`: what unpack must give).
 */
export type PoolWork =
  | { op: 'chunk'; hash: string; len: number; codecless: boolean; wantRaw: boolean }
  | { op: 'pack'; codec: Codec; level?: number }
  | { op: 'unpack'; codec: Codec; rawLen: number; blockSize?: number };

export type PoolReply = { id: number; ok: true; raw?: ArrayBuffer; codec?: Codec; hashes?: ArrayBuffer } | { id: number; ok: false; message: string; chunkError: boolean };

export interface ChunkPoolOptions {
  /** Threads (default: GVFS_CHUNK_THREADS, else one fewer than the cores, 1 to 4). */
  threads?: number;
  /** Requests given to one thread at a time (the next one is ready when it finishes one). */
  depth?: number;
}

interface Job {
  req: PoolWork & { src: Buffer };
  resolve: (r: { raw?: Buffer; codec?: Codec; hashes?: Buffer }) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  running: Map<number, Job>;
}

/**
 * Chunk decoding (zstd) and checking (SHA-256) on worker threads, so a
 * proxy server, a compute host's chunk store or a site cache never runs
 * them on its event loop (zstd-napi has no asynchronous API; a 256 KiB
 * chunk costs about a millisecond of CPU, during which no other call of
 * any client is served).
 *
 * Bounded: `threads` x `depth` requests are on the threads at once, each
 * with its own copy of the chunk (at most MAX_CHUNK stored bytes and its
 * decoded form); the rest wait in a FIFO holding only a reference to the
 * caller's buffer, so the pool adds at most threads x depth x 2 chunks of
 * memory. How many callers wait is bounded by the callers (the RPC layer
 * caps calls in flight per connection; the chunk caches coalesce one
 * chunk's fetches). A thread that dies fails its requests with ChunkError
 * and is replaced.
 */
export class ChunkPool {
  private readonly slots: Slot[] = [];
  private readonly waiting: Job[] = [];
  private nextId = 1;
  private closed = false;
  readonly threads: number;
  private readonly depth: number;
  readonly stats = { jobs: 0, queuedMax: 0, workerDeaths: 0 };

  constructor(o: ChunkPoolOptions = {}) {
    const env = Number(process.env.GVFS_CHUNK_THREADS);
    this.threads = Math.max(1, Math.floor(o.threads ?? (env > 0 ? env : Math.min(4, Math.max(1, os.availableParallelism() - 1)))));
    this.depth = Math.max(1, o.depth ?? 2);
  }

  /** Decode `stored` (codec byte + payload) and check it is `len` bytes hashing to `hash`; the decoded bytes. Rejects with ChunkError. */
  async decode(stored: Buffer, hash: string, len: number): Promise<Buffer> {
    return (await this.submit({ op: 'chunk', src: stored, hash, len, codecless: false, wantRaw: true })).raw!;
  }

  /** As decode, keeping nothing: is `stored` the chunk `hash` of `len` bytes? Rejects with ChunkError. */
  async verify(stored: Buffer, hash: string, len: number): Promise<void> {
    await this.submit({ op: 'chunk', src: stored, hash, len, codecless: false, wantRaw: false });
  }

  /** Are `raw` (decoded bytes) the chunk `hash` of `len` bytes? Rejects with ChunkError. */
  async verifyRaw(raw: Buffer, hash: string, len: number): Promise<void> {
    await this.submit({ op: 'chunk', src: raw, hash, len, codecless: true, wantRaw: false });
  }

  /** meta/compress.ts's pack (bulk transfers), on a pool thread. */
  async pack(data: Buffer, codec: Codec, level?: number): Promise<{ codec: Codec; data: Buffer }> {
    const r = await this.submit({ op: 'pack', src: data, codec, level });
    return { codec: r.codec!, data: r.raw! };
  }

  /** meta/compress.ts's unpack, on a pool thread; rejects (Error) when the data does not decode to `rawLen` bytes. */
  async unpack(data: Buffer, codec: Codec, rawLen: number): Promise<Buffer> {
    return (await this.submit({ op: 'unpack', src: data, codec, rawLen })).raw!;
  }

  /** unpack, and the meta-data hash (format.ts blockHash) of each `blockSize` block of the result, concatenated. */
  async unpackHashed(data: Buffer, codec: Codec, rawLen: number, blockSize: number): Promise<{ raw: Buffer; hashes: Buffer }> {
    const r = await this.submit({ op: 'unpack', src: data, codec, rawLen, blockSize });
    return { raw: r.raw!, hashes: r.hashes! };
  }

  /** Stop the threads; requests not finished fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.waiting.splice(0)) j.reject(new ChunkError('chunk pool closed'));
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }

  private submit(req: Job['req']): Promise<{ raw?: Buffer; codec?: Codec; hashes?: Buffer }> {
    if (this.closed) return Promise.reject(new ChunkError('chunk pool closed'));
    return new Promise((resolve, reject) => {
      this.stats.jobs++;
      this.waiting.push({ req, resolve, reject });
      this.stats.queuedMax = Math.max(this.stats.queuedMax, this.waiting.length);
      this.pump();
    });
  }

  private pump(): void {
    while (this.waiting.length > 0) {
      const slot = this.freeSlot();
      if (!slot) return;
      const job = this.waiting.shift()!;
      const id = this.nextId++;
      // A private copy: the caller's buffer may be a view into a larger record (structured clone would copy all of it).
      const stored = new ArrayBuffer(job.req.src.length);
      new Uint8Array(stored).set(job.req.src);
      const { src: _src, ...rest } = job.req;
      slot.running.set(id, job);
      slot.worker.ref();
      slot.worker.postMessage({ ...rest, id, stored } as PoolRequest, [stored]);
    }
  }

  private freeSlot(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.slots) if (s.running.size < this.depth && (!best || s.running.size < best.running.size)) best = s;
    if (best && best.running.size === 0) return best;
    if (this.slots.length < this.threads) return this.spawn();
    return best;
  }

  private spawn(): Slot {
    const worker = new Worker(new URL('./chunk-worker.js', import.meta.url));
    // Idle threads never keep a process alive; a busy one does (its caller awaits it).
    worker.unref();
    const slot: Slot = { worker, running: new Map() };
    worker.on('message', (m: PoolReply) => {
      const job = slot.running.get(m.id);
      if (!job) return;
      slot.running.delete(m.id);
      if (slot.running.size === 0) worker.unref();
      if (m.ok) job.resolve({ raw: m.raw ? Buffer.from(m.raw) : undefined, codec: m.codec, hashes: m.hashes ? Buffer.from(m.hashes) : undefined });
      else if (job.req.op !== 'chunk') job.reject(new Error(m.message));
      else job.reject(m.chunkError ? new ChunkError(m.message) : new ChunkError(`chunk ${job.req.hash}: ${m.message}`));
      this.pump();
    });
    const fail = (why: string) => {
      const i = this.slots.indexOf(slot);
      if (i < 0) return;
      this.slots.splice(i, 1);
      if (!this.closed) {
        this.stats.workerDeaths++;
        log.error({ why }, 'chunk pool thread died: its requests fail, a new thread takes its place');
      }
      for (const j of slot.running.values()) j.reject(new ChunkError(`${j.req.op}: pool thread died (${why})`));
      slot.running.clear();
      if (!this.closed) this.pump();
    };
    worker.on('error', (e) => fail(e.message));
    worker.on('exit', (code) => fail(`exit ${code}`));
    this.slots.push(slot);
    return slot;
  }
}

let shared: ChunkPool | undefined;

/** The process's pool (one per process, like libuv's; created on first use). Layers take a pool in their options to use another. */
export function defaultChunkPool(): ChunkPool {
  shared ??= new ChunkPool();
  return shared;
}
