import type { Backend } from '../backend/backend.js';
import { callbackProgram, type CallbackHandlers, RecallStatus } from '../ext/callback-codec.js';
import { ProgramTable } from '../rpc/program.js';
import { RemoteNfs } from '../backends/remote-nfs/remote-nfs.js';
import { ownerAdmission, type AllowUids } from '../channel/peer-owner.js';
import { proveSession } from '../channel/prove.js';
import type { SessionKey } from '../channel/session-key.js';
import { SshTunnel, type SshTunnelOptions } from '../channel/ssh.js';
import { tlsDialer } from '../channel/tls.js';
import { hello } from '../ext/client.js';
import type { ExtLink } from '../ext/meta-client.js';
import { createNfs3Server } from '../frontends/nfs3-server/server.js';
import { tcpDialer, type Dialer } from '../rpc/client.js';
import { NFS_PROGRAM, NFS_V3, Proc } from '../nfs3/constants.js';
import { RpcError } from '../rpc/types.js';
import type { RpcServer, RpcServerLimits } from '../rpc/server.js';
import { logger } from '../util/log.js';
import { CacheBackend } from '../wrappers/cache/cache-backend.js';
import type { CacheOptions } from '../wrappers/cache/options.js';
import { MetaBackend, type MetaOptions } from '../wrappers/metadata/meta-backend.js';
import { ChannelMeter, TopMeter } from '../wrappers/meter.js';
import { newCounters, snapshot, type CounterSnapshot, type DataCounters } from '../util/counters.js';
import { isLoopback } from './proxy-server.js';
import { failoverDialer } from './failover-dialer.js';
import path from 'node:path';
import { ChunkBackend } from '../wrappers/chunks/chunk-backend.js';
import { DiskLru } from '../sitecache/disk-lru.js';
import type { SiteCacheClient } from '../sitecache/site-client.js';
import { LinkRefusedError } from './link-refused.js';

const log = logger('proxy');

/** How a proxy client reaches its proxy server and proves who it is. */
export interface ProxyLinkOptions {
  /** The proxy server (for SSH: as seen from the SSH server). */
  host: string;
  port: number;
  /** Further proxy servers to fail over to, in order (same store or export, same session key, shared --handle-secret). */
  alternates?: { host: string; port: number }[];
  /** The session key to prove on every connection. */
  key?: SessionKey;
  /** Without a key (insecure servers): the grid identity to announce. */
  user?: string;
  /** TLS 1.3 with this pinned certificate fingerprint. */
  tlsFingerprint?: string;
  /** Through an SSH tunnel to this OpenSSH server. */
  ssh?: Omit<SshTunnelOptions, 'target'>;
  /** Allow plaintext off loopback and no key (a warning is logged). */
  insecure?: boolean;
  connections?: number;
  maxInFlight?: number;
  /** Per-call deadline (ms). With several servers, a server silent for timeoutMs / servers is abandoned for the next. */
  timeoutMs?: number;
  /** Override of that silence bound (ms; failover only). */
  stallMs?: number;
  /** The meta-data wrapper (wrappers/metadata): on unless `false`. */
  meta?: false | Pick<MetaOptions, 'window' | 'compress' | 'background' | 'validateMs'>;
  /** What this client does when the proxy server calls it back (CB_RECALL of the callback model). */
  callbacks?: CallbackHandlers;
  /**
   * Store-backed files by chunk hash (wrappers/chunks): on when publisher
   * keys are given. Chunks are kept under the cache directory's chunks/
   * (memory only without a cache) and asked of the site tier first.
   */
  chunks?: { trusted: Buffer[]; site?: SiteCacheClient; diskBytes?: number };
  /** The session's disk cache (absent: no cache). serverId and session default from the link. */
  cache?: Omit<CacheOptions, 'serverId' | 'session'> & Partial<Pick<CacheOptions, 'serverId' | 'session'>>;
}

/** The name of a session's own cache state (journal, control socket): its key id, else its user. */
export function sessionName(o: Pick<ProxyLinkOptions, 'key' | 'user'>): string {
  return o.key ? o.key.id : `user-${o.user ?? 'anonymous'}`;
}

/**
 * The cache wrapper over a link, when the options ask for one. Blocks are
 * keyed by the proxy server's address (shared by every session reaching
 * the same proxy server), the journal by the session.
 */
