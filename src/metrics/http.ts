import http from 'node:http';
import type { Socket } from 'node:net';
import { Counter, type Registry } from 'prom-client';
import { isLoopback } from '../proxy/proxy-server.js';
import { logger } from '../util/log.js';
import type { Health } from './health.js';

const log = logger('metrics');

/** A non-loopback metrics address without the explicit opt-in. */
export class MetricsAddressError extends Error {
  override name = 'MetricsAddressError';
}

/**
 * The metrics listener is unauthenticated (Prometheus scrapes it; /readyz
 * answers load balancers and systemd), and its numbers tell who uses which
 * files how much: it stays on loopback unless the operator says otherwise.
 */
export function checkMetricsHost(host: string, allowPublic: boolean): void {
  if (isLoopback(host) || allowPublic) return;
  throw new MetricsAddressError(
    `refusing --metrics on ${host}: the metrics and health endpoints have no authentication and reveal activity (sessions, peers, traffic); listen on loopback (127.0.0.1:PORT) and scrape through a tunnel, or give --metrics-public to serve it on ${host} anyway`,
  );
}

export interface MetricsServer {
  address: { address: string; port: number };
  close(): Promise<void>;
}

/**
 * The metrics listener's limits. It is network-facing even on loopback (any
 * local user can connect) and, with --metrics-public, beyond: a scraper
 * needs one short request at a time, so everything else is refused early
 * and nothing an attacker does there may cost the daemon's own service
 * more than these bounds.
 */
export const METRICS_LIMITS = {
  /** Connections at once (more are closed on accept). */
  maxConnections: 32,
  /** Connections at once from one address (so one host cannot hold them all). */
  maxConnectionsPerPeer: 8,
  /** Request line and headers together (431 past it). */
  maxHeaderBytes: 8 * 1024,
  /** From the connection (or the previous request) to the end of the headers (slowloris: 408 and closed). */
  headersTimeoutMs: 5_000,
  /** To receive the whole request. */
  requestTimeoutMs: 10_000,
  /** A connection with no traffic either way is closed. */
  idleTimeoutMs: 10_000,
  /** How often the timeouts above are checked (Node's default is 30 s). */
  checkIntervalMs: 1_000,
  /** /metrics and /readyz answers computed at once (more get 503: each walks every metric or runs every check). */
  maxConcurrentAnswers: 4,
  /** Requests on one keep-alive connection. */
  maxRequestsPerSocket: 100,
} as const;

/**
 * GET /metrics (Prometheus text format), /healthz (liveness: 200 while the
 * event loop answers) and /readyz (the daemon's checks: 200 or 503, a JSON
 * body naming each check and why it failed). Only GET (and HEAD) of those
 * three, no request bodies, within METRICS_LIMITS.
 */
export async function startMetricsServer(o: { host: string; port: number; allowPublic?: boolean; registry: Registry; health: Health }): Promise<MetricsServer> {
  checkMetricsHost(o.host, !!o.allowPublic);
  const L = METRICS_LIMITS;
  const refused = new Counter({ name: 'gvfs_metrics_http_refused_total', help: 'Requests and connections the metrics listener refused, by limit', labelNames: ['reason'], registers: [o.registry] });
  // One warn line per reason per minute: an attack must not flood the log either.
  const lastWarn = new Map<string, number>();
  const refuse = (reason: string, peer: string | undefined) => {
    refused.inc({ reason });
    const now = Date.now();
    if (now - (lastWarn.get(reason) ?? 0) < 60_000) return;
    lastWarn.set(reason, now);
    log.warn({ peer, reason }, 'metrics listener refused a request or connection (further ones for this reason counted in gvfs_metrics_http_refused_total, logged once a minute)');
  };
  let answering = 0;
  const server = http.createServer(
    { maxHeaderSize: L.maxHeaderBytes, headersTimeout: L.headersTimeoutMs, requestTimeout: L.requestTimeoutMs, keepAliveTimeout: 5_000, connectionsCheckingInterval: L.checkIntervalMs },
    (req, res) => {
      const url = (req.url ?? '/').split('?')[0];
      const peer = req.socket.remoteAddress;
      const send = (code: number, type: string, body: string, close = false) => {
        res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store', ...(close ? { connection: 'close' } : {}) });
        res.end(body);
      };
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        refuse('method', peer);
        res.setHeader('allow', 'GET, HEAD');
        return send(405, 'text/plain', 'GET only\n', true);
      }
      // A GET has no body: one announced is refused unread, and the connection closed (its bytes are not read).
      if (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0) {
        refuse('body', peer);
        return send(413, 'text/plain', 'no request bodies\n', true);
      }
      if (url === '/healthz') return send(200, 'application/json', JSON.stringify({ live: true, pid: process.pid, uptimeSeconds: Math.round(process.uptime()) }) + '\n');
      if (url !== '/metrics' && url !== '/readyz') return send(404, 'text/plain', 'try /metrics, /healthz or /readyz\n');
      if (answering >= L.maxConcurrentAnswers) {
        refuse('busy', peer);
        res.setHeader('retry-after', '1');
        return send(503, 'text/plain', 'busy: too many scrapes at once\n');
      }
      answering++;
      const done = () => answering--;
      if (url === '/metrics') {
        o.registry
          .metrics()
          .then(
            (text) => send(200, o.registry.contentType, text),
            (e: Error) => {
              log.error({ err: e }, 'metrics: collecting failed');
              send(500, 'text/plain', `collecting metrics failed: ${e.message}\n`);
            },
          )
          .finally(done);
      } else {
        void o.health
          .run()
          .then((r) => {
            if (!r.ready) log.warn({ failed: r.failed, reason: r.failed.map((n) => `${n}: ${r.checks[n].reason}`).join('; ') }, 'not ready');
            send(r.ready ? 200 : 503, 'application/json', JSON.stringify(r) + '\n');
          })
          .finally(done);
      }
    },
  );
  server.maxConnections = L.maxConnections;
  server.maxRequestsPerSocket = L.maxRequestsPerSocket;
  server.on('drop', (d?: { remoteAddress?: string }) => refuse('connections', d?.remoteAddress));
  const perPeer = new Map<string, number>();
  server.on('connection', (s: Socket) => {
    const peer = s.remoteAddress ?? '?';
    const n = (perPeer.get(peer) ?? 0) + 1;
    if (n > L.maxConnectionsPerPeer) {
      refuse('connections-per-peer', peer);
      s.destroy();
      return;
    }
    perPeer.set(peer, n);
    s.once('close', () => {
      const m = (perPeer.get(peer) ?? 1) - 1;
      if (m <= 0) perPeer.delete(peer);
      else perPeer.set(peer, m);
    });
    // Idle either way (nothing sent, or an answer nobody reads): closed.
    s.setTimeout(L.idleTimeoutMs, () => {
      refuse('idle', peer);
      s.destroy();
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, s: Socket) => {
    const reason = err.code === 'HPE_HEADER_OVERFLOW' ? 'headers-too-large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'timeout' : 'bad-request';
    refuse(reason, s.remoteAddress);
    if (!s.writable) return s.destroy();
    const status = reason === 'headers-too-large' ? '431 Request Header Fields Too Large' : reason === 'timeout' ? '408 Request Timeout' : '400 Bad Request';
    s.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    s.destroySoon?.();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as { address: string; port: number };
  log.info({ address: a.address, port: a.port, public: !isLoopback(o.host), limits: L }, 'metrics listening (/metrics, /healthz, /readyz)');
  return {
    address: { address: a.address, port: a.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
