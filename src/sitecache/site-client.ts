import http from 'node:http';
import https from 'node:https';
import { MAX_CHUNK } from '../image/chunker.js';
import { logger } from '../util/log.js';
import { chunkWhat, siteToken, STATS_WHAT } from './auth.js';

const log = logger('site-cache');

export interface SiteTier {
  host: string;
  port: number;
}

export interface SiteClientOptions {
  tiers: SiteTier[];
  /** The site key; without it requests carry no token (a tier run with --insecure). */
  key?: Buffer;
  /**
   * TLS: the tier's certificate (gvfs tls-keygen's cert.pem) or a CA (PEM).
   * The chain is checked, not the name: a site's tiers are named by address.
   */
  tlsCa?: Buffer;
  /** Source address of requests (tests: one loopback address per simulated host). */
  localAddress?: string;
  /** Deadline of one request (ms). */
  timeoutMs?: number;
  /** A tier that failed is skipped this long (ms). */
  downMs?: number;
}

const MAX_STORED = MAX_CHUNK + 64;
/** Longest `&image=..&path=..` sent (the tier's 4 KiB request head also holds the line, the token and the host). */
const MAX_WHERE = 3072;

/**
 * A compute host's side of the site tier: asks the tiers in order for a
 * stored chunk and returns its bytes unverified (the caller verifies them
 * and falls back to the store). A tier that fails (refused, reset, slow) is
 * skipped for `downMs`; when every tier fails the answer is undefined and
 * the host goes straight to the store.
 */
export class SiteCacheClient {
  private readonly down = new Map<number, number>();
  private readonly agent: http.Agent;
  /** failed: the tier was then skipped for downMs; badUpstream: the tier refused upstream's copy of one chunk (502), and stayed in use. */
  readonly stats = { asked: 0, answered: 0, failed: 0, busy: 0, badUpstream: 0, bytes: 0 };

  constructor(private readonly o: SiteClientOptions) {
    if (!o.tiers.length) throw new Error('site cache: no tier given');
    this.agent = o.tlsCa ? new https.Agent({ keepAlive: true, maxSockets: 16, ca: o.tlsCa, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined }) : new http.Agent({ keepAlive: true, maxSockets: 16 });
  }

  /** `file`: the file the chunk belongs to (STORE_FILE's image and path), for a tier whose upstream is a proxy server. */
  async get(hash: string, len: number, file?: { image: string; path: string }): Promise<Buffer | undefined> {
    const now = Date.now();
    for (let i = 0; i < this.o.tiers.length; i++) {
      if ((this.down.get(i) ?? 0) > now) continue;
      this.stats.asked++;
      try {
        const b = await this.request(this.o.tiers[i], hash, len, file);
        if (b) {
          this.stats.answered++;
          this.stats.bytes += b.length;
        }
        return b;
      } catch (e) {
        if (e instanceof TierBusyError) {
          // Its queue is full now: this chunk goes elsewhere, the tier stays in use for the next.
          this.stats.busy++;
          continue;
        }
        if (e instanceof TierBadUpstreamError) {
          // One bad copy upstream says nothing about the tier or the other chunks: only this one goes elsewhere.
          this.stats.badUpstream++;
          log.warn({ tier: `${this.o.tiers[i].host}:${this.o.tiers[i].port}`, hash }, 'site cache tier refused its upstream copy of a chunk: asking elsewhere');
          continue;
        }
        this.stats.failed++;
        this.down.set(i, Date.now() + (this.o.downMs ?? 5000));
        log.warn({ tier: `${this.o.tiers[i].host}:${this.o.tiers[i].port}`, err: (e as Error).message }, 'site cache tier failed: skipped for a while');
      }
    }
    return undefined;
  }

  /** Forget that a tier failed (tests; an operator's restart). */
  reset(): void {
    this.down.clear();
  }

  close(): void {
    this.agent.destroy();
  }