export function stackCache(remote: Backend, o: ProxyLinkOptions, counters?: DataCounters, ext?: ExtLink): CacheBackend | undefined {
  if (!o.cache) return undefined;
  return new CacheBackend(remote, { ...o.cache, serverId: o.cache.serverId ?? `${o.host}:${o.port}`, peer: o.cache.peer ?? `${o.host}:${o.port}`, session: o.cache.session ?? sessionName(o) }, counters, ext);
}

/**
 * The proxy client's link to its proxy server, as a backend: the remote-NFS
 * client over the chosen channel (TCP on loopback, TLS with a pinned
 * certificate, or an SSH tunnel), proving the session key on each new
 * connection. There is no fallback from a private channel to plaintext.
 */
export function proxyLink(o: ProxyLinkOptions): { remote: RemoteNfs; tunnel?: SshTunnel } {
  if (!o.key && !o.insecure) throw new Error('no session key: give --key FILE (or --insecure for a server without keys)');
  if (!o.key && !o.user) throw new Error('without a session key, --user names the grid identity to announce');
  let dial: Dialer;
  let tunnel: SshTunnel | undefined;
  const all = [{ host: o.host, port: o.port }, ...(o.alternates ?? [])];
  const timeoutMs = o.timeoutMs ?? 60_000;
  // Failover: a server silent for its share of the call deadline is abandoned, so a call gets a turn
  // at each server within its deadline (a hung A, then B answering: about timeout/servers + a connect).
  const stallMs = all.length > 1 ? (o.stallMs ?? Math.max(100, Math.floor(timeoutMs / all.length))) : undefined;
  if (o.ssh) {
    // One SSH connection; each proxy server (as the SSH server sees it) is a channel target.
    tunnel = new SshTunnel({ ...o.ssh, target: { host: o.host, port: o.port } });
    const t = tunnel;
    dial = all.length === 1 ? t.dialer() : failoverDialer(all.map((s) => ({ name: `${s.host}:${s.port}`, dial: t.dialer(s) })));
  } else {
    const connectMs = stallMs !== undefined ? Math.min(10_000, stallMs) : undefined;
    const direct = (host: string, port: number): Dialer => {
      if (o.tlsFingerprint) return tlsDialer(host, port, o.tlsFingerprint, connectMs);
      if (!isLoopback(host)) {
        if (!o.insecure) throw new Error(`refusing plaintext to ${host}: use --tls-fingerprint, --via ssh://..., or --insecure`);
        log.warn({ host }, 'INSECURE: plaintext channel to the proxy server');
      }
      return tcpDialer(host, port, connectMs);
    };
    dial = all.length === 1 ? direct(o.host, o.port) : failoverDialer(all.map((s) => ({ name: `${s.host}:${s.port}`, dial: direct(s.host, s.port) })));
  }
  const key = o.key;
  const remote = new RemoteNfs({
    host: o.host,
    port: o.port,
    dial,
    connections: o.connections ?? 1,
    maxInFlight: o.maxInFlight ?? 64,
    timeoutMs,
    stallMs,
    onConnect: key ? ({ call }) => proveSession(call, key) : ({ call }) => hello(call, o.user!),
    callbacks: o.callbacks ? new ProgramTable().add(callbackProgram(o.callbacks)) : undefined,
  });
  return { remote, tunnel };
}

/**
 * Open the link once now (a NULL call, after the channel and the session
 * proof). A refusal is final and thrown as LinkRefusedError with the
 * reason, a server of another channel kind as RpcError 'wrong_channel'; an unreachable server is only logged (the link reconnects on
 * demand), so a proxy client may start before its server.
 */
export async function checkLink(remote: RemoteNfs, timeoutMs = 30_000): Promise<void> {
  try {
    await remote.clients[0].rpc.call(NFS_PROGRAM, NFS_V3, Proc.NULL, () => undefined, () => undefined, { timeoutMs });
  } catch (e) {
    if (e instanceof RpcError && e.kind === 'auth_error') throw new LinkRefusedError(e.message, { cause: e });
    // Another channel kind at that address (TLS vs plain vs SSH) is final too: say which, now.
    if (e instanceof RpcError && e.kind === 'wrong_channel') throw e;
    log.warn({ reason: (e as Error).message }, 'proxy server not reachable yet: will retry on demand');
  }
}

