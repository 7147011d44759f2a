/**
 * THE data counters of a session: defined here once, counted by the layers
 * of the proxy client's stack (top meter ∘ meta-data ∘ cache ∘ channel meter
 * ∘ link, see wrappers/meter.ts), and shown as they are by `gvfs cache
 * stats`, `gvfs meta stats`, the agent and session service ("bytes moved"),
 * the dashboard and the metrics. One `DataCounters` per proxy client or
 * mount process (= per session on a cache directory); a cache directory's
 * figures are the sum over its sessions (`sumCounters`).
 *
 * Unit: bytes, except the *Calls counters. Hits and misses are bytes too,
 * the unit of reads: a byte read is a hit when it was on this host when the
 * READ arrived (disk cache, a block on its way there, unflushed writes, a
 * zero block the meta-data names), a miss when the READ had to wait for it to
 * cross the channel (a new fetch, or one already on the wire).
 *
 * Invariants (test/integration/counters/):
 *   fromCacheBytes + fromJournalBytes + zeroBytes + fromChannelBytes = readBytes
 *   hitBytes + missBytes = readBytes
 *   a byte served from the cache crossed the channel before (as a READ, a
 *   read-ahead or a bulk transfer) or was written and flushed by this host:
 *   on a cold cache, fromCacheBytes + fromChannelBytes <= fetchedBytes + flushBytes
 */
export interface DataCounters {
  // ------------------------------------------------ what the session's readers and writers did
  /**
   * Bytes programs read and wrote through a `gvfs mount`, as the kernel
   * handed their calls to it (the page cache answers repeats without us).
   * The mount's front end reads the stack in larger chunks ahead of them and
   * reads a chunk again when it has grown old, so readBytes may exceed
   * programReadBytes. A proxy client's NFS endpoint has no such front end:
   * there the NFS client's READs are readBytes, and these stay 0.
   */
  programReadBytes: number;
  programWriteBytes: number;
  /** READ calls answered at the top of the session's stack (the NFS client's or FUSE front end's reads, their own read-ahead included). */
  readCalls: number;
  /** Bytes those READs returned. */
  readBytes: number;
  /** WRITE calls taken at the top of the stack. */
  writeCalls: number;
  /** Bytes those WRITEs carried. */
  writeBytes: number;

  // ------------------------------------------------ where each byte of readBytes came from (they add up to readBytes)
  /** From the disk cache (or a fetched block still on its way to it, or a bulk chunk kept in memory). */
  fromCacheBytes: number;
  /** From this host's unflushed writes (the write-back journal), and the zeros past the server's end of file they imply. */
  fromJournalBytes: number;
  /** Blocks the meta-data names zero, answered here: nothing crossed the channel. */
  zeroBytes: number;
  /** Waited for from the channel: a demand READ, a read-ahead still on the wire, a bulk chunk, an uncached READ. */
  fromChannelBytes: number;
  /**
   * Of readBytes: answered from the cache's files straight to the kernel (a
   * FUSE front end's local reads, spliced: never copied through gvfs). Part
   * of fromCacheBytes and zeroBytes, not another source.
   */
  splicedBytes: number;

  // ------------------------------------------------ what crossed the channel (payload; every path)
  /** NFS READ payload received: demand, read-ahead and uncached reads. */
  channelReadBytes: number;
  /** The part of channelReadBytes the cache fetched ahead of any reader (read-ahead). */
  readAheadBytes: number;
  /** BULK_READ payload as it crossed (compressed) — the meta-data layer's demand and background transfers. */
  bulkWireBytes: number;
  /** The file bytes those bulk transfers carried (uncompressed). */
  bulkRawBytes: number;
  /** NFS WRITE payload sent: write-back flushes, write-through and writes around a full journal. */
  channelWriteBytes: number;
  /** The part of channelWriteBytes that write-back flushes sent. */
  flushBytes: number;
}

