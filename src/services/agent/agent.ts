import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeKeyFile } from '../../channel/session-key.js';
import { fuseUnmount, mountState } from '../../frontends/fuse/mountpoint.js';
import { parseNfsUrl } from '../../proxy/upstream-url.js';
import { logger } from '../../util/log.js';
import { loadSecret } from '../../util/state.js';
import { controlRequest, controlSocketOf } from '../../wrappers/cache/control-socket.js';
import { Journal } from '../../wrappers/cache/journal.js';
import { sessionPath } from '../../wrappers/cache/session-dir.js';
import type { ComponentSpec, ComponentView, KeyDoc, MountPatch, MountSpec, ProxyServerSpec } from '../api/types.js';
import { isAlive, startDetached, stopProcess } from './processes.js';
import { AgentStore, type ComponentRow } from './store.js';
import { AgentError, checkExportDir, mountPath, walkMountPoint, type CheckedExport } from './confine.js';
import { scriptArgsOf } from '../../cli/self.js';

const log = logger('agent');

export interface AgentConfig {
  /** This host's name in sessions (state, data, compute ...). */
  name: string;
  stateDir: string;
  /** The agent's certificate and key files: its HTTPS API, and the TLS channel of its proxy servers. */
  certFile: string;
  keyFile: string;
  fingerprint: string;
  /** Directories whose subtrees may be exported (empty: none). */
  exportRoots: string[];
  /** Directories under which mounts may be made (empty: none). */
  mountRoots: string[];
  /** Address proxy servers listen on for TLS (loopback in tests; the host's address otherwise). */
  proxyHost: string;
  /** NFSv3 servers (HOST:PORT) this host's proxy servers may forward to (nfs:// exports); none by default. */
  allowUpstreams?: string[];
  /** How other hosts reach this host's OpenSSH server (ssh://USER@HOST:PORT), for the SSH channel. */
  sshUrl?: string;
  /** This host's SSH identity and known_hosts, for mounts through SSH tunnels. */
  sshKey?: string;
  knownHosts?: string;
  /** How often running components are checked (and restarted when they died). */
  monitorMs?: number;
  /** This host's site cache tier (HOST:PORT[,..]), its key file and CA: mounts that read store images by chunk hash ask it first. */
  siteCache?: string;
  siteKey?: string;
  siteCa?: string;
}

export { AgentError };

const FLUSH_WAIT_MS = 10 * 60_000;

/**
 * The per-host agent: starts, reconfigures and stops the proxy servers and
 * mounts of sessions on this host as detached `gvfs` processes, so they
 * outlive the agent, and keeps what it runs in its SQLite store. After a
 * restart it re-attaches to its processes, restarts those that died, and
 * removes whatever was half-started. Operations on one session run one at
 * a time; different sessions run concurrently.
 */
export class Agent {
  readonly store: AgentStore;
  private readonly locks = new Map<string, Promise<unknown>>();
  private monitor?: NodeJS.Timeout;
  private closed = false;

  constructor(readonly cfg: AgentConfig) {
    this.store = new AgentStore(cfg.stateDir);
  }

