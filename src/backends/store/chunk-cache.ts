import { defaultChunkPool, type ChunkPool } from '../../image/chunk-pool.js';
import { chunkKey } from '../../image/layout.js';
import type { ObjectStore } from '../../store/store.js';
import type { SiteCacheClient } from '../../sitecache/site-client.js';
import { logger } from '../../util/log.js';

const log = logger('store');

/**
 * Chunks fetched from the store, verified, kept decoded in memory (LRU by
 * bytes). Concurrent requests for one chunk share one fetch. Every chunk
 * is checked against its SHA-256 on arrival (layout.decodeChunk): a chunk
 * altered in the store is refused, never served. Decoding and checking run
 * on the chunk pool's threads (chunk-pool.ts), never on the event loop.
 */
export class ChunkCache {
  private readonly lru = new Map<string, Buffer>();
  private readonly inflight = new Map<string, Promise<Buffer>>();
  /** Stored forms (what GET_CHUNK sends compute hosts), verified, LRU by bytes apart from the decoded ones. */
  private readonly storedLru = new Map<string, Buffer>();
  private storedBytes = 0;
  private readonly storedInflight = new Map<string, Promise<Buffer>>();
  private bytes = 0;
  readonly stats = { fetches: 0, fetchedBytes: 0, hits: 0, refused: 0, siteHits: 0, siteBytes: 0, siteRefused: 0 };

  /** `site`: the site tier, asked before the store; what it sends is verified like the store's. */
  constructor(
    private readonly store: ObjectStore,
    private readonly maxBytes = 64 << 20,
    private readonly site?: SiteCacheClient,
    private readonly pool: ChunkPool = defaultChunkPool(),
  ) {}

  async get(hash: string, len: number): Promise<Buffer> {
    const hit = this.lru.get(hash);
    if (hit) {
      this.lru.delete(hash);
      this.lru.set(hash, hit);
      this.stats.hits++;
      return hit;
    }
    let p = this.inflight.get(hash);
    if (!p) {
      p = this.fetch(hash, len).finally(() => this.inflight.delete(hash));
      this.inflight.set(hash, p);
    }
    return p;
  }

  /**
   * The chunk as stored (codec byte + payload), checked against its hash:
   * what a compute host is sent (it verifies it again). Concurrent requests
   * share one fetch (eight hosts cloning one image at once ask once).
   */
  async stored(hash: string, len: number): Promise<Buffer> {
    const hit = this.storedLru.get(hash);
    if (hit) {
      this.storedLru.delete(hash);
      this.storedLru.set(hash, hit);
      this.stats.hits++;
      return hit;
    }
    let p = this.storedInflight.get(hash);
    if (!p) {
      p = this.fetchStored(hash, len).finally(() => this.storedInflight.delete(hash));
      this.storedInflight.set(hash, p);
    }
    return p;
  }

  private async fetchStored(hash: string, len: number): Promise<Buffer> {
    const fromSite = await this.site?.get(hash, len);
    let stored: Buffer | undefined;
    if (fromSite) {
      try {
        await this.pool.verify(fromSite, hash, len);
        this.stats.siteHits++;
        this.stats.siteBytes += fromSite.length;
        stored = fromSite;
      } catch (e) {
        this.stats.siteRefused++;
        log.warn({ hash, err: (e as Error).message }, 'chunk from the site cache refused: fetched from the store');
      }
    }
    if (!stored) {
      stored = await this.store.get(chunkKey(hash));
      this.stats.fetches++;
      this.stats.fetchedBytes += stored.length;
      try {
        await this.pool.verify(stored, hash, len);
      } catch (e) {
        this.stats.refused++;
        throw e;
      }
    }
    this.storedLru.set(hash, stored);
    this.storedBytes += stored.length;
    while (this.storedBytes > this.maxBytes && this.storedLru.size > 1) {
      const [k, v] = this.storedLru.entries().next().value as [string, Buffer];
      this.storedLru.delete(k);
      this.storedBytes -= v.length;
    }
    return stored;
  }

  private async fetch(hash: string, len: number): Promise<Buffer> {
    const fromSite = await this.site?.get(hash, len);
    if (fromSite) {
      try {
        const raw = await this.pool.decode(fromSite, hash, len);
        this.stats.siteHits++;
        this.stats.siteBytes += fromSite.length;
        return this.keep(hash, raw);
      } catch (e) {
        // A tier cannot alter data: what does not match its hash is dropped and the store asked.
        this.stats.siteRefused++;
        log.warn({ hash, err: (e as Error).message }, 'chunk from the site cache refused: fetched from the store');
      }
    }
    const stored = await this.store.get(chunkKey(hash));
    this.stats.fetches++;
    this.stats.fetchedBytes += stored.length;
    let raw;
    try {
      raw = await this.pool.decode(stored, hash, len);
    } catch (e) {
      this.stats.refused++;
      throw e;
    }
    return this.keep(hash, raw);
  }

  private keep(hash: string, raw: Buffer): Buffer {
    this.lru.set(hash, raw);
    this.bytes += raw.length;
    while (this.bytes > this.maxBytes && this.lru.size > 1) {
      const [k, v] = this.lru.entries().next().value as [string, Buffer];
      this.lru.delete(k);
      this.bytes -= v.length;
    }
    return raw;
  }
}
