import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { LocalExport } from '../../../src/backends/local-export/local-export.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { newSessionKey, type SessionKey } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { createNfs3Server } from '../../../src/frontends/nfs3-server/server.js';
import { createProxyClient, type ProxyClient, type ProxyLinkOptions } from '../../../src/proxy/proxy-client.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import type { RpcServer } from '../../../src/rpc/server.js';
import type { CacheBackend } from '../../../src/wrappers/cache/cache-backend.js';
import type { CacheOptions } from '../../../src/wrappers/cache/options.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';

export { ROOT };

/**
 * upstream (`gvfs serve` in-process, its own attribute cache off so changes
 * made in its directory show at once) → proxy server → proxy client(s) with a
 * cache, each with its own session key; our NFS client mounted on each proxy
 * client. The upstream server's per-procedure counters say what crossed the
 * wire.
 */
export interface CacheChain {
  base: string;
  exportDir: string;
  upstreamServer: RpcServer;
  upstreamPort: number;
  proxyServer: ProxyServer;
  proxyServerPort: number;
  sessions: SessionRegistry;
  /** Calls of an NFSv3 procedure the upstream server has answered ('READ', 'WRITE' ...). */
  upstreamCalls(proc: string): number;
  startSession(o?: { port?: number; cacheDir?: string; cache?: Partial<CacheOptions>; key?: SessionKey; timeoutMs?: number; noCache?: boolean; meta?: ProxyLinkOptions['meta'] }): Promise<Session>;
  stopUpstream(): Promise<void>;
  /** The link goes dead (the proxy server stops) and comes back on the same port. */
  stopProxyServer(): Promise<void>;
  startProxyServer(): Promise<void>;
  startUpstream(): Promise<void>;
  stop(): Promise<void>;
}

export interface Session {
  key: SessionKey;
  pc: ProxyClient;
  cache: CacheBackend;
  port: number;
  client: RemoteNfs;
  root: Buffer;
  lookup(name: string): Promise<Buffer>;
  stop(): Promise<void>;
}

/**
 * `changeLogEntries`: each export's change-log bound at the proxy server (the poll consistency model).
 * `localExport`: the proxy server exports `exportDir` itself (a local export, with its disk watcher) instead of the upstream server.
 * `delegateUnwatched`: the proxy server's option (default: true with the upstream server, false with a local export).
 */
