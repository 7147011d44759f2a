import fs from 'node:fs/promises';
import type { Backend } from '../../src/backend/backend.js';
import path from 'node:path';
import { LocalExport } from '../../src/backends/local-export/local-export.js';
import { RemoteNfs } from '../../src/backends/remote-nfs/remote-nfs.js';
import { createNfs3Server } from '../../src/frontends/nfs3-server/server.js';
import { newSessionKey, type SessionKey } from '../../src/channel/session-key.js';
import { SessionRegistry } from '../../src/channel/sessions.js';
import { createProxyClient, type ProxyClient } from '../../src/proxy/proxy-client.js';
import { createProxyServer, type ProxyServer } from '../../src/proxy/proxy-server.js';
import type { RpcServer } from '../../src/rpc/server.js';
import type { IdentityMap } from '../../src/wrappers/identity-map/map-file.js';
import { startGanesha, type Ganesha } from './ganesha.js';
import { ROOT, tempDir } from './local-server.js';

/** An NFSv3 server the chain forwards to: `gvfs serve` in-process, or nfs-ganesha. */
export interface Upstream {
  kind: 'gvfs' | 'ganesha';
  dir: string;
  port: number;
  mountPort: number;
  exportPath: string;
  restart(): Promise<void>;
  stop(): Promise<void>;
  ganesha?: Ganesha;
}

export async function startUpstream(kind: 'gvfs' | 'ganesha', base: string, wrap?: (b: Backend) => Backend): Promise<Upstream> {
  const dir = path.join(base, `${kind}-export`);
  await fs.mkdir(dir, { recursive: true });
  if (kind === 'ganesha') {
    const g = await startGanesha({ dir, workDir: path.join(base, 'ganesha') });
    return { kind, dir, port: g.port, mountPort: g.mountPort, exportPath: g.exportPath, restart: () => g.restart(), stop: () => g.stop(), ganesha: g };
  }
  let backend: LocalExport;
  let server: RpcServer;
  const start = async (port: number) => {
    backend = await LocalExport.open({ root: dir, stateDir: path.join(base, 'gvfs-state') });
    server = createNfs3Server({ backend: wrap ? wrap(backend) : backend });
    return (await server.listen(port, '127.0.0.1')).port;
  };
  const port = await start(0);
  return {
    kind,
    dir,
    port,
    mountPort: port,
    exportPath: '/',
    async restart() {
      await server.close();
      await backend.close();
      await start(port);
    },
    async stop() {
      await server.close();
      await backend.close();
    },
  };
}

export const ALICE = { uid: 2001, gid: 2001, gids: [2001, 3000] };
export const BOB = { uid: 2002, gid: 2002, gids: [] };
export const defaultMap = (): IdentityMap =>
  new Map([
    ['alice', ALICE],
    ['bob', BOB],
  ]);

export interface Chain {
  base: string;
  upstream: Upstream;
  proxyServer: ProxyServer;
  proxyServerPort: number;
  proxyClient: ProxyClient;
  proxyClientPort: number;
  /** Our NFS client mounted on the proxy client (as a plain NFS client would). */
  client: RemoteNfs;
  root: Buffer;
  /** The export path to mount on the proxy client. */
  exportPath: string;
  /** The session key the proxy client proves (unused when insecure). */
  key: SessionKey;
  restartProxyServer(): Promise<void>;
  stop(): Promise<void>;
}

/** client → proxy client → proxy server → upstream, all on loopback. */
export async function startChain(
  kind: 'gvfs' | 'ganesha',
  o: { user?: string; map?: IdentityMap; inlineMax?: number; timeoutMs?: number; insecure?: boolean; wrapUpstream?: (b: Backend) => Backend } = {},
): Promise<Chain> {
  const base = await tempDir('gvfs-chain-');
  const upstream = await startUpstream(kind, base, o.wrapUpstream);
  const c = { base, upstream, exportPath: upstream.exportPath } as Chain;
  const map = o.map ?? defaultMap();
  // Secure by default, as the product is: a session key for the user, proved on every connection.
  c.key = newSessionKey(o.user ?? 'alice');
  const startPs = async (port: number) => {
    c.proxyServer = await createProxyServer({
      sessions: o.insecure ? undefined : new SessionRegistry([c.key]),
      insecure: o.insecure,
      exports: [{ kind: 'upstream', url: { host: '127.0.0.1', port: upstream.port, mountPort: upstream.mountPort, path: upstream.exportPath } }],
      map,
      stateDir: path.join(base, 'proxy-state'),
      inlineMax: o.inlineMax,
      upstreamTimeoutMs: o.timeoutMs ?? 30_000,
    });
    c.proxyServerPort = (await c.proxyServer.listen(port, '127.0.0.1')).port;
  };
  await startPs(0);
  c.proxyClient = createProxyClient({
    host: '127.0.0.1',
    port: c.proxyServerPort,
    ...(o.insecure ? { user: o.user ?? 'alice', insecure: true } : { key: c.key }),
    timeoutMs: o.timeoutMs ?? 30_000,
  });
  c.proxyClientPort = (await c.proxyClient.server.listen(0, '127.0.0.1')).port;
  c.client = new RemoteNfs({ host: '127.0.0.1', port: c.proxyClientPort, timeoutMs: 60_000 });
  c.root = (await c.client.mount(upstream.exportPath, ROOT)).fh;
  c.restartProxyServer = async () => {
    await c.proxyServer.close();
    await startPs(c.proxyServerPort);
  };
  c.stop = async () => {
    await c.client.close();
    await c.proxyClient.close();
    await c.proxyServer.close();
    await upstream.stop();
    await fs.rm(base, { recursive: true, force: true });
  };
  return c;
}