/**
 * The proxy client's backend stack over a link: top meter ∘ meta-data ∘
 * cache ∘ channel meter ∘ remote (meta-data and cache when configured), all
 * counting into one set of the session's data counters (util/counters.ts).
 */
export interface ClientStack {
  backend: Backend;
  remote: RemoteNfs;
  cache?: CacheBackend;
  /** Store-backed files by chunk hash, when publisher keys are trusted. */
  chunks?: ChunkBackend;
  meta?: MetaBackend;
  tunnel?: SshTunnel;
  counters: DataCounters;
  /** The counters now, with the channel's raw byte totals. */
  snapshot(): CounterSnapshot;
}

export function stackClient(o: ProxyLinkOptions): ClientStack {
  // Recalls (callback model) go to the cache, made below over the same link.
  let cache: CacheBackend | undefined;
  const { remote, tunnel } = proxyLink({ ...o, callbacks: o.callbacks ?? { recall: async (fh) => (cache ? cache.recall(fh) : RecallStatus.NOT_HELD) } });
  const counters = newCounters();
  const channel = () => ({ bytesIn: remote.stats.bytesIn, bytesOut: remote.stats.bytesOut });
  const link = new ChannelMeter(remote, counters);
  // The cache polls the change log (the poll consistency model) over the same link.
  cache = stackCache(link, o, counters, remote);
  if (cache) cache.channelTotals = channel;
  const below = cache ?? link;
  const chunks = o.chunks ? new ChunkBackend(below, { trusted: o.chunks.trusted, link: remote, site: o.chunks.site, disk: o.cache ? DiskLru.open(path.join(o.cache.dir, 'chunks'), o.chunks.diskBytes ?? Math.floor(o.cache.capacity / 2)) : undefined }) : undefined;
  const meta = o.meta === false ? undefined : new MetaBackend(chunks ?? below, { ...o.meta, link: remote, cache, counters });
  const backend = new TopMeter(meta ?? chunks ?? below, counters);
  return { backend, remote, cache, chunks, meta, tunnel, counters, snapshot: () => snapshot(counters, channel()) };
}

export interface ProxyClientOptions extends ProxyLinkOptions {
  limits?: Partial<RpcServerLimits>;
  /**
   * Local uids whose connections the endpoint serves (the kernel names the
   * owner of each peer socket); root is always allowed. Default: the uid
   * running the proxy client. 'any': no check (NFS clients on other hosts).
   */
  allowUids?: AllowUids;
}

/** Whom a proxy client's endpoint serves: `allow` (default this process's uid) and root. */
export function endpointUids(allow: AllowUids | undefined): AllowUids {
  if (allow === 'any') return 'any';
  return new Set([0, ...(allow ?? [process.getuid?.() ?? 0])]);
}

export interface ProxyClient {
  server: RpcServer;
  /** The session's data counters (util/counters.ts). */
  counters: DataCounters;
  snapshot(): CounterSnapshot;
  /** The proxy client's backend stack (meta-data ∘ cache ∘ remote). */
  backend: Backend;
  meta?: MetaBackend;
  remote: RemoteNfs;
  /** The disk cache, when configured (await `cache.ready` before serving to see start-up errors). */
  cache?: CacheBackend;
  /** Store-backed files by chunk hash (counters: chunks.stats, chunks.store.stats). */
  chunks?: ChunkBackend;
  tunnel?: SshTunnel;
  close(): Promise<void>;
}

/**
 * The proxy client (at the compute server): an NFSv3 + MOUNT endpoint that
 * any unmodified NFS client mounts, over the link to the proxy server:
 * NFSv3 server ∘ meta-data ∘ cache (when `cache` is given) ∘ remote link. Closing it
 * flushes the cache's write-back data first.
 */
export function createProxyClient(o: ProxyClientOptions): ProxyClient {
  const { backend, remote, cache, chunks, meta, tunnel, counters, snapshot: snap } = stackClient(o);
  const allow = endpointUids(o.allowUids);
  if (allow === 'any') log.warn('proxy client endpoint open to every local user and other hosts (--allow-uid any)');
  const admit = allow === 'any' ? undefined : ownerAdmission(allow, 'proxy client');
  const server = createNfs3Server({ backend, limits: o.limits, admit });
  return {
    server,
    counters,
    snapshot: snap,
    backend,
    remote,
    cache,
    chunks,
    meta,
    tunnel,
    async close() {
      await server.close();
      await backend.close();
      tunnel?.close();
    },
  };
}
