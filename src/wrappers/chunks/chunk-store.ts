import { defaultChunkPool, type ChunkPool } from '../../image/chunk-pool.js';
import { ChunkError } from '../../image/layout.js';
import type { DiskLru } from '../../sitecache/disk-lru.js';
import type { SiteCacheClient } from '../../sitecache/site-client.js';
import { logger } from '../../util/log.js';

const log = logger('chunks');

/** The file a chunk belongs to (STORE_FILE's image and path): a tier whose upstream is a proxy server fetches by file. */
export interface ChunkFile {
  image: string;
  path: string;
}

/** Where a chunk came from (the wrapper's read counters). */
export type ChunkSourceName = 'memory' | 'disk' | 'tier' | 'server';

/** What the proxy server sends for a chunk: its stored form, or (too big for one reply) the decoded bytes read over NFS. */
export type ServerChunk = { stored: Buffer } | { raw: Buffer };

export interface ChunkStoreOptions {
  /** Stored chunks on the compute host's disk (absent, or failing to open: memory only). */
  disk?: DiskLru | Promise<DiskLru>;
  /** Decoded chunks kept in memory (bytes). */
  memBytes?: number;
  /** The site tier, asked before the proxy server. */
  site?: SiteCacheClient;
  /** Where chunks are decoded and checked (default: the process's pool; never the event loop). */
  pool?: ChunkPool;
}

/**
 * A compute host's chunks, by SHA-256: decoded in memory (LRU), stored on
 * the cache disk, then the site tier, then the proxy server. Nothing is
 * trusted: a chunk is checked against its hash when it arrives (tier or
 * server) and each time it is read back from the disk; one that does not
 * match is deleted (disk) or refused (tier), and the next source asked.
 * Concurrent requests for one chunk share one fetch.
 */
export class ChunkStore {
  private readonly mem = new Map<string, Buffer>();
  private memUsed = 0;
  private readonly inflight = new Map<string, Promise<{ raw: Buffer; from: ChunkSourceName }>>();
  readonly stats = { memHits: 0, diskHits: 0, diskRefused: 0, tierHits: 0, tierRefused: 0, serverFetches: 0, serverBytes: 0, serverRefused: 0, coalesced: 0 };

  private readonly disk: Promise<DiskLru | undefined>;
  private readonly pool: ChunkPool;

  constructor(private readonly o: ChunkStoreOptions) {
    this.pool = o.pool ?? defaultChunkPool();
    this.disk = Promise.resolve(o.disk).catch((e: Error) => {
      log.error({ err: e.message }, 'chunk directory unusable: chunks are kept in memory only');
      return undefined;
    });
  }

  /** In memory or being fetched already (read-ahead skips those). */
  has(hash: string): boolean {
    return this.mem.has(hash) || this.inflight.has(hash);
  }

  /** The decoded chunk `hash` (hex) of `len` bytes; `server` fetches it from the proxy server. Throws ChunkError if no source has it right. */
  async get(hash: string, len: number, server: () => Promise<ServerChunk>, file?: ChunkFile): Promise<{ raw: Buffer; from: ChunkSourceName }> {
    const hit = this.mem.get(hash);
    if (hit && hit.length === len) {
      this.mem.delete(hash);
      this.mem.set(hash, hit);
      this.stats.memHits++;
      return { raw: hit, from: 'memory' };
    }
    let p = this.inflight.get(hash);
    if (p) this.stats.coalesced++;
    else {
      p = this.fetch(hash, len, server, file).finally(() => this.inflight.delete(hash));
      this.inflight.set(hash, p);
    }
    return p;
  }

  private async fetch(hash: string, len: number, server: () => Promise<ServerChunk>, file?: ChunkFile): Promise<{ raw: Buffer; from: ChunkSourceName }> {
    const disk = await this.disk;
    const onDisk = await disk?.get(hash);
    if (onDisk) {
      try {
        const raw = await this.pool.decode(onDisk, hash, len);
        this.stats.diskHits++;
        return { raw: this.keep(hash, raw), from: 'disk' };
      } catch (e) {
        // Corrupted on this host's disk: never served, deleted, fetched again.
        this.stats.diskRefused++;
        log.warn({ hash, err: (e as Error).message }, 'cached chunk does not match its hash: deleted, fetched again');
        await disk!.remove(hash);
      }
    }
    const fromTier = await this.o.site?.get(hash, len, file).catch(() => undefined);
    if (fromTier) {
      try {
        const raw = await this.pool.decode(fromTier, hash, len);
        this.stats.tierHits++;
        await this.store(hash, fromTier);
        return { raw: this.keep(hash, raw), from: 'tier' };
      } catch (e) {
        // A tier cannot alter data: what does not match is dropped and the proxy server asked.
        this.stats.tierRefused++;
        log.warn({ hash, err: (e as Error).message }, 'chunk from the site cache refused: fetched from the proxy server');
      }
    }
    // The proxy server verified it too; a second try covers a chunk damaged on the way (TLS aside).
    for (let attempt = 0; ; attempt++) {
      const got = await server();
      this.stats.serverFetches++;
      try {
        if ('stored' in got) {
          this.stats.serverBytes += got.stored.length;
          const raw = await this.pool.decode(got.stored, hash, len);
          await this.store(hash, got.stored);
          return { raw: this.keep(hash, raw), from: 'server' };
        }
        this.stats.serverBytes += got.raw.length;
        await this.pool.verifyRaw(got.raw, hash, len);
        return { raw: this.keep(hash, got.raw), from: 'server' };
      } catch (e) {
        this.stats.serverRefused++;
        log.error({ hash, attempt, err: (e as Error).message }, 'chunk from the proxy server does not match its hash');
        if (attempt >= 1) throw e;
      }
    }
  }

  private async store(hash: string, stored: Buffer): Promise<void> {
    // A full or failing disk costs a refetch later, never the read.
    await (await this.disk)?.put(hash, stored).catch((e: Error) => log.warn({ hash, err: e.message }, 'chunk not kept on disk'));
  }

  private keep(hash: string, raw: Buffer): Buffer {
    const max = this.o.memBytes ?? 32 << 20;
    if (raw.length > max) return raw;
    if (!this.mem.has(hash)) {
      this.mem.set(hash, raw);
      this.memUsed += raw.length;
    }
    while (this.memUsed > max && this.mem.size > 1) {
      const [k, v] = this.mem.entries().next().value as [string, Buffer];
      this.mem.delete(k);
      this.memUsed -= v.length;
    }
    return raw;
  }
}

export { ChunkError };
