import { chunkKey, decodeChunk } from '../../image/layout.js';
import type { ObjectStore } from '../../store/store.js';

/**
 * Chunks fetched from the store, verified, kept decoded in memory (LRU by
 * bytes). Concurrent requests for one chunk share one fetch. Every chunk
 * is checked against its SHA-256 on arrival (layout.decodeChunk): a chunk
 * altered in the store is refused, never served.
 */
export class ChunkCache {
  private readonly lru = new Map<string, Buffer>();
  private readonly inflight = new Map<string, Promise<Buffer>>();
  private bytes = 0;
  readonly stats = { fetches: 0, fetchedBytes: 0, hits: 0, refused: 0 };

  constructor(
    private readonly store: ObjectStore,
    private readonly maxBytes = 64 << 20,
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

  private async fetch(hash: string, len: number): Promise<Buffer> {
    const stored = await this.store.get(chunkKey(hash));
    this.stats.fetches++;
    this.stats.fetchedBytes += stored.length;
    let raw;
    try {
      raw = decodeChunk(stored, hash, len);
    } catch (e) {
      this.stats.refused++;
      throw e;
    }
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
