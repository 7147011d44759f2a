import path from 'node:path';
import type { Backend } from '../backend/backend.js';
import { LocalExport } from '../backends/local-export/local-export.js';
import { RemoteNfs } from '../backends/remote-nfs/remote-nfs.js';
import { gvfsProgram, principalAuthenticator } from '../frontends/nfs3-server/gvfs-program.js';
import { createNfs3Server } from '../frontends/nfs3-server/server.js';
import type { RpcServer, RpcServerLimits } from '../rpc/server.js';
import { defaultStateDir, loadSecret } from '../util/state.js';
import { IdentityMapBackend } from '../wrappers/identity-map/identity-map.js';
import type { IdentityMap } from '../wrappers/identity-map/map-file.js';
import { ProxyExports } from '../wrappers/proxy-exports/proxy-exports.js';
import type { UpstreamUrl } from './upstream-url.js';

export type ProxyExportSpec =
  | { kind: 'upstream'; url: UpstreamUrl; name?: string }
  | { kind: 'local'; dir: string; name?: string };

export interface ProxyServerOptions {
  exports: ProxyExportSpec[];
  map: IdentityMap;
  stateDir?: string;
  limits?: Partial<RpcServerLimits>;
  /** Connections to each upstream server. */
  upstreamConnections?: number;
  upstreamTimeoutMs?: number;
  /** Longest upstream handle wrapped inline (tests lower it to force the handle table). */
  inlineMax?: number;
}

export interface ProxyServer {
  server: RpcServer;
  backend: Backend;
  upstreams: RemoteNfs[];
  close(): Promise<void>;
}

/**
 * The proxy server (at the state or data server):
 * NFSv3 server ∘ identity map ∘ proxy handles ∘ (remote NFS | local export),
 * plus the GVFS extension program on the same port.
 */
export async function createProxyServer(o: ProxyServerOptions): Promise<ProxyServer> {
  const key = JSON.stringify(o.exports.map((e) => (e.kind === 'local' ? e.dir : `${e.url.host}:${e.url.port}${e.url.path}`)));
  const stateDir = o.stateDir ?? defaultStateDir('proxy-server', key);
  const upstreams: RemoteNfs[] = [];
  const list = [];
  for (const [i, e] of o.exports.entries()) {
    if (e.kind === 'upstream') {
      const r = new RemoteNfs({
        host: e.url.host,
        port: e.url.port,
        mountPort: e.url.mountPort,
        connections: o.upstreamConnections ?? 1,
        timeoutMs: o.upstreamTimeoutMs ?? 60_000,
      });
      upstreams.push(r);
      list.push({ name: e.name ?? e.url.path, backend: r as Backend, path: e.url.path });
    } else {
      const b = await LocalExport.open({ root: e.dir, stateDir: path.join(stateDir, `export-${i}`) });
      list.push({ name: e.name ?? '/', backend: b as Backend, path: '/' });
    }
  }
  const names = new Set(list.map((e) => e.name));
  if (names.size !== list.length) throw new Error('two exports have the same name; give them distinct names (DIR=NAME)');
  const handles = await ProxyExports.open(list, { secret: await loadSecret(stateDir), stateDir, inlineMax: o.inlineMax });
  const backend = new IdentityMapBackend(handles, o.map);
  const server = createNfs3Server({
    backend,
    limits: o.limits,
    authenticate: principalAuthenticator,
    extraPrograms: [gvfsProgram({ acceptHello: (p) => o.map.has(p) })],
  });
  return {
    server,
    backend,
    upstreams,
    async close() {
      await server.close();
      await backend.close();
    },
  };
}
