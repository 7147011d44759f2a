import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { MAX_CHUNK } from '../image/chunker.js';
import { defaultChunkPool, type ChunkPool } from '../image/chunk-pool.js';
import { ChunkError } from '../image/layout.js';
import type { ObjectStore } from '../store/store.js';
import { logger } from '../util/log.js';
import { checkSiteToken, chunkWhat, HASH_RE, STATS_WHAT } from './auth.js';
import { DiskLru } from './disk-lru.js';
import { StoreUpstream, type ChunkFile, type ChunkUpstream } from './upstream.js';

const log = logger('cache-server');

/**
 * The site tier: serves stored chunks by SHA-256 to a site's compute hosts,
 * fetching each missing one once from upstream (the object store, or a
 * store-backed proxy server over the tier's own session) and
 * keeping it on disk (LRU). Requests for a chunk being fetched wait for that
 * fetch (coalesced). Every chunk from upstream is verified (on the chunk pool's threads)
 * before it is kept or served, so a bad upstream object is never cached;
 * hosts verify again on arrival, so the tier cannot alter what they read.
 *
 * Who may ask for what: a chunk hash is only known from a signed manifest
 * (or from the content itself), so the hash is what names a chunk; the tier
 * serves any chunk it holds, or upstream gives it, to a holder of the site
 * key. Through a proxy server, upstream gives only chunks of files the
 * tier's session may read, asked for by the file the host names. The key is
 * required by default: without it anyone reaching the port could make the
 * tier fetch from upstream at will and learn, by timing or answer, whether a
 * given file (a known hash) is in the store or was read at the site.
 */
export interface CacheServerOptions {
  /** An object store (the site may read it) or a ChunkUpstream (upstream.ts: a proxy server). */
  upstream: ObjectStore | ChunkUpstream;
  cacheDir: string;
  maxBytes: number;
  /** The site key (32 bytes); undefined only when the operator chose --insecure. */
  key?: Buffer;
  tls?: { cert: Buffer; key: Buffer };
  /** Connections at once (all peers). */
  maxConnections?: number;
  /** Connections at once from one address. */
  maxConnectionsPerPeer?: number;
  /** Upstream fetches at once; more misses wait in a queue of at most maxQueued. */
  maxUpstream?: number;
  maxQueued?: number;
  /** Deadline of one upstream fetch (ms). */
  upstreamTimeoutMs?: number;
  /** Where chunks are checked (default: the process's pool; never the event loop). */
  pool?: ChunkPool;
}

export interface HostStats {
  requests: number;
  hits: number;
  misses: number;
  coalesced: number;
  bytesServed: number;
  /** Stored bytes fetched from upstream for this host's misses (the host whose miss started the fetch). */
  bytesFromUpstream: number;
  /** Requests answered 404 (misses or coalesced): upstream has no such chunk, not for the file named, or no file was named. */
  notFound: number;
  refused: number;
}

export interface CacheServerStats {
  hits: number;
  misses: number;
  coalesced: number;
  upstreamFetches: number;
  bytesFromUpstream: number;
  upstreamRefused: number;
  upstreamNotFound: number;
  unauthorized: number;
  busy: number;
  diskBytes: number;
  diskChunks: number;
  hosts: Record<string, HostStats>;
}

/** Chunk length bound: a request naming more is refused before anything is fetched. */
const MAX_STORED = MAX_CHUNK + 64;

export class CacheServer {
  readonly server: http.Server;
  private readonly inflight = new Map<string, Promise<Buffer | undefined>>();
  private readonly perPeer = new Map<string, number>();
  private running = 0;
  private readonly queue: Array<() => void> = [];
  private readonly counters = { hits: 0, misses: 0, coalesced: 0, upstreamFetches: 0, bytesFromUpstream: 0, upstreamRefused: 0, upstreamNotFound: 0, unauthorized: 0, busy: 0 };
  private readonly upstream: ChunkUpstream;
  private readonly hosts = new Map<string, HostStats>();