  static async open(cfg: AgentConfig): Promise<Agent> {
    await fs.mkdir(path.join(cfg.stateDir, 'sessions'), { recursive: true, mode: 0o700 });
    const a = new Agent(cfg);
    await a.recover();
    a.monitor = setInterval(() => void a.check(), cfg.monitorMs ?? 2000);
    a.monitor.unref();
    return a;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.monitor);
    this.store.close();
  }

  /** Run `fn` after every earlier operation on the same session. */
  private serial<T>(session: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(session) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(session, tail);
    void tail.then(() => {
      if (this.locks.get(session) === tail) this.locks.delete(session);
    });
    return run;
  }

  private sessionDir(session: string): string {
    return path.join(this.cfg.stateDir, 'sessions', session);
  }

  // ------------------------------------------------------------ start

  /** Start a component (idempotent: the same spec again returns the running one). */
  ensure(session: string, name: string, spec: ComponentSpec): Promise<ComponentView> {
    return this.serial(session, async () => {
      const have = this.store.get(session, name);
      if (have) {
        if (have.state === 'running' && JSON.stringify(have.spec) === JSON.stringify(spec)) return this.view(have, false);
        throw new AgentError(409, 'CONFLICT', `session ${session} already has a ${have.kind} "${name}" (${have.state}) with other settings; delete the session first`);
      }
      const checked = await this.allowed(spec);
      const dir = this.sessionDir(session);
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await this.writeKey(dir, spec.key);
      let createdMountpoint = false;
      if (spec.kind === 'mount') createdMountpoint = await this.prepareMountpoint(spec.mountpoint!);
      if (spec.kind === 'proxy-server') await this.seedExportSecrets(session, name, checked);
      if (spec.kind !== 'proxy-server' && spec.trustPublishers) await fs.writeFile(path.join(dir, `${name}-publishers.pub`), spec.trustPublishers.join('\n') + '\n', { mode: 0o644 });
      const row = { session, name, kind: spec.kind, spec, args: this.args(session, name, spec, 0, checked), port: null };
      this.store.insert(row);
      try {
        const started = await startDetached(row.args, dir, name);
        const port: number | null = spec.kind === 'mount' ? null : started.info.listening.port;
        this.store.update(session, name, { state: 'running', pid: started.pid, startTime: started.startTime, port, info: { ...started.info, createdMountpoint, checked } });
        log.info({ session, name, kind: spec.kind, pid: started.pid, port }, 'agent: started');
        return this.view(this.store.get(session, name)!, false);
      } catch (e) {
        this.store.delete(session, name);
        if (createdMountpoint && spec.kind === 'mount') await fs.rmdir(spec.mountpoint!).catch(() => undefined);
        if (this.store.list(session).length === 0) await fs.rm(dir, { recursive: true, force: true });
        log.warn({ session, name, err: (e as Error).message }, 'agent: start failed');
        throw new AgentError(502, 'START_FAILED', `${this.cfg.name}: ${spec.kind} ${name}: ${(e as Error).message}`);
      }
    });
  }

  /**
   * What this host allows: exports under its export roots, mounts under its
   * mount roots, SSH only when configured. Returns each exported directory
   * as checked (index of spec.exports; upstreams undefined).
   */
  private async allowed(spec: ComponentSpec): Promise<Array<CheckedExport | undefined>> {
    const checked: Array<CheckedExport | undefined> = [];
    if (spec.kind === 'proxy-server') {
      for (const e of spec.exports) {
        if (!!e.dir === !!e.upstream) throw new AgentError(400, 'BAD_EXPORT', `export ${e.name}: give a directory or an nfs:// URL`);
        checked.push(e.dir ? await checkExportDir(this.cfg.name, e.dir, this.cfg.exportRoots) : undefined);
        if (e.upstream) {
          let u;
          try {
            u = parseNfsUrl(e.upstream);
          } catch (err) {
            throw new AgentError(400, 'BAD_EXPORT', `export ${e.name}: ${(err as Error).message}`);
          }
          const allowed = this.cfg.allowUpstreams ?? [];
          if (!allowed.includes(`${u.host}:${u.port}`) || (u.mountPort !== u.port && !allowed.includes(`${u.host}:${u.mountPort}`))) {
            throw new AgentError(403, 'NOT_ALLOWED', `host ${this.cfg.name} does not forward to the NFS server ${u.host}:${u.port}${allowed.length ? ` (allowed: ${allowed.join(', ')})` : ' (it allows none)'}`);
          }
        }
      }
      if (spec.channel === 'ssh' && !this.cfg.sshUrl) throw new AgentError(400, 'NO_SSH', `host ${this.cfg.name} offers no SSH channel (its agent runs without --ssh-url)`);
    } else {
      if (spec.kind === 'mount' && !spec.mountpoint) throw new AgentError(400, 'BAD_PATH', 'a mount needs a mount point');
      if (spec.kind === 'proxy-client' && spec.mountpoint) throw new AgentError(400, 'BAD_PATH', 'a proxy client has no mount point');
      if (spec.mountpoint) mountPath(this.cfg.name, spec.mountpoint, this.cfg.mountRoots);
      if (spec.channel.kind === 'ssh' && !(this.cfg.sshKey && this.cfg.knownHosts)) throw new AgentError(400, 'NO_SSH', `host ${this.cfg.name} has no SSH identity for tunnels (its agent runs without --ssh-key/--known-hosts)`);
    }
    return checked;
  }

  /**
   * Before a restart: everything checked at the first start, checked again
   * now. An exported directory must still be that directory (swapped for a
   * link, even one inside the roots, it is refused); a mount point is walked
   * again without following links.
   */
  private async recheck(r: ComponentRow): Promise<Array<CheckedExport | undefined>> {
    if (r.kind === 'proxy-server') {
      const was = (r.info?.checked ?? []) as Array<CheckedExport | undefined>;
      const spec = r.spec as ProxyServerSpec;
      return Promise.all(spec.exports.map((e, i) => (e.dir ? checkExportDir(this.cfg.name, e.dir, this.cfg.exportRoots, was[i] ?? undefined) : undefined)));
    }
    const mnt = (r.spec as MountSpec).mountpoint;
    if (mnt) await walkMountPoint(this.cfg.name, mnt, this.cfg.mountRoots, true);
    return [];
  }

  /** Check (and make) a mount point without following links, at use time; true if the agent made the mount point itself. */
  private async prepareMountpoint(mnt: string): Promise<boolean> {
    mountPath(this.cfg.name, mnt, this.cfg.mountRoots);
    const st = await mountState(mnt).catch(() => ({ state: 'none' as const }));
    if (st.state === 'live' || st.state === 'unresponsive') throw new AgentError(409, 'MOUNTPOINT_BUSY', `${mnt} on ${this.cfg.name} is already a mount point`);
    const { made } = await walkMountPoint(this.cfg.name, mnt, this.cfg.mountRoots, true);
    return made.includes(mnt);
  }

  private async writeKey(dir: string, k: KeyDoc): Promise<void> {
    const file = path.join(dir, 'key.json');
    const have = await fs.readFile(file, 'utf8').catch(() => undefined);
    if (have) {
      const j = JSON.parse(have);
      if (j.id === k.id && j.key === k.key) return;
      throw new AgentError(409, 'CONFLICT', `session ${path.basename(dir)} on ${this.cfg.name} holds another key`);
    }
    const key = Buffer.from(k.key, 'base64');
    if (key.length !== 32) throw new AgentError(400, 'BAD_KEY', 'the session key must be 32 bytes (base64)');
    await writeKeyFile(file, { id: k.id, key, user: k.user, account: k.account });
  }

  /**
   * A directory is the same file system (same fsid, so the same cache keys)
   * in every session that exports it from this host: the agent keeps one
   * secret per exported directory and gives it to each session's proxy
   * server as that export's handle secret (gvfs proxy-server keeps export i's
   * state in STATE-DIR/export-i). Handles stay per session: the proxy's own
   * handles are bound to the session id.
   */
  private async seedExportSecrets(session: string, name: string, checked: Array<CheckedExport | undefined>): Promise<void> {
    for (const [i, e] of checked.entries()) {
      if (!e) continue;
      const real = e.real;
      const secret = await loadSecret(path.join(this.cfg.stateDir, 'exports', createHash('sha256').update(real).digest('hex').slice(0, 16)));
      const dir = path.join(this.sessionDir(session), `${name}-state`, `export-${i}`);
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await fs.writeFile(path.join(dir, 'handle-secret'), secret, { mode: 0o600 });
    }
  }

  /** The cache directory a mount uses: the host's shared one, or its own. */
  private cacheDir(session: string, name: string, spec: MountSpec): string {
    return spec.cache.shared ? path.join(this.cfg.stateDir, 'cache', 'shared') : path.join(this.cfg.stateDir, 'cache', 'sessions', `${session}-${name}`);
  }

  private cacheSession(session: string, name: string): string {
    return `${session}-${name}`;
  }

  /**
   * The gvfs command line of a component (`port`: a restarted proxy server keeps its port). Each gets its
   * own metrics listener on loopback, on a free port (its ready line says which; the session view shows it).
   */
  private args(session: string, name: string, spec: ComponentSpec, port: number, checked: Array<CheckedExport | undefined>): string[] {
    return [...this.componentArgs(session, name, spec, port, checked), '--metrics', '127.0.0.1:0'];
  }

  private componentArgs(session: string, name: string, spec: ComponentSpec, port: number, checked: Array<CheckedExport | undefined>): string[] {
    const dir = this.sessionDir(session);
    const key = path.join(dir, 'key.json');
    if (spec.kind === 'proxy-server') {
      const host = spec.channel === 'tls' ? this.cfg.proxyHost : '127.0.0.1';
      const a = ['proxy-server', '--listen', `${host}:${port}`, '--key', key, '--state-dir', path.join(dir, `${name}-state`)];
      // A directory is served by the real path the agent checked, and the proxy server checks it is still that directory.
      for (const [i, e] of spec.exports.entries()) {
        const mode = e.readOnly ? ':ro' : '';
        if (!e.dir) {
          a.push('--upstream', `${e.upstream}=${e.name}${mode}`);
          continue;
        }
        const c = checked[i];
        if (!c) throw new Error(`export ${e.name}: directory not checked`);
        a.push('--export', `${c.real}=${e.name}${mode}`, '--export-expect', `${c.real}=${c.dev}:${c.ino}`);
      }
      if (spec.channel === 'tls') a.push('--tls-cert', this.cfg.certFile, '--tls-key', this.cfg.keyFile);
      return a;
    }
    const a =
      spec.kind === 'mount'
        ? ['mount', '--server', `${spec.server.host}:${spec.server.port}`, '--key', key, '--export', spec.export, '--attr-timeout', String(spec.attrTimeout)]
        : ['proxy-client', '--server', `${spec.server.host}:${spec.server.port}`, '--key', key, '--listen', `127.0.0.1:${port}`, '--attr-timeout', String(spec.attrTimeout)];
    if (spec.channel.kind === 'tls') a.push('--tls-fingerprint', spec.channel.fingerprint);
    else a.push('--via', spec.channel.url, '--ssh-key', this.cfg.sshKey!, '--known-hosts', this.cfg.knownHosts!);
    if (spec.cache.mode !== 'none') {
      a.push('--cache-dir', this.cacheDir(session, name, spec), '--cache-session', this.cacheSession(session, name));
      if (spec.consistency) a.push('--consistency', spec.consistency);
      if (spec.pollPeriod !== undefined) a.push('--poll-period', String(spec.pollPeriod));
      a.push(spec.cache.mode === 'write-back' ? '--write-back' : '--write-through');
      if (spec.cache.size) a.push('--cache-size', String(spec.cache.size));
      if (spec.cache.blockSize) a.push('--block-size', String(spec.cache.blockSize));
      if (spec.cache.dirtyMaxAge !== undefined) a.push('--dirty-max-age', String(spec.cache.dirtyMaxAge));
      if (spec.cache.shared && spec.cacheId) a.push('--cache-id', spec.cacheId);
    }
    if (spec.trustPublishers) {
      a.push('--trust-publisher', path.join(dir, `${name}-publishers.pub`));
      if (this.cfg.siteCache) {
        a.push('--site-cache', this.cfg.siteCache);
        if (this.cfg.siteKey) a.push('--site-key', this.cfg.siteKey);
        if (this.cfg.siteCa) a.push('--site-ca', this.cfg.siteCa);
      }
    }
    // The endpoint serves the session's owner (its local account) and root, no other local user.
    if (spec.kind === 'proxy-client' && spec.key.account) a.push('--allow-uid', String(spec.key.account.uid));
    if (spec.kind === 'mount') a.push(spec.mountpoint!, '--foreground');
    return a;
  }

  // ------------------------------------------------------------ look

  list(): string[] {
    return [...new Set(this.store.list().map((r) => r.session))];
  }

  async session(session: string, withStats: boolean): Promise<ComponentView[]> {
    return Promise.all(this.store.list(session).map((r) => this.view(r, withStats)));
  }

  private async view(r: ComponentRow, withStats: boolean): Promise<ComponentView> {
    const v: ComponentView = {
      session: r.session,
      name: r.name,
      kind: r.kind,
      state: r.state,
      pid: r.pid,
      alive: r.pid !== null && (await isAlive({ pid: r.pid, startTime: r.startTime ?? '' })),
      port: r.port,
      restarts: r.restarts,
    };
    if (r.state === 'failed') v.error = r.info?.error ?? 'failed';
    const m = r.info?.metrics as { address?: string; port?: number } | undefined;
    if (m?.address && m.port) v.metrics = { address: m.address, port: m.port };
    if (r.kind === 'proxy-server') {
      const spec = r.spec as ProxyServerSpec;
      v.channel = spec.channel === 'tls' ? { kind: 'tls', fingerprint: this.cfg.fingerprint } : { kind: 'ssh', url: this.cfg.sshUrl! };
      v.address = spec.channel === 'tls' ? this.cfg.proxyHost : '127.0.0.1';
    } else {
      const spec = r.spec as MountSpec;
      if (spec.mountpoint) v.mountpoint = spec.mountpoint;
      else v.address = '127.0.0.1';
      if (withStats && spec.cache.mode !== 'none') {
        try {
          v.cache = (await this.control(r, { op: 'stats' }, 3000)).stats;
        } catch (e) {
          v.cache = null;
          v.cacheError = (e as Error).message;
        }
      }
    }
    return v;
  }

  private async control(r: ComponentRow, req: object, timeoutMs: number): Promise<any> {
    const spec = r.spec as MountSpec;
    const sd = sessionPath(this.cacheDir(r.session, r.name, spec), this.cacheSession(r.session, r.name));
    const c = await controlSocketOf(sd);
    if (!c) throw new Error(`mount ${r.name} has no control socket (not running?)`);
    const out = await controlRequest(c.socket, req, timeoutMs);
    if (!out.ok) throw new Error(out.error);
    return out;
  }

  // ------------------------------------------------------------ change

  /** Change a running mount's live policies (and remember them for a restart). */
  reconfigure(session: string, name: string, p: MountPatch): Promise<ComponentView> {
    return this.serial(session, async () => {
      const r = this.store.get(session, name);
      if (!r) throw new AgentError(404, 'NOT_FOUND', `session ${session} has no component ${name} on ${this.cfg.name}`);
      if (r.kind === 'proxy-server') throw new AgentError(400, 'NOT_A_MOUNT', `${name} is a ${r.kind}; only mounts and proxy clients have live policies`);
      const spec = structuredClone(r.spec) as MountSpec;
      if (p.cacheMode !== undefined && spec.cache.mode === 'none') throw new AgentError(400, 'NO_CACHE', `mount ${name} has no cache; its cache mode cannot change`);
      if ((p.consistency === 'poll' || p.consistency === 'callback') && spec.cache.mode === 'none') throw new AgentError(400, 'NO_CACHE', `mount ${name} has no cache; the ${p.consistency} model needs one`);
      if (spec.cache.mode !== 'none') {
        await this.ensureRunning(r);
        try {
          await this.control(
            r,
            {
              op: 'configure',
              writeBack: p.cacheMode === undefined ? undefined : p.cacheMode === 'write-back',
              attrTimeoutMs: p.attrTimeout === undefined ? undefined : Math.round(p.attrTimeout * 1000),
              consistency: p.consistency,
              pollMs: p.pollPeriod === undefined ? undefined : Math.round(p.pollPeriod * 1000),
            },
            FLUSH_WAIT_MS,
          );
        } catch (e) {
          throw new AgentError(502, 'RECONFIGURE_FAILED', `${this.cfg.name}: mount ${name}: ${(e as Error).message}`);
        }
        if (p.cacheMode) spec.cache.mode = p.cacheMode;
        if (p.consistency) spec.consistency = p.consistency;
        if (p.pollPeriod !== undefined) spec.pollPeriod = p.pollPeriod;
      }
      if (p.attrTimeout !== undefined) spec.attrTimeout = p.attrTimeout;
      this.store.update(session, name, { spec, args: this.args(session, name, spec, 0, []) });
      return this.view(this.store.get(session, name)!, true);
    });
  }

  /**
   * An order of the session service: the mount's cache drops what it holds
   * of `path` (relative to the mounted export; absent: everything) and asks
   * the server again. Returns how many files it dropped.
   */
  invalidate(session: string, name: string, p?: string): Promise<number> {
    return this.serial(session, async () => {
      const r = this.store.get(session, name);
      if (!r) throw new AgentError(404, 'NOT_FOUND', `session ${session} has no component ${name} on ${this.cfg.name}`);
      if (r.kind === 'proxy-server') throw new AgentError(400, 'NOT_A_MOUNT', `${name} is a ${r.kind}; only mounts and proxy clients have caches`);
      if ((r.spec as MountSpec).cache.mode === 'none') return 0; // nothing cached by GVFS
      await this.ensureRunning(r);
      try {
        return (await this.control(r, { op: 'invalidate', path: p }, FLUSH_WAIT_MS)).invalidated as number;
      } catch (e) {
        throw new AgentError(502, 'INVALIDATE_FAILED', `${this.cfg.name}: mount ${name}: ${(e as Error).message}`);
      }
    });
  }

  /** Deliver the write-back data of every mount of the session. */
  flush(session: string): Promise<Array<{ name: string; report: any }>> {
    return this.serial(session, async () => {
      const out = [];
      for (const r of this.store.list(session)) {
        if (r.kind === 'proxy-server' || (r.spec as MountSpec).cache.mode === 'none') continue;
        await this.ensureRunning(r);
        const res = await this.control(r, { op: 'flush', discard: false }, FLUSH_WAIT_MS);
        out.push({ name: r.name, report: res.report });
      }
      return out;
    });
  }

  // ------------------------------------------------------------ stop

  /**
   * Stop everything of a session here: mounts first (their write-back data
   * flushed, then unmounted), then proxy servers; then the key is removed.
   * Idempotent. A flush that cannot deliver everything stops the teardown
   * with nothing lost (409), unless `discard`.
   */
  stopSession(session: string, o: { discard?: boolean } = {}): Promise<{ stopped: string[] }> {
    return this.serial(session, async () => {
      const rows = this.store.list(session);
      const stopped: string[] = [];
      // Every mount's data delivered before any mount stops: a refusal leaves the whole session as it was.
      if (!o.discard) {
        for (const r of rows.filter((x) => x.kind !== 'proxy-server')) await this.flushMount(r, false);
      }
      for (const r of rows.filter((x) => x.kind !== 'proxy-server')) {
        await this.stopMount(r, !!o.discard);
        stopped.push(r.name);
      }
      for (const r of rows.filter((x) => x.kind === 'proxy-server')) {
        this.store.update(session, r.name, { state: 'stopping' });
        if (r.pid) await stopProcess({ pid: r.pid, startTime: r.startTime ?? '' }, 10_000);
        this.store.delete(session, r.name);
        stopped.push(r.name);
      }
      await fs.rm(this.sessionDir(session), { recursive: true, force: true });
      if (stopped.length) log.info({ session, stopped }, 'agent: session stopped');
      return { stopped };
    });
  }

  /** Deliver a mount's write-back data (a mount whose process died is started again to do it); 409 if the server refuses some. */
  private async flushMount(r: ComponentRow, discard: boolean): Promise<void> {
    const spec = r.spec as MountSpec;
    if (spec.cache.mode === 'none') return;
    // A mount that died is brought back first: its journal is flushed by the process that owns it.
    const sd = sessionPath(this.cacheDir(r.session, r.name, spec), this.cacheSession(r.session, r.name));
    if ((await Journal.inspect(sd)).records > 0 || (r.pid && (await isAlive({ pid: r.pid, startTime: r.startTime ?? '' })))) {
      await this.ensureRunning(r);
      let res;
      try {
        res = await this.control(r, { op: 'flush', discard }, FLUSH_WAIT_MS);
      } catch (e) {
        throw new AgentError(502, 'FLUSH_FAILED', `${this.cfg.name}: mount ${r.name}: flush failed, nothing stopped: ${(e as Error).message}`);
      }
      if (res.report.failed.length) {
        const bytes = res.report.failed.reduce((n: number, x: any) => n + x.bytes, 0);
        throw new AgentError(409, 'FLUSH_INCOMPLETE', `${this.cfg.name}: mount ${r.name}: ${bytes} bytes of ${res.report.failed.length} file(s) could not be delivered (${res.report.failed.map((x: any) => `${x.code}: ${x.message}`).join('; ')}); nothing stopped (delete with discard=true to drop them)`);
      }
    }
  }

  private async stopMount(r: ComponentRow, discard: boolean): Promise<void> {
    const spec = r.spec as MountSpec;
    await this.flushMount(r, discard);
    this.store.update(r.session, r.name, { state: 'stopping' });
    const cur = this.store.get(r.session, r.name)!;
    if (cur.pid) await stopProcess({ pid: cur.pid, startTime: cur.startTime ?? '' }, 60_000);
    if (spec.mountpoint) {
      const st = await mountState(spec.mountpoint).catch(() => ({ state: 'none' as const }));
      if (st.state !== 'none') await fuseUnmount(spec.mountpoint, { lazy: true }).catch((e) => log.warn({ err: (e as Error).message, mnt: spec.mountpoint }, 'agent: unmount failed'));
    }
    if (spec.cache.mode !== 'none') {
      const dir = this.cacheDir(r.session, r.name, spec);
      const sd = sessionPath(dir, this.cacheSession(r.session, r.name));
      const left = await Journal.inspect(sd);
      if (left.records > 0 && !discard) log.error({ session: r.session, name: r.name, bytes: left.bytes }, 'agent: journal still holds writes after the mount stopped; keeping it');
      else await fs.rm(spec.cache.shared ? sd : dir, { recursive: true, force: true });
    }
    if (cur.info?.createdMountpoint && spec.mountpoint) await fs.rmdir(spec.mountpoint).catch(() => undefined);
    this.store.delete(r.session, r.name);
  }

  // ------------------------------------------------------------ recovery

  /** Restart a component whose process died, with the same arguments (and port). */
  private async ensureRunning(r: ComponentRow): Promise<void> {
    if (r.pid && (await isAlive({ pid: r.pid, startTime: r.startTime ?? '' }))) return;
    let checked;
    try {
      checked = await this.recheck(r);
    } catch (e) {
      if (!(e instanceof AgentError)) throw e;
      // It can no longer run confined: stopped for good, with the reason, never retried by the monitor.
      this.store.update(r.session, r.name, { state: 'failed', pid: null, info: { ...r.info, error: e.message, errorCode: e.code } });
      Object.assign(r, this.store.get(r.session, r.name));
      log.error({ session: r.session, name: r.name, err: e.message }, 'agent: component not restarted: it can no longer run confined');
      throw e;
    }
    const args = this.args(r.session, r.name, r.spec, r.port ?? 0, checked);
    log.warn({ session: r.session, name: r.name, pid: r.pid }, 'agent: process gone, restarting it');
    const started = await startDetached(args, this.sessionDir(r.session), r.name);
    this.store.update(r.session, r.name, { pid: started.pid, startTime: started.startTime, restarts: r.restarts + 1, info: { ...started.info, createdMountpoint: r.info?.createdMountpoint ?? false, checked } });
    Object.assign(r, this.store.get(r.session, r.name));
  }

  /** At start: drop what was half-started, finish what was being stopped, re-attach to or restart the rest. */
  private async recover(): Promise<void> {
    for (const r of this.store.list()) {
      if (r.state === 'starting') {
        log.warn({ session: r.session, name: r.name }, 'agent: removing a component left half-started');
        if (r.pid) await stopProcess({ pid: r.pid, startTime: r.startTime ?? '' }, 5000);
        // A starting row has no pid yet: its process (if any) is found by its session directory.
        await this.killStray(r);
        if (r.kind === 'mount' && (r.spec as MountSpec).mountpoint) {
          const mnt = (r.spec as MountSpec).mountpoint!;
          const st = await mountState(mnt).catch(() => ({ state: 'none' as const }));
          if (st.state !== 'none') await fuseUnmount(mnt, { lazy: true }).catch(() => undefined);
        }
        this.store.delete(r.session, r.name);
        if (this.store.list(r.session).length === 0) await fs.rm(this.sessionDir(r.session), { recursive: true, force: true });
        continue;
      }
      const alive = r.pid !== null && (await isAlive({ pid: r.pid, startTime: r.startTime ?? '' }));
      if (alive) log.info({ session: r.session, name: r.name, pid: r.pid }, 'agent: re-attached');
      if (r.state === 'stopping') {
        void this.stopSession(r.session).catch((e) => log.error({ session: r.session, err: (e as Error).message }, 'agent: finishing a stop failed'));
        continue;
      }
      if (!alive && r.state === 'running') {
        try {
          await this.ensureRunning(r);
        } catch (e) {
          log.error({ session: r.session, name: r.name, err: (e as Error).message }, 'agent: could not restart a component');
        }
      }
    }
  }

  /**
   * Kill a process of ours whose pid was never recorded (the agent died while it started): the one running exactly
   * this component's command line. Matching on the session's key and kind alone also took a sibling mount of the
   * same session that was running fine.
   */
  private async killStray(r: ComponentRow): Promise<void> {
    for (const p of await fs.readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(p)) continue;
      const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
      // node, its flags, a script (the gvfs CLI), then the component's arguments (startDetached appends --json).
      // The arguments decide, not the script's name: they name this agent's own key file for the session.
      const args = scriptArgsOf(cmd.split('\0'))?.args;
      if (args && r.args.length > 0 && r.args.every((a, i) => args[i] === a)) {
        const st = await fs.readFile(`/proc/${p}/stat`, 'utf8').catch(() => '');
        const start = st.slice(st.lastIndexOf(')') + 2).split(' ')[19];
        if (start) await stopProcess({ pid: Number(p), startTime: start }, 5000);
      }
    }
  }

  /** Periodic: restart running components whose process died. */
  private async check(): Promise<void> {
    if (this.closed) return;
    for (const r of this.store.list()) {
      if (r.state !== 'running' || this.locks.has(r.session)) continue;
      if (r.pid && (await isAlive({ pid: r.pid, startTime: r.startTime ?? '' }))) continue;
      void this.serial(r.session, async () => {
        const cur = this.store.get(r.session, r.name);
        if (!cur || cur.state !== 'running' || this.closed) return;
        await this.ensureRunning(cur);
      }).catch((e) => log.error({ session: r.session, name: r.name, err: (e as Error).message }, 'agent: restart failed'));
    }
  }
}
