import type { Registry } from 'prom-client';
import type { CacheServer, HostStats } from '../sitecache/cache-server.js';
import { pulledCounter, pulledGauge, type Rows } from './registry.js';

/**
 * A site tier's counters (the numbers `gvfs cache stats --tier` prints),
 * read at scrape time from CacheServer (the same counters as its stats()). Per-host rows are labelled
 * by the host's address; the tier keeps at most 4096 hosts, so the label
 * set is bounded.
 */
export function observeTier(r: Registry, tier: CacheServer): void {
  // Read at each metric's collect: the totals without the host table, and the host table itself uncopied.
  const totals = () => tier.totals();
  const perHost = (pick: (h: Readonly<HostStats>) => number) => (): Rows => [...tier.hostTable].map(([host, h]) => [{ host }, pick(h)]);
  pulledCounter(r, 'gvfs_tier_chunk_requests_total', 'Chunk requests the tier answered from disk (hit), by an upstream fetch it started (miss) or by joining a fetch already running (coalesced)', ['result'], () => {
    const s = totals();
    return [
      [{ result: 'hit' }, s.hits],
      [{ result: 'miss' }, s.misses],
      [{ result: 'coalesced' }, s.coalesced],
    ];
  });
  pulledCounter(r, 'gvfs_tier_upstream_fetches_total', 'Chunks fetched from upstream (each verified before it is kept)', [], () => [[{}, totals().upstreamFetches]]);
  pulledCounter(r, 'gvfs_tier_upstream_bytes_total', 'Stored bytes fetched from upstream', [], () => [[{}, totals().bytesFromUpstream]]);
  pulledCounter(r, 'gvfs_tier_refused_total', 'Requests the tier refused or could not serve, by reason: upstream_bad_chunk (failed verification), upstream_not_found, unauthorized (no or wrong site key), busy (fetch queue full)', ['reason'], () => {
    const s = totals();
    return [
      [{ reason: 'upstream_bad_chunk' }, s.upstreamRefused],
      [{ reason: 'upstream_not_found' }, s.upstreamNotFound],
      [{ reason: 'unauthorized' }, s.unauthorized],
      [{ reason: 'busy' }, s.busy],
    ];
  });
  pulledGauge(r, 'gvfs_tier_disk_bytes', 'Bytes of chunks kept on the tier disk', [], () => [[{}, totals().diskBytes]]);
  pulledGauge(r, 'gvfs_tier_disk_chunks', 'Chunks kept on the tier disk', [], () => [[{}, totals().diskChunks]]);
  pulledGauge(r, 'gvfs_tier_upstream_fetches_running', 'Upstream fetches running now', [], () => [[{}, tier.upstreamLoad.running]]);
  pulledGauge(r, 'gvfs_tier_upstream_fetches_queued', 'Misses waiting for an upstream fetch slot', [], () => [[{}, tier.upstreamLoad.queued]]);
  pulledCounter(r, 'gvfs_tier_host_requests_total', 'Chunk requests, per host', ['host'], perHost((h) => h.requests));
  pulledCounter(r, 'gvfs_tier_host_hits_total', 'Chunk requests answered from the tier disk, per host', ['host'], perHost((h) => h.hits));
  pulledCounter(r, 'gvfs_tier_host_misses_total', 'Chunk requests that started an upstream fetch, per host', ['host'], perHost((h) => h.misses));
  pulledCounter(r, 'gvfs_tier_host_coalesced_total', 'Chunk requests that joined a running fetch, per host', ['host'], perHost((h) => h.coalesced));
  pulledCounter(r, 'gvfs_tier_host_served_bytes_total', 'Stored bytes sent, per host', ['host'], perHost((h) => h.bytesServed));
  pulledCounter(r, 'gvfs_tier_host_upstream_bytes_total', 'Stored bytes fetched from upstream for the misses of this host', ['host'], perHost((h) => h.bytesFromUpstream));
  pulledCounter(r, 'gvfs_tier_host_not_found_total', 'Chunk requests answered 404, per host', ['host'], perHost((h) => h.notFound));
  pulledCounter(r, 'gvfs_tier_host_failed_total', 'Chunk requests answered 502/504 (upstream failed or sent a bad copy), per host', ['host'], perHost((h) => h.refused));
}
