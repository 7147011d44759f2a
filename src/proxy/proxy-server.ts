import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Backend } from '../backend/backend.js';
import { LocalExport } from '../backends/local-export/local-export.js';
import { RemoteNfs } from '../backends/remote-nfs/remote-nfs.js';
import { SessionRegistry } from '../channel/sessions.js';
import { tlsTransport, type TlsServerFiles } from '../channel/tls.js';
import { GVFS_PROGRAM } from '../ext/codec.js';
import { CbProc, GVFS_CB_V1, recallArgs, recallRes, type RecallStatus } from '../ext/callback-codec.js';
import type { ConnectionState } from '../rpc/program.js';
import { RpcError } from '../rpc/types.js';
import { connectionSession, gvfsProgram, principalAuthenticator, sessionAuthenticator } from '../frontends/nfs3-server/gvfs-program.js';
import { PMAP_PROGRAM } from '../portmap/program.js';
import { logger } from '../util/log.js';
import { createNfs3Server } from '../frontends/nfs3-server/server.js';
import type { RpcServer, RpcServerLimits } from '../rpc/server.js';
import { defaultStateDir, loadSecret } from '../util/state.js';
import { IdentityMapBackend, principalOf } from '../wrappers/identity-map/identity-map.js';
import type { IdentityMap } from '../wrappers/identity-map/map-file.js';
import { ProxyExports } from '../wrappers/proxy-exports/proxy-exports.js';
import { HideMetaBackend } from '../wrappers/metadata/hide.js';
import { SessionFence } from '../wrappers/session-fence/session-fence.js';
import { ChangeLog } from '../wrappers/change-log/change-log.js';
import { DiskWatcher } from '../backends/local-export/disk-watcher.js';
import { ChangeLogBackend } from '../wrappers/change-log/change-log-backend.js';
import { ChangesServer } from './changes-server.js';
import { DelegationServer } from './delegation-server.js';
import { ChunkServer } from './chunk-server.js';
import { DelegationBackend, delegationKey } from '../wrappers/delegation/delegation-backend.js';
import { DelegationTable } from '../wrappers/delegation/delegations.js';
import { DelegationState } from '../wrappers/delegation/delegation-state.js';
import { MetaServer, type MetaExport } from './meta-server.js';
import type { UpstreamUrl } from './upstream-url.js';
import { checkExportRoot, type ExportRootCheck } from './export-root.js';
import { StoreBackend } from '../backends/store/store-backend.js';
import type { ObjectStore } from '../store/store.js';
import type { SiteCacheClient } from '../sitecache/site-client.js';

const log = logger('proxy');

/** Longest a connection may take from accept to a proved session key (ms). */
export const DEFAULT_PROOF_TIMEOUT_MS = 10_000;

/** Callback model: the lease of a delegation (ms). */
export const DEFAULT_LEASE_MS = 30_000;

/** `readOnly`: every change through this export is refused with NFS3ERR_ROFS (the front end's write guard). */
export type ProxyExportSpec =
  | { kind: 'upstream'; url: UpstreamUrl; name?: string; readOnly?: boolean }
  | { kind: 'local'; dir: string; name?: string; readOnly?: boolean; expect?: ExportRootCheck }
  /** Images of an object store (always read-only); `trusted`: publisher keys whose manifests are served. */
  | { kind: 'store'; store: ObjectStore; trusted: Buffer[]; name?: string; site?: SiteCacheClient };

