import http from 'node:http';
import type { Registry } from 'prom-client';
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
 * GET /metrics (Prometheus text format), /healthz (liveness: 200 while the
 * event loop answers) and /readyz (the daemon's checks: 200 or 503, a JSON
 * body naming each check and why it failed).
 */
export async function startMetricsServer(o: { host: string; port: number; allowPublic?: boolean; registry: Registry; health: Health }): Promise<MetricsServer> {
  checkMetricsHost(o.host, !!o.allowPublic);
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'GET only\n');
    if (url === '/metrics') {
      o.registry.metrics().then(
        (text) => send(200, o.registry.contentType, text),
        (e: Error) => {
          log.error({ err: e }, 'metrics: collecting failed');
          send(500, 'text/plain', `collecting metrics failed: ${e.message}\n`);
        },
      );
    } else if (url === '/healthz') {
      send(200, 'application/json', JSON.stringify({ live: true, pid: process.pid, uptimeSeconds: Math.round(process.uptime()) }) + '\n');
    } else if (url === '/readyz') {
      void o.health.run().then((r) => {
        if (!r.ready) log.warn({ failed: r.failed, reason: r.failed.map((n) => `${n}: ${r.checks[n].reason}`).join('; ') }, 'not ready');
        send(r.ready ? 200 : 503, 'application/json', JSON.stringify(r) + '\n');
      });
    } else send(404, 'text/plain', 'try /metrics, /healthz or /readyz\n');
  });
  // A scraper's keep-alive connection must not hold a daemon's exit.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as { address: string; port: number };
  log.info({ address: a.address, port: a.port, public: !isLoopback(o.host) }, 'metrics listening (/metrics, /healthz, /readyz)');
  return {
    address: { address: a.address, port: a.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
