import type { Backend } from '../backend/backend.js';
import { RemoteNfs } from '../backends/remote-nfs/remote-nfs.js';
import { proveSession } from '../channel/prove.js';
import type { SessionKey } from '../channel/session-key.js';
import { SshTunnel, type SshTunnelOptions } from '../channel/ssh.js';
import { tlsDialer } from '../channel/tls.js';
import { hello } from '../ext/client.js';
import { createNfs3Server } from '../frontends/nfs3-server/server.js';
import { tcpDialer, type Dialer } from '../rpc/client.js';
import type { RpcServer, RpcServerLimits } from '../rpc/server.js';
import { logger } from '../util/log.js';
import { isLoopback } from './proxy-server.js';

const log = logger('proxy');

/** How a proxy client reaches its proxy server and proves who it is. */
export interface ProxyLinkOptions {
  /** The proxy server (for SSH: as seen from the SSH server). */
  host: string;
  port: number;
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
  timeoutMs?: number;
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
  if (o.ssh) {
    tunnel = new SshTunnel({ ...o.ssh, target: { host: o.host, port: o.port } });
    dial = tunnel.dialer();
  } else if (o.tlsFingerprint) {
    dial = tlsDialer(o.host, o.port, o.tlsFingerprint);
  } else {
    if (!isLoopback(o.host)) {
      if (!o.insecure) throw new Error(`refusing plaintext to ${o.host}: use --tls-fingerprint, --via ssh://..., or --insecure`);
      log.warn({ host: o.host }, 'INSECURE: plaintext channel to the proxy server');
    }
    dial = tcpDialer(o.host, o.port);
  }
  const key = o.key;
  const remote = new RemoteNfs({
    host: o.host,
    port: o.port,
    dial,
    connections: o.connections ?? 1,
    maxInFlight: o.maxInFlight ?? 64,
    timeoutMs: o.timeoutMs ?? 60_000,
    onConnect: key ? ({ call }) => proveSession(call, key) : ({ call }) => hello(call, o.user!),
  });
  return { remote, tunnel };
}

export interface ProxyClientOptions extends ProxyLinkOptions {
  limits?: Partial<RpcServerLimits>;
}

export interface ProxyClient {
  server: RpcServer;
  /** The proxy client's backend stack (later: meta-data ∘ cache ∘ remote). */
  backend: Backend;
  remote: RemoteNfs;
  tunnel?: SshTunnel;
  close(): Promise<void>;
}

/**
 * The proxy client (at the compute server): an NFSv3 + MOUNT endpoint that
 * any unmodified NFS client mounts, over the link to the proxy server.
 * Cache and meta-data layers attach here as wrappers.
 */
export function createProxyClient(o: ProxyClientOptions): ProxyClient {
  const { remote, tunnel } = proxyLink(o);
  const backend: Backend = remote;
  const server = createNfs3Server({ backend, limits: o.limits });
  return {
    server,
    backend,
    remote,
    tunnel,
    async close() {
      await server.close();
      await backend.close();
      tunnel?.close();
    },
  };
}
