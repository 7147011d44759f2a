import { InvalidArgumentError, type Command } from 'commander';
import type { Registry } from 'prom-client';
import type { Health } from '../metrics/health.js';
import type { MetricsServer } from '../metrics/http.js';
import { parseHostPort } from './util.js';
import { buildInfo } from './version.js';

/** `--metrics HOST:PORT` and `--metrics-public`, on every long-running command. */
export function addMetricsOptions(c: Command): Command {
  return c
    .option('--metrics <host:port>', 'serve Prometheus metrics (/metrics) and unauthenticated health checks (/healthz liveness, /readyz readiness as JSON) on HOST:PORT; loopback only unless --metrics-public (port 0 picks a free port)')
    .option('--metrics-public', 'allow --metrics on a non-loopback address (the endpoints have no authentication and show sessions, peers and traffic)');
}

/**
 * Check the --metrics address before the daemon starts anything (a usage
 * error, not a half-started daemon); undefined without --metrics.
 */
export async function metricsAddress(o: { metrics?: string; metricsPublic?: boolean }): Promise<{ host: string; port: number; allowPublic: boolean } | undefined> {
  if (!o.metrics) {
    if (o.metricsPublic) throw new InvalidArgumentError('--metrics-public needs --metrics HOST:PORT');
    return undefined;
  }
  const a = parseHostPort(o.metrics);
  const { checkMetricsHost, MetricsAddressError } = await import('../metrics/http.js');
  try {
    checkMetricsHost(a.host, !!o.metricsPublic);
  } catch (e) {
    if (e instanceof MetricsAddressError) throw new InvalidArgumentError(e.message);
    throw e;
  }
  return { ...a, allowPublic: !!o.metricsPublic };
}

/**
 * Start the metrics listener of a daemon: one registry (default metrics
 * included), `setup` registers what this process has and its readiness
 * checks. Loaded lazily: commands without --metrics do not load prom-client.
 */
export async function startMetrics(addr: { host: string; port: number; allowPublic: boolean } | undefined, processName: string, setup: (r: Registry, h: Health) => void | Promise<void>): Promise<MetricsServer | undefined> {
  if (!addr) return undefined;
  const [{ newRegistry }, { Health }, { startMetricsServer }] = await Promise.all([import('../metrics/registry.js'), import('../metrics/health.js'), import('../metrics/http.js')]);
  const registry = newRegistry(processName, (await buildInfo()).version);
  const health = new Health();
  await setup(registry, health);
  return startMetricsServer({ ...addr, registry, health });
}
