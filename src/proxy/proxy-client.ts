import type { Backend } from '../backend/backend.js';
import { RemoteNfs } from '../backends/remote-nfs/remote-nfs.js';
import { hello } from '../ext/client.js';
import { createNfs3Server } from '../frontends/nfs3-server/server.js';
import type { RpcServer, RpcServerLimits } from '../rpc/server.js';

export interface ProxyClientOptions {
  /** The proxy server. */
  host: string;
  port: number;
  /** The grid identity of this session, announced on every connection. */
  user: string;
  connections?: number;
  maxInFlight?: number;
  timeoutMs?: number;
  limits?: Partial<RpcServerLimits>;
}

export interface ProxyClient {
  server: RpcServer;
  /** The proxy client's backend stack (later: meta-data ∘ cache ∘ remote). */
  backend: Backend;
  remote: RemoteNfs;
  close(): Promise<void>;
}

/**
 * The proxy client (at the compute server): an NFSv3 + MOUNT endpoint that
 * any unmodified NFS client mounts, over the remote-NFS backend that talks to
 * the proxy server and announces the session's identity on each connection.
 * Cache, meta-data and channel layers attach here as wrappers / dialers.
 */
export function createProxyClient(o: ProxyClientOptions): ProxyClient {
  const remote = new RemoteNfs({
    host: o.host,
    port: o.port,
    connections: o.connections ?? 1,
    maxInFlight: o.maxInFlight ?? 64,
    timeoutMs: o.timeoutMs ?? 60_000,
    onConnect: ({ call }) => hello(call, o.user),
  });
  const backend: Backend = remote;
  const server = createNfs3Server({ backend, limits: o.limits });
  return {
    server,
    backend,
    remote,
    async close() {
      await server.close();
      await backend.close();
    },
  };
}