  private constructor(
    private readonly o: CacheServerOptions,
    private readonly disk: DiskLru,
  ) {
    this.upstream = 'needsFile' in o.upstream ? o.upstream : new StoreUpstream(o.upstream);
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.handle(req, res).catch((e) => {
        log.error({ err: (e as Error).message }, 'request failed');
        if (!res.headersSent) reply(res, 500, 'internal error');
        else res.destroy();
      });
    };
    const common: http.ServerOptions = { maxHeaderSize: 4096, headersTimeout: 10_000, requestTimeout: 60_000, keepAliveTimeout: 30_000 };
    this.server = o.tls ? https.createServer({ ...common, cert: o.tls.cert, key: o.tls.key, minVersion: 'TLSv1.3', handshakeTimeout: 10_000 }, handler) : http.createServer(common, handler);
    this.server.maxConnections = o.maxConnections ?? 512;
    this.server.maxRequestsPerSocket = 0;
    // Counted at TCP accept, before any TLS handshake: a peer cannot hold more sockets by never finishing one.
    this.server.on('connection', (s: Socket) => this.admit(s));
    // Malformed or oversized requests: answered and closed, never parsed further.
    this.server.on('clientError', (e: NodeJS.ErrnoException, s: Socket) => {
      if (s.writable && !s.writableEnded) s.end(e.code === 'HPE_HEADER_OVERFLOW' ? 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n' : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else s.destroy();
    });
  }

  static async open(o: CacheServerOptions): Promise<CacheServer> {
    return new CacheServer(o, await DiskLru.open(o.cacheDir, o.maxBytes));
  }

  async listen(port: number, host: string): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  /** Upstream fetches running now, and misses waiting for a fetch slot. */
  get upstreamLoad(): { running: number; queued: number } {
    return { running: this.running, queued: this.queue.length };
  }

  /** The counters without the per-host table (metrics read them at every scrape: nothing copied but these). */
  totals(): Omit<CacheServerStats, 'hosts'> {
    return { ...this.counters, diskBytes: this.disk.usedBytes, diskChunks: this.disk.count };
  }

  /** Per-host counters, live (not a copy): for readers that only read. */
  get hostTable(): ReadonlyMap<string, Readonly<HostStats>> {
    return this.hosts;
  }

  stats(): CacheServerStats {
    return { ...this.totals(), hosts: Object.fromEntries([...this.hosts].map(([k, v]) => [k, { ...v }])) };
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.server.closeAllConnections();
    await closed;
    await this.upstream.close();
  }

  /** One address may not hold every connection (the total is server.maxConnections). */
  private admit(s: Socket): void {
    const peer = s.remoteAddress ?? '?';
    const n = (this.perPeer.get(peer) ?? 0) + 1;
    if (n > (this.o.maxConnectionsPerPeer ?? 64)) {
      s.destroy();
      return;
    }
    this.perPeer.set(peer, n);
    s.once('close', () => {
      const m = (this.perPeer.get(peer) ?? 1) - 1;
      if (m <= 0) this.perPeer.delete(peer);
      else this.perPeer.set(peer, m);
    });
  }