export interface ProxyServerOptions {
  exports: ProxyExportSpec[];
  /** Grid identity → local account (sessions without an account of their own map through it). */
  map: IdentityMap;
  /** Session keys: connections must prove one before anything is answered. */
  sessions?: SessionRegistry;
  /** Serve without session keys (HELLO or AUTH_SYS identities); say so loudly. */
  insecure?: boolean;
  /** TLS 1.3 certificate and key: listen for TLS instead of plain TCP. */
  tls?: TlsServerFiles;
  /** Longest from accept to a proved session key (ms; default DEFAULT_PROOF_TIMEOUT_MS). */
  proofTimeoutMs?: number;
  /** Older name of proofTimeoutMs. */
  handshakeTimeoutMs?: number;
  /** Longest from accept to the end of the TLS handshake (ms; default channel/tls DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS). */
  tlsHandshakeTimeoutMs?: number;
  stateDir?: string;
  limits?: Partial<RpcServerLimits>;
  /** Connections to each upstream server. */
  upstreamConnections?: number;
  upstreamTimeoutMs?: number;
  /** Longest upstream handle wrapped inline (tests lower it to force the handle table). */
  inlineMax?: number;
  /** zstd level of bulk transfers (meta/compress.ts). */
  compressLevel?: number;
  /** Entries each export's change log keeps (the poll consistency model; wrappers/change-log). */
  changeLogEntries?: number;
  /**
   * Local exports: feed changes made on their disk by other programs to the
   * change log (fanotify; needs CAP_SYS_ADMIN, else a loud warning and
   * nothing). Default true.
   */
  watchDisk?: boolean;
  /**
   * Callback model: grant delegations on exports whose changes this server
   * cannot all see (an upstream NFS server, a local export not watched): the
   * operator vouches that every change goes through this proxy server. Off
   * (default): DELEGATE on such an export is refused (NOTSUPP) and its
   * callback clients ask every call, so a change made behind our back is
   * never hidden by a delegation.
   */
  delegateUnwatched?: boolean;
  /** Disk watcher: records not yet handled past which it reports an overflow (tests; default 65536). */
  diskWatchMaxPending?: number;
  /** Callback model: a holder that does not answer a recall within this is revoked and fenced (ms; default DEFAULT_LEASE_MS). */
  delegationLeaseMs?: number;
  /** Longest a conflicting call waits for recalls before NFS3ERR_JUKEBOX (ms; default the lease). */
  delegationWaitMs?: number;
  /** Handle MAC secret (32 bytes) instead of the state directory's: servers of one store share it so their handles agree. */
  handleSecret?: Buffer;
}

export interface ProxyServer {
  server: RpcServer;
  backend: Backend;
  upstreams: RemoteNfs[];
  /** The meta-data procedures' side (counters). */
  meta: MetaServer;
  /** CHANGES_SINCE (the poll consistency model): counters, and each export's change log. */
  changes: ChangesServer;
  /** STORE_FILE / GET_CHUNK (compute hosts reading store images by chunk hash): counters. */
  chunks: ChunkServer;
  changeLogs: ChangeLog[];
  /** Each local export's disk watcher (undefined: not watched: not local, turned off, or not permitted). */
  diskWatchers: Array<DiskWatcher | undefined>;
  /** Each session's calls in flight (a new connection of a session waits for them). */
  fence: SessionFence;
  sessions: SessionRegistry;
  /** The callback model's delegations (counters, holders, fences). */
  delegations: DelegationTable;
  /**
   * Call a connected session back (reverse direction, over a connection it
   * dialled and proved): CB_RECALL of `fh`. Rejects with RpcError
   * 'disconnected' when the session has no connection now (or it drops
   * before answering), 'timeout' after `timeoutMs`.
   */
  recall(session: string, fh: Buffer, timeoutMs: number): Promise<RecallStatus>;
  /** Whether a session has a proved connection now. */
  connected(session: string): boolean;
  /** Listen (TLS when configured). Plain TCP off loopback needs `insecure`: use TLS or an SSH tunnel. */
  listen(port: number, host: string): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}

/**
 * The proxy server (at the state or data server):
 * NFSv3 server ∘ identity map ∘ proxy handles ∘ (remote NFS | local export),
 * plus the GVFS extension program on the same port.
 */