export async function startCacheChain(o: { changeLogEntries?: number; localExport?: boolean; diskWatchMaxPending?: number; delegationLeaseMs?: number; delegateUnwatched?: boolean; watchDisk?: boolean } = {}): Promise<CacheChain> {
  const base = await tempDir('gvfs-cache-');
  const exportDir = path.join(base, 'export');
  await fs.mkdir(exportDir);
  const c = { base, exportDir } as CacheChain;
  let upstream: LocalExport;
  const startUp = async (port: number) => {
    upstream = await LocalExport.open({ root: exportDir, stateDir: path.join(base, 'up-state'), attrCacheMs: 0 });
    c.upstreamServer = createNfs3Server({ backend: upstream });
    c.upstreamPort = (await c.upstreamServer.listen(port, '127.0.0.1')).port;
  };
  await startUp(0);
  c.sessions = new SessionRegistry();
  const first = newSessionKey('alice');
  c.sessions.add(first);
  const startPs = async (port: number) => {
    c.proxyServer = await createProxyServer({
      sessions: c.sessions,
      exports: o.localExport ? [{ kind: 'local', dir: exportDir }] : [{ kind: 'upstream', url: { host: '127.0.0.1', port: c.upstreamPort, mountPort: c.upstreamPort, path: '/' } }],
      map: new Map([['alice', { uid: 0, gid: 0, gids: [] }]]),
      stateDir: path.join(base, 'ps-state'),
      upstreamTimeoutMs: 5_000,
      changeLogEntries: o.changeLogEntries,
      delegationLeaseMs: o.delegationLeaseMs,
      diskWatchMaxPending: o.diskWatchMaxPending,
      watchDisk: o.watchDisk,
      // The upstream is the test's own server, changed only through the proxy server (tests change it directly only before sessions start).
      delegateUnwatched: o.delegateUnwatched ?? !o.localExport,
    });
    c.proxyServerPort = (await c.proxyServer.listen(port, '127.0.0.1')).port;
  };
  await startPs(0);
  let psUp = true;
  c.stopProxyServer = async () => {
    psUp = false;
    await c.proxyServer.close();
  };
  c.startProxyServer = async () => {
    await startPs(c.proxyServerPort);
    psUp = true;
  };
  const live: Session[] = [];
  let firstUsed = false;
  c.upstreamCalls = (proc) => c.upstreamServer.stats.callsByProc.get(`nfs3.${proc}`) ?? 0;
  c.stopUpstream = async () => {
    await c.upstreamServer.close();
    await upstream.close();
  };
  c.startUpstream = () => startUp(c.upstreamPort);
  c.startSession = async (o = {}) => {
    let key = o.key;
    if (!key) {
      key = firstUsed ? newSessionKey('alice') : first;
      firstUsed = true;
      c.sessions.add(key);
    }
    const pc = createProxyClient({
      host: '127.0.0.1',
      port: o.port ?? c.proxyServerPort,
      key,
      timeoutMs: o.timeoutMs ?? 10_000,
      cache: o.noCache ? undefined : { dir: o.cacheDir ?? path.join(base, 'cache'), capacity: 256 << 20, ...o.cache },
      meta: o.meta,
    });
    await pc.cache?.ready;
    const port = (await pc.server.listen(0, '127.0.0.1')).port;
    const client = new RemoteNfs({ host: '127.0.0.1', port, timeoutMs: 30_000 });
    const root = (await client.mount('/', ROOT)).fh;
    const s: Session = {
      key,
      pc,
      cache: pc.cache!,
      port,
      client,
      root,
      lookup: async (name) => (await client.lookup(ROOT, root, name)).fh,
      async stop() {
        const i = live.indexOf(s);
        if (i >= 0) live.splice(i, 1);
        await client.close();
        await pc.close();
      },
    };
    live.push(s);
    return s;
  };
  c.stop = async () => {
    for (const s of [...live]) await s.stop().catch(() => undefined);
    if (psUp) await c.proxyServer.close();
    await c.stopUpstream().catch(() => undefined);
    await fs.rm(base, { recursive: true, force: true });
  };
  return c;
}

/** Read a whole file through an NFS client, `chunk` bytes per READ, `depth` READs in flight. */
export async function readAll(client: RemoteNfs, fh: Buffer, size: number, chunk = 256 * 1024, depth = 4): Promise<Buffer> {
  const out = Buffer.alloc(size);
  let next = 0;
  const worker = async () => {
    while (next < size) {
      const off = next;
      next += chunk;
      const r = await client.read(ROOT, fh, off, Math.min(chunk, size - off));
      r.data.copy(out, off);
      if (r.count !== Math.min(chunk, size - off)) throw new Error(`short read at ${off}: ${r.count}`);
    }
  };
  await Promise.all(Array.from({ length: depth }, worker));
  return out;
}

/** What `s` reads from `name` in its root now: looked up, its size asked, read whole. */
export async function readName(s: Session, name: string): Promise<string> {
  const fh = (await s.client.lookup(ROOT, s.root, name)).fh;
  const at = await s.client.getattr(ROOT, fh);
  return (await s.client.read(ROOT, fh, 0, at.size + 16)).data.toString();
}

/** Waits until `s` reads `want` from `name`; fails once `bound` ms have passed since the change. Returns the ms it took. */
export async function readsWithin(s: Session, name: string, want: string, bound: number): Promise<number> {
  const t0 = Date.now();
  let seen = '';
  while ((seen = await readName(s, name).catch((e: Error) => `<${e.message}>`)) !== want) {
    assert.ok(Date.now() - t0 <= bound, `B still reads ${JSON.stringify(seen)} ${Date.now() - t0} ms after the change on disk`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

export { rng } from '../../helpers/seed.js';
