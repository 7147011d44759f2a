import type { EvictionPolicyName } from './eviction.js';
import type { JournalOptions } from './journal.js';

/**
 * A session's cache policy. Every limit that bounds what the cache puts on
 * the network or the disk is here, with its default.
 */
export interface CacheOptions {
  /** The cache directory (shared read cache + this session's journal). */
  dir: string;
  /** Bytes of local disk the cache may use: blocks plus the write-back journal. */
  capacity: number;
  /**
   * `capacity` was only a default, not asked for: shrink it to what the disk
   * can hold instead of refusing (disk-room.ts). Default false: a capacity
   * larger than the disk's free space (less its headroom) is refused.
   */
  capacityIsDefault?: boolean;
  /** Identity of the server the blocks come from (part of every block's key; sessions share blocks only under the same one). */
  serverId: string;
  /** Names this session's directory (journal, lock, control socket): the session key id, or the user. */
  session: string;
  /** The server as log lines name it (`peer`); default serverId. */
  peer?: string;
  /** Bytes per cached block (a power of two, 4 KiB .. 4 MiB). */
  blockSize?: number;
  /** Write-back (journal locally, deliver later) or write-through. Default write-back. */
  writeBack?: boolean;
  /**
   * How a change made elsewhere reaches the cache (README "Consistency"):
   * 'ttl' (default): attributes and names are trusted for attrTimeoutMs /
   * dirTimeoutMs; 'poll': trusted until the proxy server's change log lists
   * them, asked once per pollMs (needs a link that speaks CHANGES_SINCE).
   */
  consistency?: ConsistencyModel;
  /** The poll model's period (ms): a change made elsewhere shows within it. */
  pollMs?: number;
  /** How long server attributes are trusted before a change made elsewhere is looked for (ms; the ttl model). */
  attrTimeoutMs?: number;
  /** How long a looked-up name is trusted (ms); default attrTimeoutMs. */
  dirTimeoutMs?: number;
  /** Largest read-ahead window (bytes). */
  readAheadBytes?: number;
  /** Block fetches on the wire at once, in bytes (demand + read-ahead). */
  fetchBytesInFlight?: number;
  /** Write-back backlog (bytes) above which everything is flushed. */
  dirtyLimit?: number;
  /** Write-back backlog (bytes) above which writes wait, then fail NOSPC if flushing cannot make room. */
  dirtyMax?: number;
  /** A file's unflushed writes are delivered at most this long after the first one (ms). */
  maxDirtyAgeMs?: number;
  /** Largest WRITE a flush sends. */
  flushWriteBytes?: number;
  /** How long a write waits for room under dirtyMax before NOSPC (ms). */
  admitWaitMs?: number;
  policy?: EvictionPolicyName;
  /** Listen on a control socket in the session directory (gvfs flush, gvfs cache stats). Default true. */
  controlSocket?: boolean;
  /** How often blocks stored by other processes sharing the directory are counted (ms). */
  rescanMs?: number;
  journal?: JournalOptions;
}

/**
 * Default block size, chosen by measurement (scratch sweep over the proxy
 * chain on loopback, 2 cores, 512 MiB file, nfsbench; and through an
 * emulated 40 ms / 200 Mbit/s link), MiB/s or ops/s:
 *
 *   block   cold seq 1M x4   warm seq 1M x4   warm 64K x16   WAN cold seq   WAN cold random 4K x1
 *   64K          186              914             547          23 (0.97x)         22 ops/s
 *   256K         206             1035             654          23 (0.97x)         19 ops/s
 *   1M           243             1301             750          23 (0.97x)         13 ops/s
 *   local (gvfs serve, no proxies): seq 1M x4 1325, 64K x16 820
 *
 * 1 MiB is the only size whose warm reads reach 0.9x the local export
 * (0.98x / 0.91x): every block is a file, and a read pays an open and a
 * close per block whose descriptor is not cached. Sequential reads over the
 * WAN fill the link at any size (read-ahead fetches up to 1 MiB per READ).
 * The price is the first touch of a random block over a slow link (a 1 MiB
 * fetch instead of 256 KiB: 13 vs 19 random reads/s at 40 ms RTT, with no
 * locality to use the rest); sessions dominated by scattered first reads
 * over a WAN may prefer --block-size 256K.
 */
export const DEFAULT_BLOCK_SIZE = 1024 * 1024;
export const DEFAULT_CAPACITY = 10 * 1024 ** 3;
export const DEFAULT_ATTR_TIMEOUT_MS = 1000;
export const DEFAULT_POLL_MS = 1000;

/** The consistency models a cache implements (callback: delegations; README "Consistency" says what of it is built). */
export type ConsistencyModel = 'ttl' | 'poll' | 'callback';
export const CONSISTENCY_MODELS: readonly ConsistencyModel[] = ['ttl', 'poll', 'callback'];

export function checkPollMs(ms: number): number {
  if (!(Number.isInteger(ms) && ms >= 50 && ms <= 3_600_000)) throw new Error(`poll period must be a whole number of ms from 50 to 3600000, got ${ms}`);
  return ms;
}

export function checkConsistency(m: string): ConsistencyModel {
  if (!(CONSISTENCY_MODELS as readonly string[]).includes(m)) throw new Error(`consistency model must be ttl, poll or callback, got ${JSON.stringify(m)}`);
  return m as ConsistencyModel;
}

export type ResolvedCacheOptions = Required<Omit<CacheOptions, 'journal'>> & { journal: JournalOptions };

export function resolveCacheOptions(o: CacheOptions): ResolvedCacheOptions {
  const blockSize = o.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!Number.isInteger(blockSize) || blockSize < 4096 || blockSize > 4 << 20 || (blockSize & (blockSize - 1)) !== 0) {
    throw new Error(`cache block size must be a power of two from 4K to 4M, got ${blockSize}`);
  }
  if (!(o.capacity >= 16 * blockSize)) throw new Error(`cache size ${o.capacity} is too small (at least 16 blocks: ${16 * blockSize} bytes)`);
  const attrTimeoutMs = o.attrTimeoutMs ?? DEFAULT_ATTR_TIMEOUT_MS;
  const dirtyMax = o.dirtyMax ?? Math.floor(o.capacity / 2);
  return {
    dir: o.dir,
    capacity: o.capacity,
    capacityIsDefault: o.capacityIsDefault ?? false,
    serverId: o.serverId,
    session: o.session,
    peer: o.peer ?? o.serverId,
    blockSize,
    writeBack: o.writeBack ?? true,
    consistency: checkConsistency(o.consistency ?? 'ttl'),
    pollMs: checkPollMs(o.pollMs ?? DEFAULT_POLL_MS),
    attrTimeoutMs,
    dirTimeoutMs: o.dirTimeoutMs ?? attrTimeoutMs,
    readAheadBytes: o.readAheadBytes ?? 16 << 20,
    fetchBytesInFlight: o.fetchBytesInFlight ?? 16 << 20,
    dirtyLimit: Math.min(o.dirtyLimit ?? Math.min(Math.floor(o.capacity / 4), 512 << 20), dirtyMax),
    dirtyMax,
    maxDirtyAgeMs: o.maxDirtyAgeMs ?? 30_000,
    flushWriteBytes: Math.min(o.flushWriteBytes ?? 1 << 20, 1 << 20),
    admitWaitMs: o.admitWaitMs ?? 60_000,
    policy: o.policy ?? 'slru',
    controlSocket: o.controlSocket ?? true,
    rescanMs: o.rescanMs ?? 60_000,
    journal: o.journal ?? {},
  };
}