  private host(req: http.IncomingMessage): HostStats {
    const a = req.socket.remoteAddress ?? '?';
    let h = this.hosts.get(a);
    if (!h) {
      // Only holders of the key get here (or anyone with --insecure): bound the table anyway.
      if (this.hosts.size >= 4096) return newHost();
      h = newHost();
      this.hosts.set(a, h);
    }
    return h;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method !== 'GET') return reply(res, 405, 'GET only');
    if (req.headers['content-length'] && req.headers['content-length'] !== '0') return reply(res, 400, 'no request body');
    if (req.headers['transfer-encoding']) return reply(res, 400, 'no request body');
    const url = new URL(req.url ?? '/', 'http://tier');
    if (url.pathname === '/v1/stats') {
      if (!this.authorized(req, STATS_WHAT)) return reply(res, 403, 'site key required');
      const body = Buffer.from(JSON.stringify(this.stats()));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
      return;
    }
    const m = /^\/v1\/chunks\/([0-9a-f]{64})$/.exec(url.pathname);
    const lenText = url.searchParams.get('len') ?? '';
    if (!m || !/^[0-9]{1,8}$/.test(lenText)) return reply(res, 404, 'no such resource');
    const hash = m[1];
    const len = Number(lenText);
    if (len < 1 || len > MAX_CHUNK) return reply(res, 400, 'bad chunk length');
    const image = url.searchParams.get('image');
    const filePath = url.searchParams.get('path');
    if ((image === null) !== (filePath === null) || (image !== null && (image.length < 1 || image.length > 255 || filePath!.length > 4096))) return reply(res, 400, 'image and path go together');
    const file: ChunkFile | undefined = image !== null ? { image, path: filePath! } : undefined;
    if (!this.authorized(req, chunkWhat(hash, len, file))) return reply(res, 403, 'site key required');
    const h = this.host(req);
    h.requests++;
    let stored = await this.disk.get(hash);
    if (stored) {
      this.counters.hits++;
      h.hits++;
    } else {
      let p = this.inflight.get(hash);
      if (p) {
        this.counters.coalesced++;
        h.coalesced++;
      } else {
        if (this.queue.length >= (this.o.maxQueued ?? 1024)) {
          this.counters.busy++;
          return reply(res, 503, 'busy');
        }
        // Through a proxy server a chunk is asked for by its file: without one named, the host's own server is the place.
        if (this.upstream.needsFile && !file) {
          this.counters.misses++;
          this.counters.upstreamNotFound++;
          h.misses++;
          h.notFound++;
          return reply(res, 404, 'not here: name the file (image, path) or ask your proxy server');
        }
        this.counters.misses++;
        h.misses++;
        p = this.fetch(hash, len, file, h).finally(() => this.inflight.delete(hash));
        this.inflight.set(hash, p);
      }
      try {
        stored = await p;
      } catch (e) {
        h.refused++;
        // 502: upstream sent a bad copy of this chunk (the host asks its own server for it and keeps using the tier);
        // 504: upstream failed or was unreachable (the host skips the tier for a while: the next chunk would fail the same way).
        return reply(res, e instanceof ChunkError ? 502 : 504, (e as Error).message);
      }
      if (!stored) {
        h.notFound++;
        return reply(res, 404, 'not in the store');
      }
    }
    h.bytesServed += stored.length;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': stored.length });
    res.end(stored);
  }

  private authorized(req: http.IncomingMessage, what: string): boolean {
    if (!this.o.key) return true;
    if (checkSiteToken(this.o.key, what, req.headers.authorization)) return true;
    this.counters.unauthorized++;
    return false;
  }

  /** One upstream fetch (bounded in number), verified before it is kept. undefined: not in the store. */
  private async fetch(hash: string, len: number, file: ChunkFile | undefined, h: HostStats): Promise<Buffer | undefined> {
    await this.slot();
    let stored: Buffer | undefined;
    try {
      stored = await withTimeout(this.upstream.get(hash, len, file), this.o.upstreamTimeoutMs ?? 60_000);
    } finally {
      this.release();
    }
    if (!stored) {
      this.counters.upstreamNotFound++;
      return undefined;
    }
    this.counters.upstreamFetches++;
    this.counters.bytesFromUpstream += stored.length;
    h.bytesFromUpstream += stored.length;
    try {
      if (stored.length > MAX_STORED) throw new ChunkError(`chunk ${hash}: ${stored.length} bytes stored, more than any chunk`);
      await (this.o.pool ?? defaultChunkPool()).verify(stored, hash, len);
    } catch (e) {
      this.counters.upstreamRefused++;
      log.error({ hash, err: (e as Error).message }, 'upstream chunk refused: not kept, not served');
      throw e;
    }
    await this.disk.put(hash, stored).catch((e) => log.warn({ hash, err: (e as Error).message }, 'chunk not kept on disk'));
    return stored;
  }

  private slot(): Promise<void> {
    if (this.running < (this.o.maxUpstream ?? 16)) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((r) => this.queue.push(r));
  }

  private release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.running--;
  }
}

const newHost = (): HostStats => ({ requests: 0, hits: 0, misses: 0, coalesced: 0, bytesServed: 0, bytesFromUpstream: 0, notFound: 0, refused: 0 });

function reply(res: http.ServerResponse, code: number, msg: string): void {
  const body = Buffer.from(msg + '\n');
  res.writeHead(code, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`upstream fetch took longer than ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}
