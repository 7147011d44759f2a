import { Counter, Histogram, type Registry } from 'prom-client';
import { STATUS_OF } from '../nfs3/status.js';
import { AUTH_REFUSED, type RpcObserver, type RpcServer } from '../rpc/server.js';
import { pulledCounter, pulledGauge, type Rows } from './registry.js';

/** Latency buckets (seconds): 50 µs .. 30 s, a loopback GETATTR to a WRITE waiting on a slow upstream. */
const BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const NFS_STATUS = new Map<number, string>(Object.entries(STATUS_OF).map(([code, n]) => [n, `NFS3ERR_${code}`]));
const ACCEPT = ['SUCCESS', 'PROG_UNAVAIL', 'PROG_MISMATCH', 'PROC_UNAVAIL', 'GARBAGE_ARGS', 'SYSTEM_ERR'];

/** The status an error counter is labelled with, or undefined for a success. */
function errorStatus(program: string, accept: number, result: unknown): string | undefined {
  if (accept === AUTH_REFUSED) return 'AUTH_ERROR';
  if (accept !== 0) return ACCEPT[accept] ?? `ACCEPT_${accept}`;
  // NFSv3 and MOUNT results carry their status first; 0 is OK in both.
  const st = (result as { status?: unknown } | undefined)?.status;
  if (typeof st !== 'number' || st === 0) return undefined;
  return program === 'nfs3' ? (NFS_STATUS.get(st) ?? `NFS3ERR_${st}`) : `${program.toUpperCase()}_ERR_${st}`;
}

interface ProcChildren {
  program: string;
  procedure: string;
  calls: Counter.Internal;
  seconds: Histogram.Internal<string>;
}

interface RpcSet {
  calls: Counter;
  seconds: Histogram;
  errors: Counter;
  servers: Array<{ name: string; kind: string; s: RpcServer }>;
}

const sets = new WeakMap<Registry, RpcSet>();

function rpcSet(r: Registry): RpcSet {
  let set = sets.get(r);
  if (set) return set;
  const servers: RpcSet['servers'] = [];
  const each = (f: (x: RpcSet['servers'][number]) => Rows): Rows => servers.flatMap(f);
  set = {
    servers,
    calls: new Counter({ name: 'gvfs_rpc_calls_total', help: 'RPC calls answered, by server, program and procedure', labelNames: ['server', 'program', 'procedure'], registers: [r] }),
    seconds: new Histogram({ name: 'gvfs_rpc_call_duration_seconds', help: 'Time from decoded arguments to encoded reply', labelNames: ['server', 'program', 'procedure'], buckets: BUCKETS, registers: [r] }),
    errors: new Counter({ name: 'gvfs_rpc_errors_total', help: 'RPC calls that failed, by status (an NFS3ERR_*, an RPC accept status, AUTH_ERROR)', labelNames: ['server', 'program', 'procedure', 'status'], registers: [r] }),
  };
  pulledGauge(r, 'gvfs_rpc_connections', 'Open connections: proven (admitted) and unproven (TLS handshake or session proof pending)', ['server', 'state'], () =>
    each(({ name, s }) => [
      [{ server: name, state: 'proven' }, Math.max(0, s.connectionCount - s.unprovenCount)],
      [{ server: name, state: 'unproven' }, s.unprovenCount],
    ]),
  );
  pulledCounter(r, 'gvfs_rpc_connections_accepted_total', 'Connections accepted', ['server'], () => each(({ name, s }) => [[{ server: name }, s.stats.connections]]));
  pulledCounter(r, 'gvfs_rpc_connections_refused_total', 'Connections refused or dropped, by the limit or check that did it (maxConnections, maxConnectionsPerPeer, maxUnproven, handshakeTimeout, admit = socket owner)', ['server', 'limit'], () =>
    each(({ name, s }) => Object.entries(s.stats.refusedBy).map(([limit, v]): [Record<string, string>, number] => [{ server: name, limit }, v])),
  );
  pulledCounter(r, 'gvfs_rpc_drc_hits_total', 'Retransmitted non-idempotent calls answered from the duplicate-request cache', ['server'], () => each(({ name, s }) => [[{ server: name }, s.stats.drcHits]]));
  pulledCounter(r, 'gvfs_channel_bytes_total', 'Bytes of the RPC stream per channel and direction (payload inside TLS/SSH)', ['channel', 'kind', 'direction'], () =>
    each(({ name, kind, s }) => [
      [{ channel: name, kind, direction: 'in' }, s.stats.bytesIn],
      [{ channel: name, kind, direction: 'out' }, s.stats.bytesOut],
    ]).concat(linkRows.get(r)?.() ?? []),
  );
  sets.set(r, set);
  return set;
}

/** Other byte sources of gvfs_channel_bytes_total in the same registry (a proxy client's link). */
const linkRows = new WeakMap<Registry, () => Rows>();

/** Add the rows of a client-side channel (the link to the proxy server) to gvfs_channel_bytes_total. */
export function addChannelRows(r: Registry, rows: () => Rows): void {
  rpcSet(r);
  const prev = linkRows.get(r);
  linkRows.set(r, prev ? () => [...prev(), ...rows()] : rows);
}

/**
 * Instrument an RPC server: its observer counts calls, latency and errors
 * (children cached per procedure, so a call costs two prom-client updates),
 * and its stats are read at scrape time. `name` labels it (nfs, proxy);
 * `kind` is its transport (tcp, tls).
 */
export function observeRpcServer(r: Registry, s: RpcServer, name: string, kind: string): void {
  const set = rpcSet(r);
  set.servers.push({ name, kind, s });
  const byKey = new Map<string, ProcChildren>();
  const observer: RpcObserver = {
    call(key, ms, accept, result) {
      let c = byKey.get(key);
      if (!c) {
        const dot = key.indexOf('.');
        const labels = { server: name, program: key.slice(0, dot), procedure: key.slice(dot + 1) };
        c = { program: labels.program, procedure: labels.procedure, calls: set.calls.labels(labels), seconds: set.seconds.labels(labels) };
        byKey.set(key, c);
      }
      c.calls.inc();
      c.seconds.observe(ms / 1000);
      const err = accept === 0 && (result as { status?: unknown } | undefined)?.status === 0 ? undefined : errorStatus(c.program, accept, result);
      if (err) set.errors.inc({ server: name, program: c.program, procedure: c.procedure, status: err });
    },
  };
  s.observer = observer;
}