  /** The stored chunk; undefined: the tier says the store has no such chunk (the store is asked anyway). */
  private request(t: SiteTier, hash: string, len: number, file?: { image: string; path: string }): Promise<Buffer | undefined> {
    const mod = this.o.tlsCa ? https : http;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      let where = file ? `&image=${encodeURIComponent(file.image)}&path=${encodeURIComponent(file.path)}` : '';
      // The tier reads at most 4 KiB of request head: a longer file name is left out (a miss then goes to the proxy server, not the tier).
      if (where.length > MAX_WHERE) {
        where = '';
        file = undefined;
      }
      if (this.o.key) headers.authorization = `GVFS-HMAC ${siteToken(this.o.key, chunkWhat(hash, len, file))}`;
      const req = mod.request({ host: t.host, port: t.port, path: `/v1/chunks/${hash}?len=${len}${where}`, method: 'GET', headers, agent: this.agent, localAddress: this.o.localAddress, timeout: this.o.timeoutMs ?? 10_000 }, (res) => {
        if (res.statusCode === 404) {
          res.resume();
          return resolve(undefined);
        }
        if (res.statusCode === 503) {
          res.resume();
          return reject(new TierBusyError());
        }
        if (res.statusCode === 502) {
          res.resume();
          return reject(new TierBadUpstreamError());
        }
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new Error(`tier answered ${res.statusCode}`));
        }
        const parts: Buffer[] = [];
        let n = 0;
        res.on('data', (d: Buffer) => {
          n += d.length;
          if (n > MAX_STORED) {
            req.destroy(new Error('tier sent more than any chunk'));
            return;
          }
          parts.push(d);
        });
        res.on('end', () => (res.complete ? resolve(Buffer.concat(parts)) : reject(new Error('tier closed mid-answer'))));
        res.on('error', reject);
        res.on('aborted', () => reject(new Error('tier closed mid-answer')));
      });
      req.on('timeout', () => req.destroy(new Error('tier timed out')));
      req.on('error', reject);
      req.end();
    });
  }
}

class TierBusyError extends Error {
  override name = 'TierBusyError';
  constructor() {
    super('tier busy (503)');
  }
}

class TierBadUpstreamError extends Error {
  override name = 'TierBadUpstreamError';
  constructor() {
    super('tier refused its upstream copy of the chunk (502)');
  }
}

/** `HOST:PORT[,HOST:PORT...]` (IPv6 in brackets). */
export function parseTiers(v: string): SiteTier[] {
  return v.split(',').map((s) => {
    const m = /^(?:\[([^\]]+)\]|([^:,]+)):(\d{1,5})$/.exec(s.trim());
    if (!m || Number(m[3]) > 65535 || Number(m[3]) === 0) throw new Error(`--site-cache: expected HOST:PORT[,HOST:PORT...], got "${s}"`);
    return { host: m[1] ?? m[2], port: Number(m[3]) };
  });
}

/** A tier's counters (GET /v1/stats, cache-server.ts CacheServerStats), asked with the site key. */
export function fetchTierStats(t: SiteTier, o: { key?: Buffer; tlsCa?: Buffer; timeoutMs?: number } = {}): Promise<unknown> {
  const mod = o.tlsCa ? https : http;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (o.key) headers.authorization = `GVFS-HMAC ${siteToken(o.key, STATS_WHAT)}`;
    const req = mod.request({ host: t.host, port: t.port, path: '/v1/stats', method: 'GET', headers, timeout: o.timeoutMs ?? 10_000, ...(o.tlsCa ? { ca: o.tlsCa, minVersion: 'TLSv1.3' as const, checkServerIdentity: () => undefined } : {}) }, (res) => {
      const parts: Buffer[] = [];
      let n = 0;
      res.on('data', (d: Buffer) => {
        n += d.length;
        // 4096 hosts of counters at most: a few MiB.
        if (n > 16 << 20) req.destroy(new Error('tier stats larger than 16 MiB'));
        else parts.push(d);
      });
      res.on('end', () => {
        const body = Buffer.concat(parts).toString();
        if (res.statusCode === 403) return reject(new Error(`tier ${t.host}:${t.port} refused the stats request: ${o.key ? 'wrong site key' : 'give --site-key'}`));
        if (res.statusCode !== 200) return reject(new Error(`tier ${t.host}:${t.port} answered ${res.statusCode}: ${body.trim()}`));
        try {
          resolve(JSON.parse(body));
        } catch {
          reject(new Error(`tier ${t.host}:${t.port}: stats are not JSON`));
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`tier ${t.host}:${t.port} timed out`)));
    req.on('error', reject);
    req.end();
  });
}
