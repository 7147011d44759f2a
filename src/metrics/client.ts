import type { Registry } from 'prom-client';
import type { RemoteNfs } from '../backends/remote-nfs/remote-nfs.js';
import type { CounterSnapshot } from '../util/counters.js';
import type { CacheBackend } from '../wrappers/cache/cache-backend.js';
import type { MetaBackend } from '../wrappers/metadata/meta-backend.js';
import type { ChunkBackend } from '../wrappers/chunks/chunk-backend.js';
import { pulledCounter, pulledGauge } from './registry.js';
import { addChannelRows } from './rpc.js';

/** What a proxy client or mount has: its session's stack (proxy/proxy-client.ts ClientStack). */
export interface ClientStackView {
  snapshot(): CounterSnapshot;
  remote: RemoteNfs;
  cache?: CacheBackend;
  meta?: MetaBackend;
  chunks?: ChunkBackend;
}

/**
 * The session's data counters (util/counters.ts — the same numbers `gvfs
 * cache stats` prints), the cache's state and the link, read at scrape
 * time. `channel` is the link's kind (tcp, tls, ssh).
 */
export function observeClientStack(r: Registry, st: ClientStackView, channel: string): void {
  const snap = () => st.snapshot();
  pulledCounter(r, 'gvfs_read_calls_total', 'READs answered at the top of the session stack', [], () => [[{}, snap().readCalls]]);
  pulledCounter(r, 'gvfs_read_bytes_total', 'Bytes read at the top of the session stack, by where they came from (cache, journal, zero = meta-data zero blocks, channel)', ['source'], () => {
    const s = snap();
    return [
      [{ source: 'cache' }, s.fromCacheBytes],
      [{ source: 'journal' }, s.fromJournalBytes],
      [{ source: 'zero' }, s.zeroBytes],
      [{ source: 'channel' }, s.fromChannelBytes],
    ];
  });
  pulledCounter(r, 'gvfs_cache_hit_bytes_total', 'Bytes read that were on this host when the READ arrived (cache, journal, zero blocks)', [], () => [[{}, snap().hitBytes]]);
  pulledCounter(r, 'gvfs_cache_miss_bytes_total', 'Bytes read that had to cross the channel', [], () => [[{}, snap().missBytes]]);
  pulledCounter(r, 'gvfs_write_bytes_total', 'Bytes written at the top of the session stack', [], () => [[{}, snap().writeBytes]]);
  pulledCounter(r, 'gvfs_channel_payload_bytes_total', 'READ/WRITE payload over the channel: read (demand + read-ahead), read_ahead (part of read), write (all), flush (part of write)', ['kind'], () => {
    const s = snap();
    return [
      [{ kind: 'read' }, s.channelReadBytes],
      [{ kind: 'read_ahead' }, s.readAheadBytes],
      [{ kind: 'write' }, s.channelWriteBytes],
      [{ kind: 'flush' }, s.flushBytes],
    ];
  });
  pulledCounter(r, 'gvfs_meta_zero_bytes_total', 'Bytes read answered locally from zero blocks the meta-data names', [], () => [[{}, snap().zeroBytes]]);
  pulledCounter(r, 'gvfs_meta_bulk_bytes_total', 'Bulk meta-data transfers: raw (file bytes) and wire (compressed, as they crossed)', ['form'], () => {
    const s = snap();
    return [
      [{ form: 'raw' }, s.bulkRawBytes],
      [{ form: 'wire' }, s.bulkWireBytes],
    ];
  });
  const meta = st.meta;
  if (meta) pulledCounter(r, 'gvfs_meta_hash_mismatches_total', 'Bulk chunks whose hash did not match the meta-data (refetched)', [], () => [[{}, meta.stats().hashMismatches]]);
  pulledCounter(r, 'gvfs_link_reconnects_total', 'Reconnections of the link to the proxy server', [], () => [[{}, st.remote.stats.reconnects]]);
  pulledCounter(r, 'gvfs_link_calls_total', 'RPC calls sent over the link to the proxy server', [], () => [[{}, st.remote.stats.calls]]);
  addChannelRows(r, () => [
    [{ channel: 'link', kind: channel, direction: 'in' }, st.remote.stats.bytesIn],
    [{ channel: 'link', kind: channel, direction: 'out' }, st.remote.stats.bytesOut],
  ]);
  const chunks = st.chunks;
  if (chunks) {
    pulledCounter(r, 'gvfs_chunks_total', 'Store chunks this host needed, by where they came from (memory, disk = the cache directory, tier = the site cache, server = GET_CHUNK)', ['source'], () => {
      const s = chunks.store.stats;
      return [
        [{ source: 'memory' }, s.memHits],
        [{ source: 'disk' }, s.diskHits],
        [{ source: 'tier' }, s.tierHits],
        [{ source: 'server' }, s.serverFetches],
      ];
    });
    pulledCounter(r, 'gvfs_chunks_refused_total', 'Chunks that did not match their hash and were not served, by where they came from', ['source'], () => {
      const s = chunks.store.stats;
      return [
        [{ source: 'disk' }, s.diskRefused],
        [{ source: 'tier' }, s.tierRefused],
        [{ source: 'server' }, s.serverRefused],
      ];
    });
    pulledCounter(r, 'gvfs_chunk_manifests_refused_total', 'Image manifests this host could not verify (their files fail with EIO)', [], () => [[{}, chunks.stats.manifestRefused]]);
  }
  const cache = st.cache;
  if (!cache) return;
  pulledGauge(r, 'gvfs_cache_bytes', 'Disk cache: capacity, used (blocks), journal, dirty (newest data only in the journal), flush_backlog (what a flush still has to send)', ['what'], () => {
    const s = cache.stats();
    return [
      [{ what: 'capacity' }, s.capacity],
      [{ what: 'used' }, s.used],
      [{ what: 'journal' }, s.journalBytes],
      [{ what: 'dirty' }, s.dirtyBytes],
      [{ what: 'flush_backlog' }, s.flushBacklog.bytes],
    ];
  });
  pulledGauge(r, 'gvfs_cache_flush_backlog_files', 'Files with unflushed writes', [], () => [[{}, cache.stats().flushBacklog.files]]);
  pulledCounter(r, 'gvfs_cache_evictions_total', 'Cache blocks evicted', [], () => [[{}, cache.stats().evictions]]);
  pulledCounter(r, 'gvfs_cache_flush_failures_total', 'Write-back flushes of a file that failed', [], () => [[{}, cache.stats().flushFailures]]);
  pulledCounter(r, 'gvfs_cache_flushed_bytes_total', 'Bytes write-back flushes delivered', [], () => [[{}, cache.stats().flushedBytes]]);
}