export async function createProxyServer(o: ProxyServerOptions): Promise<ProxyServer> {
  const key = JSON.stringify(o.exports.map((e) => (e.kind === 'local' ? e.dir : e.kind === 'store' ? e.store.url : `${e.url.host}:${e.url.port}${e.url.path}`)));
  const stateDir = o.stateDir ?? defaultStateDir('proxy-server', key);
  const upstreams: RemoteNfs[] = [];
  const list = [];
  // Each export's backend under the hiding wrapper: the meta-data procedures read `.gvfs-meta` through it.
  const metaExports: MetaExport[] = [];
  // Each export's change log (poll consistency), fed by every call through it: the same log whichever session changed a file.
  const changeLogs: ChangeLog[] = [];
  // Local exports' disk watchers, by export index (undefined: not watched).
  const diskWatchers: Array<DiskWatcher | undefined> = [];
  // Exports whose every change this server sees (callback: only these are delegated, unless delegateUnwatched).
  const watched: boolean[] = [];
  // Delegations (callback model): one table for every export; recalls go to the holder's connection.
  const leaseMs = o.delegationLeaseMs ?? DEFAULT_LEASE_MS;
  const delegationTable = new DelegationTable({ leaseMs, waitMs: o.delegationWaitMs, recall: (s, fh) => recallSession(s, fh, leaseMs), state: new DelegationState(path.join(stateDir, 'delegations.json')) });
  const logged = (b: Backend) => {
    const l = new ChangeLog(o.changeLogEntries);
    changeLogs.push(l);
    return new DelegationBackend(new ChangeLogBackend(b, l), delegationTable, changeLogs.length - 1);
  };
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
      list.push({ name: e.name ?? e.url.path, backend: logged(new HideMetaBackend(r)), path: e.url.path, readOnly: !!e.readOnly });
      watched[i] = false; // other clients of the upstream server change it unseen
      metaExports.push({ raw: r, path: e.url.path });
    } else if (e.kind === 'store') {
      const b = await StoreBackend.open({ store: e.store, trusted: e.trusted, site: e.site });
      // Logged like every export (the change logs are indexed by export); a read-only store logs nothing.
      list.push({ name: e.name ?? '/', backend: logged(b), path: '/', readOnly: true });
      watched[i] = false; // a publisher may replace an image under its name: not seen here
      // No .gvfs-meta in a store: the manifest carries the hints, block hashes and prefetch order (StoreBackend.fileMeta).
      metaExports.push({ raw: b, path: '/', meta: b });
    } else {
      if (e.expect) await checkExportRoot(e.dir, e.expect);
      const b = await LocalExport.open({ root: e.dir, stateDir: path.join(stateDir, `export-${i}`) });
      if (e.expect) {
        // Checked again once open: a swap between the check and the open is refused too.
        if (b.root !== e.dir) throw new Error(`refusing to export ${e.dir}: it resolved to ${b.root} while opening`);
        await checkExportRoot(e.dir, e.expect);
      }
      list.push({ name: e.name ?? '/', backend: logged(new HideMetaBackend(b)), path: '/', readOnly: !!e.readOnly });
      metaExports.push({ raw: b, path: '/' });
      // Changes made on this disk by other programs: into the same log (our own calls are logged as they are made).
      // And to the delegation table (callback): a change on disk recalls its holders; lost events recall every holder of the export.
      const changeLog = changeLogs[changeLogs.length - 1];
      const ex = changeLogs.length - 1;
      const recalled = (p: Promise<void>) => void p.catch((err: Error) => log.error({ err }, 'a recall after a change on disk failed'));
      if (o.watchDisk !== false) {
        diskWatchers[i] = DiskWatcher.start(b, {
          record: (fh) => {
            changeLog.record(fh);
            recalled(delegationTable.changedElsewhere(delegationKey(ex, fh)));
          },
          lost: () => {
            changeLog.lost();
            recalled(delegationTable.recallAll(`${ex}:`));
          },
          died: () => {
            watched[i] = false;
            log.error({ export: e.dir }, 'callback: the export is no longer watched; no more delegations are granted on it (the lost events recalled those held)');
          },
        }, o.diskWatchMaxPending);
      }
      watched[i] = !!diskWatchers[i];
    }
    if (!watched[i]) {
      log.warn(
        { export: e.kind === 'local' ? e.dir : e.kind === 'store' ? e.store.url : `${e.url.host}:${e.url.port}${e.url.path}` },
        o.delegateUnwatched
          ? 'CALLBACK CONSISTENCY TRUSTS THE OPERATOR on this export: it is not watched, so a change made there other than through this proxy server does NOT recall delegations (--delegate-unwatched)'
          : 'callback consistency: this export is not watched (an upstream NFS server, a store, or a local export without fanotify): no delegations are granted on it, its callback clients ask the server every call (--delegate-unwatched if every change goes through this proxy server)',
      );
    }
  }
  const names = new Set(list.map((e) => e.name));
  if (names.size !== list.length) throw new Error('two exports have the same name; give them distinct names (DIR=NAME)');
  if (o.handleSecret) await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const handles = await ProxyExports.open(list, { secret: o.handleSecret ?? (await loadSecret(stateDir)), // (loadSecret creates stateDir; a given secret does not)
 stateDir, inlineMax: o.inlineMax });
  // Fences and the clients that held delegations before a restart (their grace period): README "Consistency".
  await delegationTable.load();
  const sessions = o.sessions ?? new SessionRegistry();
  if (!o.insecure && sessions.size === 0) throw new Error('refusing to serve without a session key: give --key FILE (or --insecure to run without keys)');
  if (o.insecure) log.warn('INSECURE: serving without session keys; anyone who can connect is trusted with the identity they claim');
  // A session with an account of its own maps to it; otherwise its grid identity goes through the map.
  // Calls of a session finish before a new connection of it is served (a restarted proxy client's resent writes land after the old ones).
  const fence = new SessionFence();
  const backend = new IdentityMapBackend(fence.wrap(handles), (c) => {
    const k = c.session !== undefined ? sessions.lookup(c.session) : undefined;
    return k ? (k.account ?? o.map.get(k.user)) : o.insecure ? o.map.get(principalOf(c)) : undefined;
  });
  const meta = new MetaServer({
    top: backend,
    mapCred: (c) => backend.mapCred(c),
    unwrap: (fh, c) => handles.unwrap(fh, c),
    exports: metaExports,
    level: o.compressLevel,
  });
  const delegations = new DelegationServer(
    delegationTable,
    (fh, c) => handles.unwrap(fh, c),
    leaseMs,
    (ex) => watched[ex] || !!o.delegateUnwatched,
    (c, fh) => backend.getattr(c, fh),
    (c, fh, off, n) => backend.read(c, fh, off, n),
  );
  const chunks = new ChunkServer({ top: backend, unwrap: (fh, c) => handles.unwrap(fh, c), exports: metaExports.map((e) => e.raw) });
  const changes = new ChangesServer({ logs: changeLogs, unwrap: (fh, c) => handles.unwrap(fh, c), wrap: (c, ex, ufh) => handles.wrap(c, ex, ufh) });
  const server = createNfs3Server({
    backend,
    limits: o.limits,
    authenticate: o.insecure ? principalAuthenticator : sessionAuthenticator,
    extraPrograms: [gvfsProgram(o.insecure ? { acceptHello: (p) => o.map.has(p), meta, changes, delegations, chunks } : { sessions, meta, changes, delegations, chunks, beforeSession: (id) => fence.settle(id) })],
    // Before a session is proved, the portmapper reveals only itself and the GVFS program.
    portmapVisible: o.insecure ? undefined : (prog, conn) => prog === PMAP_PROGRAM || prog === GVFS_PROGRAM || connectionSession(conn) !== undefined,
    // Both deadlines run from the TCP accept; unproven connections have their own pool (RpcServerLimits.maxUnproven).
    handshake: o.insecure ? undefined : { timeoutMs: o.proofTimeoutMs ?? o.handshakeTimeoutMs ?? DEFAULT_PROOF_TIMEOUT_MS, done: (conn) => connectionSession(conn) !== undefined,
      // Every later line about the connection names its session.
      describe: (conn) => {
        const k = connectionSession(conn);
        return k ? { session: k.id, user: k.user } : {};
      },
    },
    transport: o.tls ? tlsTransport(o.tls, o.tlsHandshakeTimeoutMs) : undefined,
    readOnly: list.some((e) => e.readOnly) ? (fh, cred) => handles.readOnlyHandle(fh, cred) : undefined,
  });
  // The newest proved connection of a session (a reconnected client's old socket may linger until it closes).
  const sessionConn = (id: string): ConnectionState | undefined => {
    let found: ConnectionState | undefined;
    for (const c of server.provenConnections()) if (connectionSession(c)?.id === id && c.callPeer && (!found || c.id > found.id)) found = c;
    return found;
  };
  async function recallSession(id: string, fh: Buffer, timeoutMs: number): Promise<RecallStatus> {
    const c = sessionConn(id);
    if (!c?.callPeer) throw new RpcError(`session ${id}: no connection to call back`, 'disconnected');
    return c.callPeer(GVFS_PROGRAM, GVFS_CB_V1, CbProc.RECALL, (w) => recallArgs.enc(w, fh), recallRes.dec, timeoutMs);
  }
  return {
    server,
    backend,
    upstreams,
    delegations: delegationTable,
    connected: (id) => sessionConn(id) !== undefined,
    recall: recallSession,
    sessions,
    meta,
    changes,
    chunks,
    changeLogs,
    diskWatchers,
    fence,
    async listen(port: number, host: string) {
      if (!o.tls && !o.insecure && !isLoopback(host)) throw new Error(`refusing plaintext on ${host}: give --tls-cert/--tls-key, listen on loopback behind an SSH tunnel, or --insecure`);
      return server.listen(port, host);
    },
    async close() {
      delegationTable.close();
      await Promise.all(diskWatchers.map((w) => w?.close()));
      await server.close();
      await backend.close();
    },
  };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