/** A snapshot: the counters plus what follows from them (and the channel's raw totals when known). */
export interface CounterSnapshot extends DataCounters {
  /** fromCache + fromJournal + zero. */
  hitBytes: number;
  /** fromChannel. */
  missBytes: number;
  /** hitBytes / readBytes (null before any read). */
  hitRatio: number | null;
  /** File bytes brought over the channel: channelReadBytes + bulkRawBytes. */
  fetchedBytes: number;
  /** Payload bytes moved over the channel, both ways: channelReadBytes + bulkWireBytes + channelWriteBytes. */
  movedBytes: number;
  /** Everything the channel carried, RPC framing and every other procedure included (absent: not known here). */
  channelBytesIn?: number;
  channelBytesOut?: number;
}

export const COUNTER_KEYS = [
  'programReadBytes',
  'programWriteBytes',
  'readCalls',
  'readBytes',
  'writeCalls',
  'writeBytes',
  'fromCacheBytes',
  'fromJournalBytes',
  'zeroBytes',
  'fromChannelBytes',
  'splicedBytes',
  'channelReadBytes',
  'readAheadBytes',
  'bulkWireBytes',
  'bulkRawBytes',
  'channelWriteBytes',
  'flushBytes',
] as const satisfies ReadonlyArray<keyof DataCounters>;

/** Where the bytes of one READ's answer came from (the layer that answers says; see Backend.read). */
export interface ReadSources {
  cache?: number;
  journal?: number;
  zero?: number;
  channel?: number;
}

export function newCounters(): DataCounters {
  const c = {} as DataCounters;
  for (const k of COUNTER_KEYS) c[k] = 0;
  return c;
}

/** Count one READ answered at the top of the stack; bytes its layers did not attribute came from the channel (the layer below them all). */
export function countRead(c: DataCounters, count: number, from: ReadSources | undefined): void {
  c.readCalls++;
  c.readBytes += count;
  const cache = from?.cache ?? 0;
  const journal = from?.journal ?? 0;
  const zero = from?.zero ?? 0;
  c.fromCacheBytes += cache;
  c.fromJournalBytes += journal;
  c.zeroBytes += zero;
  c.fromChannelBytes += Math.max(0, count - cache - journal - zero);
}

/** Sources of two parts of one answer, added. */
export function addSources(a: ReadSources, b: ReadSources | undefined): ReadSources {
  if (!b) return a;
  for (const k of ['cache', 'journal', 'zero', 'channel'] as const) if (b[k]) a[k] = (a[k] ?? 0) + b[k]!;
  return a;
}

export function snapshot(c: DataCounters, channel?: { bytesIn: number; bytesOut: number }): CounterSnapshot {
  const s = {} as CounterSnapshot;
  for (const k of COUNTER_KEYS) s[k] = c[k] ?? 0;
  s.hitBytes = s.fromCacheBytes + s.fromJournalBytes + s.zeroBytes;
  s.missBytes = s.fromChannelBytes;
  s.hitRatio = s.readBytes ? s.hitBytes / s.readBytes : null;
  s.fetchedBytes = s.channelReadBytes + s.bulkRawBytes;
  s.movedBytes = s.channelReadBytes + s.bulkWireBytes + s.channelWriteBytes;
  if (channel) {
    s.channelBytesIn = channel.bytesIn;
    s.channelBytesOut = channel.bytesOut;
  }
  return s;
}

/** The sum of several sessions' counters (a cache directory's, a session service's); missing fields count 0. */
export function sumCounters(xs: Array<Partial<DataCounters> & { channelBytesIn?: number; channelBytesOut?: number }>): CounterSnapshot {
  const t = newCounters();
  let bytesIn = 0;
  let bytesOut = 0;
  let channel = false;
  for (const x of xs) {
    for (const k of COUNTER_KEYS) t[k] += Number(x[k] ?? 0);
    if (x.channelBytesIn !== undefined || x.channelBytesOut !== undefined) channel = true;
    bytesIn += x.channelBytesIn ?? 0;
    bytesOut += x.channelBytesOut ?? 0;
  }
  return snapshot(t, channel ? { bytesIn, bytesOut } : undefined);
}
