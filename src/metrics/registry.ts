import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

/**
 * The metrics of one process: one prom-client registry, made here and
 * passed to whatever registers into it (rpc.ts, client.ts, services.ts);
 * no module-global registry, so two servers can live in one test process.
 * prom-client's default metrics give process memory, CPU, handles and the
 * event-loop lag (nodejs_eventloop_lag_*).
 */
export function newRegistry(processName: string, version = 'unknown'): Registry {
  const r = new Registry();
  collectDefaultMetrics({ register: r, eventLoopMonitoringPrecision: 20 });
  new Gauge({ name: 'gvfs_process_info', help: 'Which gvfs process this is (value 1)', labelNames: ['process', 'version'], registers: [r] }).set({ process: processName, version }, 1);
  return r;
}

type Labels = Record<string, string>;
/** Current values of a metric at scrape time, one row per label set. */
export type Rows = Array<[Labels, number]>;

/**
 * A counter read at scrape time from totals kept elsewhere (the RPC
 * server's stats, the session's DataCounters): nothing on the hot path.
 * The source must be monotonic; a value that goes down is a bug there.
 */
export function pulledCounter(r: Registry, name: string, help: string, labelNames: string[], read: () => Rows): Counter {
  return new Counter({
    name,
    help,
    labelNames,
    registers: [r],
    collect() {
      this.reset();
      for (const [l, v] of read()) this.inc(l, Math.max(0, v));
    },
  });
}

/** A gauge read at scrape time. */
export function pulledGauge(r: Registry, name: string, help: string, labelNames: string[], read: () => Rows | Promise<Rows>): Gauge {
  return new Gauge({
    name,
    help,
    labelNames,
    registers: [r],
    async collect() {
      this.reset();
      for (const [l, v] of await read()) this.set(l, v);
    },
  });
}
