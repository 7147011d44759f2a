import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { newSessionKey } from '../../channel/session-key.js';
import { logger } from '../../util/log.js';
import { sumCounters } from '../../util/counters.js';
import { call, HttpError, type PinnedTarget } from '../api/https.js';
import type { Account, CachePolicy, ComponentView, KeyDoc, MountSpec, ProxyServerSpec } from '../api/types.js';
import { SessionStore, type SessionRow } from './store.js';
import type { User } from './users.js';

const log = logger('sessiond');

export interface AgentRef {
  name: string;
  url: string;
  fingerprint: string;
}

export interface SessiondConfig {
  stateDir: string;
  /** The service's certificate and key: its HTTPS API, and its client certificate towards the agents. */
  cert: Buffer;
  key: Buffer;
  agents: AgentRef[];
  /** Longest lifetime a session may ask for or be renewed to (seconds). */
  maxLifetime?: number;
  defaultLifetime?: number;
  /** How often lifetimes are checked and unfinished teardowns retried (ms). */
  tickMs?: number;
}

export class ServiceError extends Error {
  override name = 'ServiceError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A session create request (after schema validation). */
export interface CreateRequest {
  user?: string;
  compute: string;
  exports: Array<{ role: 'state' | 'data'; host: string; path: string; name?: string; access?: 'mount' | 'nfs'; mountpoint?: string; cache?: CachePolicy; readOnly?: boolean }>;
  account?: Account;
  cache?: CachePolicy;
  attrTimeout?: number;
  consistency?: 'ttl' | 'poll' | 'callback';
  pollPeriod?: number;
  channel?: 'tls' | 'ssh';
  lifetime?: number;
  /** Publisher keys the compute host trusts to read store images by chunk hash (MountSpec.trustPublishers). */
  trustPublishers?: string[];
}

export interface PatchRequest {
  mountpoint?: string;
  cache?: { mode: 'write-back' | 'write-through' };
  attrTimeout?: number;
  consistency?: 'ttl' | 'poll' | 'callback';
  pollPeriod?: number;
}

interface Component {
  host: string;
  name: string;
  kind: 'proxy-server' | 'mount' | 'proxy-client';
  port?: number | null;
  mountpoint?: string;
}

/**
 * Live counters of one mount, as the dashboard and GET /sessions/{id} show
 * them: the mount's data counters (util/counters.ts, where each is defined)
 * under the names the API has used; hits and misses are bytes.
 */
export interface MountStats {
  mountpoint?: string;
  /** An access-nfs export's endpoint (nfs://…). */
  endpoint?: string;
  mode: string;
  /** The cache's consistency model and its change-log polls so far. */
  consistency?: string;
  polls?: number;
  alive: boolean;
  restarts: number;
  /** readBytes, hitBytes, missBytes, hitRatio, zeroBytes of the counters. */
  readBytes?: number;
  hitBytes?: number;
  missBytes?: number;
  hitRatio?: number | null;
  zeroBytes?: number;
  /** fetchedBytes: file bytes brought over the channel (READ payload + bulk transfers' raw bytes). */
  bytesFetched?: number;
  /** fromCacheBytes. */
  bytesFromCache?: number;
  /** flushBytes: WRITE payload of write-back flushes. */
  bytesFlushed?: number;
  /** movedBytes: READ + bulk (on the wire) + WRITE payload over the channel. */
  bytesMoved?: number;
  dirtyBytes?: number;
  flushBacklogBytes?: number;
  error?: string;
}

const TIMEOUTS = { start: 90_000, stop: 15 * 60_000, look: 5_000, change: 10 * 60_000 };

/**
 * The session service: assembles a session across the state, data and
 * compute hosts through their agents, keeps it (SQLite) with its key and
 * lifetime, and tears it down — write-back data flushed first — when it is
 * deleted or its lifetime runs out.
 *
 * Order: proxy servers on the state/data hosts (in parallel), then the
 * mounts on the compute host (in parallel). Any failure rolls back what was
 * started. Teardown runs the other way: mounts (flush, unmount) first, then
 * proxy servers; an agent that cannot be reached keeps the session in
 * `destroying`, and the service retries until it is done. Operations on one
 * session run one at a time.
 */
export class SessionService {
  readonly store: SessionStore;
  private readonly agents = new Map<string, AgentRef>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private timer?: NodeJS.Timeout;
  private retryAt = new Map<string, number>();
  private closed = false;

  private constructor(readonly cfg: SessiondConfig) {
    this.store = new SessionStore(cfg.stateDir);
    for (const a of cfg.agents) this.agents.set(a.name, a);
  }

  static async open(cfg: SessiondConfig): Promise<SessionService> {
    await fs.mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
    const s = new SessionService(cfg);
    // A creation the service did not live to finish is rolled back by the teardown loop.
    for (const r of s.store.list()) {
      if (r.state === 'creating') {
        log.warn({ session: r.id }, 'sessiond: a creation was interrupted by a restart; rolling it back');
        s.store.update(r.id, { state: 'failed', error: 'the session service restarted while the session was being created', key: null, endedAt: Date.now(), reason: 'creation interrupted' });
      }
    }
    s.timer = setInterval(() => void s.tick(), cfg.tickMs ?? 1000);
    s.timer.unref();
    void s.tick();
    return s;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.store.close();
  }

  get hosts(): AgentRef[] {
    return [...this.agents.values()];
  }

  private serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return run;
  }

  private target(host: string): PinnedTarget {
    const a = this.agents.get(host);
    if (!a) throw new ServiceError(500, 'UNKNOWN_HOST', `no agent for host ${host}`);
    return { url: a.url, fingerprint: a.fingerprint, cert: this.cfg.cert, key: this.cfg.key };
  }

  private async agent<T = any>(host: string, method: string, path: string, body: unknown, timeoutMs: number): Promise<T> {
    try {
      return await call<T>(this.target(host), method, path, body, { timeoutMs });
    } catch (e) {
      // The host's refusals of what was asked (bad path, not allowed, conflict) are the caller's; anything else is a failed host.
      if (e instanceof HttpError) throw new ServiceError(e.status === 400 || e.status === 403 || e.status === 409 ? e.status : 502, e.kind === 'http' ? (e.body?.code ?? 'AGENT_ERROR') : e.kind === 'connect' ? 'AGENT_UNREACHABLE' : e.kind === 'reset' ? 'AGENT_LOST' : 'AGENT_TIMEOUT', e.kind === 'http' ? `host ${host}: ${e.message}` : e.kind === 'connect' ? `host ${host}: agent unreachable: ${e.message}` : `host ${host}: agent did not answer: ${e.message}`);
      throw e;
    }
  }

  // ------------------------------------------------------------ create

  /** Check a request against the hosts and the user's rights, and complete it with defaults. */
  normalize(u: User, b: CreateRequest): any {
    if (b.user !== undefined && b.user !== u.name) throw new ServiceError(403, 'FORBIDDEN', `you are ${u.name}; sessions for ${b.user} are theirs to create`);
    const known = [...this.agents.keys()].join(', ');
    if (!this.agents.has(b.compute)) throw new ServiceError(400, 'UNKNOWN_HOST', `compute: no host named "${b.compute}" (known: ${known})`);
    const seenMnt = new Set<string>();
    const seenName = new Set<string>();
    const exports = b.exports.map((e, i) => {
      if (!this.agents.has(e.host)) throw new ServiceError(400, 'UNKNOWN_HOST', `exports[${i}].host: no host named "${e.host}" (known: ${known})`);
      if (e.host === b.compute) log.debug({ host: e.host }, 'sessiond: server and compute on the same host');
      const access = e.access ?? 'mount';
      let mnt: string | null = null;
      if (access === 'nfs') {
        if (e.mountpoint !== undefined) throw new ServiceError(400, 'BAD_MOUNTPOINT', `exports[${i}].mountpoint: an export with access "nfs" is not mounted (its NFS endpoint is returned)`);
      } else {
        if (e.mountpoint === undefined) throw new ServiceError(400, 'MOUNTPOINT_REQUIRED', `exports[${i}].mountpoint: required with access "mount"`);
        mnt = e.mountpoint.replace(/\/+$/, '') || '/';
        if (mnt === '/') throw new ServiceError(400, 'BAD_MOUNTPOINT', `exports[${i}].mountpoint: cannot mount on /`);
        if (seenMnt.has(mnt)) throw new ServiceError(400, 'DUPLICATE_MOUNTPOINT', `exports[${i}].mountpoint: ${mnt} is used twice`);
        for (const m of seenMnt) if (mnt.startsWith(m + '/') || m.startsWith(mnt + '/')) throw new ServiceError(400, 'NESTED_MOUNTPOINT', `exports[${i}].mountpoint: ${mnt} and ${m} are nested`);
        seenMnt.add(mnt);
      }
      const name = e.name ?? `/${e.role}${b.exports.filter((x) => x.role === e.role).length > 1 ? i : ''}`;
      if (seenName.has(`${e.host}\0${name}`)) throw new ServiceError(400, 'DUPLICATE_NAME', `exports[${i}].name: ${name} is used twice on host ${e.host}`);
      seenName.add(`${e.host}\0${name}`);
      return { role: e.role, host: e.host, path: e.path, name, access, mountpoint: mnt, cache: e.cache ?? null, readOnly: !!e.readOnly };
    });
    let account = b.account;
    if (account) {
      const a = account;
      if (!u.accounts.some((x) => x.uid === a.uid && x.gid === a.gid && (a.gids ?? []).every((g) => x.gids.includes(g) || g === x.gid))) {
        throw new ServiceError(403, 'ACCOUNT_NOT_ALLOWED', `account ${a.uid}:${a.gid} is not one of ${u.name}'s (${u.accounts.map((x) => `${x.uid}:${x.gid}`).join(', ') || 'none'})`);
      }
      account = { uid: a.uid, gid: a.gid, gids: a.gids ?? [] };
    } else {
      if (!u.accounts.length) throw new ServiceError(403, 'ACCOUNT_NOT_ALLOWED', `${u.name} has no local account to map to; ask the administrator`);
      account = u.accounts[0];
    }
    if (b.consistency === 'poll' || b.consistency === 'callback') {
      const i = exports.findIndex((e) => (e.cache ?? b.cache ?? { mode: 'write-back' }).mode === 'none');
      if (i >= 0) throw new ServiceError(400, 'NO_CACHE', `consistency: the ${b.consistency} model lives in the cache, and exports[${i}] has none`);
    }
    const max = this.cfg.maxLifetime ?? 7 * 86400;
    const lifetime = b.lifetime ?? this.cfg.defaultLifetime ?? 3600;
    if (lifetime > max) throw new ServiceError(400, 'LIFETIME_TOO_LONG', `lifetime: at most ${max} s`);
    return {
      user: u.name,
      compute: b.compute,
      channel: b.channel ?? 'tls',
      account,
      cache: b.cache ?? { mode: 'write-back' },
      attrTimeout: b.attrTimeout ?? 1,
      consistency: b.consistency ?? 'ttl',
      pollPeriod: b.pollPeriod ?? 1,
      lifetime,
      exports,
      ...(b.trustPublishers ? { trustPublishers: b.trustPublishers } : {}),
    };
  }

  async create(u: User, b: CreateRequest): Promise<any> {
    const spec = this.normalize(u, b);
    const id = `s-${randomBytes(8).toString('hex')}`;
    const k = newSessionKey(u.name, undefined, spec.account);
    const key: KeyDoc = { id: k.id, key: k.key.toString('base64'), user: k.user, account: spec.account };
    const now = Date.now();
    this.store.insert({ id, user: u.name, spec, key, lifetime: spec.lifetime, createdAt: now, expiresAt: now + spec.lifetime * 1000 });
    return this.serial(id, async () => {
      const comps: Component[] = [];
      const save = () => this.store.update(id, { components: comps });
      try {
        const servers = [...new Set<string>(spec.exports.map((e: any) => e.host))];
        const ps = new Map<string, ComponentView>();
        await Promise.all(
          servers.map(async (h) => {
            const body: ProxyServerSpec = {
              kind: 'proxy-server',
              key,
              channel: spec.channel,
              exports: spec.exports.filter((e: any) => e.host === h).map((e: any) => (e.path.startsWith('nfs://') ? { upstream: e.path, name: e.name, readOnly: !!e.readOnly } : { dir: e.path, name: e.name, readOnly: !!e.readOnly })),
            };
            // Recorded before the call: whatever the answer, a rollback asks this host to clean up.
            comps.push({ host: h, name: 'ps', kind: 'proxy-server' });
            save();
            const v = await this.agent<ComponentView>(h, 'PUT', `/v1/sessions/${id}/components/ps`, body, TIMEOUTS.start).catch((e) => {
              // Never connected: nothing was sent, so nothing there to roll back.
              if (e instanceof ServiceError && e.code === 'AGENT_UNREACHABLE') comps.splice(comps.findIndex((c) => c.host === h && c.name === 'ps'), 1);
              save();
              throw e;
            });
            ps.set(h, v);
            comps.find((c) => c.host === h && c.name === 'ps')!.port = v.port;
            save();
          }),
        );
        await Promise.all(
          spec.exports.map(async (e: any, i: number) => {
            const p = ps.get(e.host)!;
            const kind = e.access === 'nfs' ? 'proxy-client' : 'mount';
            const body: MountSpec = {
              kind,
              key,
              server: { host: p.address ?? '127.0.0.1', port: p.port! },
              channel: p.channel!,
              export: e.name,
              ...(kind === 'mount' ? { mountpoint: e.mountpoint } : {}),
              cache: e.cache ?? spec.cache,
              cacheId: `${e.host}:${e.path}`,
              attrTimeout: spec.attrTimeout,
              // The poll and callback models live in the cache: a mount without one stays ttl (refused at create).
              ...((e.cache ?? spec.cache).mode !== 'none' ? { consistency: spec.consistency ?? 'ttl', pollPeriod: spec.pollPeriod ?? 1 } : {}),
              ...(spec.trustPublishers ? { trustPublishers: spec.trustPublishers } : {}),
            };
            const comp: Component = { host: spec.compute, name: `m${i}`, kind, ...(e.mountpoint ? { mountpoint: e.mountpoint } : {}) };
            comps.push(comp);
            save();
            const v = await this.agent<ComponentView>(spec.compute, 'PUT', `/v1/sessions/${id}/components/m${i}`, body, TIMEOUTS.start).catch((e) => {
              if (e instanceof ServiceError && e.code === 'AGENT_UNREACHABLE') comps.splice(comps.indexOf(comp), 1);
              save();
              throw e;
            });
            comp.port = v.port;
            save();
          }),
        );
        this.store.update(id, { state: 'ready', components: comps });
        log.info({ session: id, user: u.name, mounts: spec.exports.map((e: any) => e.mountpoint) }, 'sessiond: session ready');
        return this.doc(this.store.get(id)!);
      } catch (e) {
        log.warn({ session: id, err: (e as Error).message }, 'sessiond: creation failed, rolling back');
        this.store.update(id, { state: 'failed', error: (e as Error).message, key: null, endedAt: Date.now(), reason: 'creation failed' });
        await this.cleanup(id, true).catch((err) => log.warn({ session: id, err: (err as Error).message }, 'sessiond: rollback unfinished; will retry'));
        const se = e instanceof ServiceError ? e : new ServiceError(502, 'CREATE_FAILED', (e as Error).message);
        const left = this.store.get(id)!.components.length;
        throw new ServiceError(se.status >= 500 ? 502 : se.status, se.code, `session not created: ${se.message}; ${left ? `rollback pending on ${[...new Set(this.store.get(id)!.components.map((c: Component) => c.host))].join(', ')} (retried)` : 'everything started was rolled back'}`);
      }
    });
  }

  // ------------------------------------------------------------ teardown

  /**
   * Stop the session on every host it has components on: the compute host
   * first (flush, unmount), then the servers. Hosts done are removed from the
   * session's components as they finish, so a retry resumes.
   */
  private async cleanup(id: string, discard: boolean): Promise<void> {
    const comps: Component[] = this.store.get(id)!.components;
    const hosts = [...new Set(comps.map((c) => c.host))];
    const mountHosts = hosts.filter((h) => comps.some((c) => c.host === h && c.kind !== 'proxy-server'));
    const stop = async (h: string) => {
      await this.agent(h, 'DELETE', `/v1/sessions/${id}${discard ? '?discard=true' : ''}`, undefined, TIMEOUTS.stop);
      this.store.update(id, { components: this.store.get(id)!.components.filter((c: Component) => c.host !== h) });
    };
    // Mounts first, and only once they are flushed and gone do the servers stop (all of them, each on its own).
    for (const h of mountHosts) await stop(h);
    const results = await Promise.allSettled(hosts.filter((h) => !mountHosts.includes(h)).map(stop));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private async teardown(id: string, reason: string, discard = false): Promise<void> {
    const r = this.store.get(id)!;
    if (r.state === 'destroyed' || r.state === 'failed') return;
    if (r.state !== 'destroying' || discard) this.store.update(id, { state: 'destroying', reason });
    try {
      await this.cleanup(id, discard);
    } catch (e) {
      this.store.update(id, { error: (e as Error).message });
      this.retryAt.set(id, Date.now() + 5000);
      throw e;
    }
    this.store.update(id, { state: 'destroyed', key: null, endedAt: Date.now(), error: null });
    this.retryAt.delete(id);
    log.info({ session: id, reason }, 'sessiond: session destroyed');
  }

  /**
   * Tear a session down (idempotent: an ended session is returned as it is). A flush the server refuses stops
   * the teardown with nothing lost (409, the session stays destroying and is retried) unless `discard`.
   */
  async destroy(u: User, id: string, o: { discard?: boolean } = {}): Promise<any> {
    this.visible(u, id);
    return this.serial(id, async () => {
      // discard: the owner's explicit choice to drop write-back data the server refuses (nothing else drops it).
      await this.teardown(id, `deleted by ${u.name}${o.discard ? ' (undeliverable data discarded)' : ''}`, !!o.discard);
      return this.doc(this.store.get(id)!);
    });
  }

  /** Every second: end sessions whose lifetime ran out, retry unfinished teardowns and rollbacks. */
  private async tick(): Promise<void> {
    if (this.closed) return;
    const now = Date.now();
    for (const r of this.store.actionable(now)) {
      if (this.locks.has(r.id)) continue;
      if ((this.retryAt.get(r.id) ?? 0) > now) continue;
      if (r.state === 'ready' && r.expiresAt <= now) {
        log.info({ session: r.id, user: r.user }, 'sessiond: lifetime over, tearing down');
        void this.serial(r.id, () => this.teardown(r.id, 'lifetime expired')).catch((e) => log.warn({ session: r.id, err: (e as Error).message }, 'sessiond: teardown of an expired session unfinished; will retry'));
      } else if (r.state === 'destroying') {
        void this.serial(r.id, () => this.teardown(r.id, r.reason ?? 'destroy')).catch(() => undefined);
      } else if (r.state === 'failed' && r.components.length) {
        void this.serial(r.id, () => this.cleanup(r.id, true)).catch(() => this.retryAt.set(r.id, Date.now() + 5000));
      }
    }
  }

  // ------------------------------------------------------------ read and change

  private visible(u: User, id: string): SessionRow {
    const r = this.store.get(id);
    // Someone else's session does not exist, as far as the caller can tell.
    if (!r || (r.user !== u.name && !u.admin)) throw new ServiceError(404, 'NOT_FOUND', `no session ${id}`);
    return r;
  }

  list(u: User, o: { all?: boolean; ended?: boolean } = {}): any[] {
    return this.store.list({ user: o.all && u.admin ? undefined : u.name, ended: o.ended }).map((r) => this.doc(r));
  }

  async get(u: User, id: string, stats = true): Promise<any> {
    const r = this.visible(u, id);
    const d = this.doc(r);
    if (stats && (r.state === 'ready' || r.state === 'destroying')) Object.assign(d, await this.stats(r));
    return d;
  }

  /** Live counters of the session's mounts, asked of the compute host's agent. */
  async stats(r: SessionRow): Promise<{ stats: { mounts: MountStats[]; totals: Record<string, number | null> } | null; statsError?: string }> {
    let comps: ComponentView[];
    try {
      comps = (await this.agent<{ components: ComponentView[] }>(r.spec.compute, 'GET', `/v1/sessions/${r.id}?stats=true`, undefined, TIMEOUTS.look)).components;
    } catch (e) {
      return { stats: null, statsError: (e as Error).message };
    }
    const mounts: MountStats[] = comps
      .filter((c) => c.kind !== 'proxy-server')
      .map((c) => {
        const s = c.cache;
        const i = Number(c.name.slice(1));
        const exp = r.spec.exports[i];
        const mode = (exp?.cache ?? r.spec.cache).mode;
        const where = c.mountpoint ? { mountpoint: c.mountpoint } : { endpoint: exp ? this.endpointUrl(exp.name, c.port!) : `127.0.0.1:${c.port}` };
        if (!s) return { ...where, mode, alive: c.alive, restarts: c.restarts, ...(c.cacheError ? { error: c.cacheError } : {}) };
        const k = sumCounters([s]);
        return {
          ...where,
          mode: s.mode,
          consistency: s.consistency ?? 'ttl',
          polls: s.polls ?? 0,
          alive: c.alive,
          restarts: c.restarts,
          readBytes: k.readBytes,
          hitBytes: k.hitBytes,
          missBytes: k.missBytes,
          hitRatio: k.hitRatio,
          zeroBytes: k.zeroBytes,
          bytesFetched: k.fetchedBytes,
          bytesFromCache: k.fromCacheBytes,
          bytesFlushed: k.flushBytes,
          bytesMoved: k.movedBytes,
          dirtyBytes: s.dirtyBytes,
          flushBacklogBytes: s.flushBacklog?.bytes ?? 0,
        };
      });
    const sum = (k: keyof MountStats) => mounts.reduce((n, m) => n + ((m[k] as number | undefined) ?? 0), 0);
    const t = sumCounters(comps.filter((c) => c.kind !== 'proxy-server' && c.cache).map((c) => c.cache!));
    return {
      stats: {
        mounts,
        totals: {
          readBytes: t.readBytes,
          hitBytes: t.hitBytes,
          missBytes: t.missBytes,
          hitRatio: t.hitRatio,
          zeroBytes: t.zeroBytes,
          bytesFetched: t.fetchedBytes,
          bytesMoved: t.movedBytes,
          dirtyBytes: sum('dirtyBytes'),
        },
      },
    };
  }

  async renew(u: User, id: string, lifetime?: number): Promise<any> {
    this.visible(u, id);
    return this.serial(id, async () => {
      const r = this.store.get(id)!;
      if (r.state !== 'ready') throw new ServiceError(409, 'NOT_READY', `session ${id} is ${r.state}; only a ready session can be renewed`);
      if (r.expiresAt <= Date.now()) throw new ServiceError(409, 'EXPIRED', `session ${id}'s lifetime is over; it is being torn down`);
      const max = this.cfg.maxLifetime ?? 7 * 86400;
      const l = lifetime ?? r.lifetime;
      if (l > max) throw new ServiceError(400, 'LIFETIME_TOO_LONG', `lifetime: at most ${max} s`);
      this.store.update(id, { expiresAt: Date.now() + l * 1000, lifetime: l });
      return this.doc(this.store.get(id)!);
    });
  }

  /** Change live policies: the cache's write mode and attribute timeout, of one mount or all. */
  async patch(u: User, id: string, p: PatchRequest): Promise<any> {
    this.visible(u, id);
    return this.serial(id, async () => {
      const r = this.store.get(id)!;
      if (r.state !== 'ready') throw new ServiceError(409, 'NOT_READY', `session ${id} is ${r.state}; only a ready session can change`);
      const spec = structuredClone(r.spec);
      const targets = spec.exports.map((e: any, i: number) => ({ e, i })).filter(({ e }: any) => p.mountpoint === undefined || e.mountpoint === p.mountpoint.replace(/\/+$/, ''));
      if (!targets.length) throw new ServiceError(400, 'UNKNOWN_MOUNTPOINT', `mountpoint: session ${id} has no mount at ${p.mountpoint} (it has ${spec.exports.map((e: any) => e.mountpoint).join(', ')})`);
      for (const { e } of targets) {
        if (p.cache && (e.cache ?? spec.cache).mode === 'none') throw new ServiceError(400, 'NO_CACHE', `cache.mode: the mount at ${e.mountpoint} has no cache; a cache cannot be added to a running session`);
      }
      for (const { e, i } of targets) {
        const body = {
          ...(p.cache ? { cacheMode: p.cache.mode } : {}),
          ...(p.attrTimeout !== undefined ? { attrTimeout: p.attrTimeout } : {}),
          ...(p.consistency !== undefined ? { consistency: p.consistency } : {}),
          ...(p.pollPeriod !== undefined ? { pollPeriod: p.pollPeriod } : {}),
        };
        await this.agent(spec.compute, 'PATCH', `/v1/sessions/${id}/components/m${i}`, body, TIMEOUTS.change);
        if (p.cache) e.cache = { ...(e.cache ?? spec.cache), mode: p.cache.mode };
        this.store.update(id, { spec });
      }
      if (p.attrTimeout !== undefined && p.mountpoint === undefined) spec.attrTimeout = p.attrTimeout;
      if (p.consistency !== undefined && p.mountpoint === undefined) spec.consistency = p.consistency;
      if (p.pollPeriod !== undefined && p.mountpoint === undefined) spec.pollPeriod = p.pollPeriod;
      this.store.update(id, { spec });
      return this.get(u, id, true);
    });
  }

  /**
   * Middleware orders (README "Consistency"): the session's caches drop what
   * they hold of a path (or everything) and ask the server again; or
   * deliver their write-back data now.
   */
  async invalidate(u: User, id: string, o: { mountpoint?: string; path?: string }): Promise<{ mounts: Array<{ mountpoint: string | null; export: string; invalidated: number }> }> {
    this.visible(u, id);
    return this.serial(id, async () => {
      const r = this.store.get(id)!;
      if (r.state !== 'ready') throw new ServiceError(409, 'NOT_READY', `session ${id} is ${r.state}`);
      const spec = r.spec;
      const targets = spec.exports.map((e: any, i: number) => ({ e, i })).filter(({ e }: any) => o.mountpoint === undefined || e.mountpoint === o.mountpoint.replace(/\/+$/, ''));
      if (!targets.length) throw new ServiceError(400, 'UNKNOWN_MOUNTPOINT', `mountpoint: session ${id} has no mount at ${o.mountpoint}`);
      const mounts = [];
      for (const { e, i } of targets) {
        const res = await this.agent<{ invalidated: number }>(spec.compute, 'POST', `/v1/sessions/${id}/components/m${i}/invalidate`, o.path === undefined ? {} : { path: o.path }, TIMEOUTS.change);
        mounts.push({ mountpoint: e.mountpoint ?? null, export: e.name, invalidated: res.invalidated });
      }
      return { mounts };
    });
  }

  async flush(u: User, id: string): Promise<{ flushed: unknown }> {
    this.visible(u, id);
    return this.serial(id, async () => {
      const r = this.store.get(id)!;
      if (r.state !== 'ready') throw new ServiceError(409, 'NOT_READY', `session ${id} is ${r.state}`);
      return this.agent<{ flushed: unknown }>(r.spec.compute, 'POST', `/v1/sessions/${id}/flush`, {}, TIMEOUTS.change);
    });
  }

  /** The session as the API shows it (never its key). */
  doc(r: SessionRow): any {
    const now = Date.now();
    return {
      id: r.id,
      user: r.user,
      state: r.state,
      createdAt: new Date(r.createdAt).toISOString(),
      expiresAt: new Date(r.expiresAt).toISOString(),
      timeLeft: r.state === 'ready' ? Math.max(0, Math.round((r.expiresAt - now) / 1000)) : 0,
      lifetime: r.lifetime,
      compute: r.spec.compute,
      channel: r.spec.channel,
      account: r.spec.account,
      cache: r.spec.cache,
      attrTimeout: r.spec.attrTimeout,
      consistency: r.spec.consistency ?? 'ttl',
      pollPeriod: r.spec.pollPeriod ?? 1,
      exports: r.spec.exports,
      mounts: r.spec.exports.filter((e: any) => e.mountpoint).map((e: any) => e.mountpoint),
      endpoints: r.spec.exports.flatMap((e: any, i: number) => {
        const c = r.components.find((x: Component) => x.name === `m${i}` && x.kind === 'proxy-client');
        return c?.port ? [{ export: e.name, host: r.spec.compute, address: '127.0.0.1', port: c.port, url: this.endpointUrl(e.name, c.port) }] : [];
      }),
      hosts: [...new Set<string>([...r.spec.exports.map((e: any) => e.host), r.spec.compute])],
      pending: (r.state === 'destroying' || r.state === 'failed') && r.components.length ? [...new Set(r.components.map((c: Component) => c.host))] : [],
      ...(r.endedAt ? { endedAt: new Date(r.endedAt).toISOString() } : {}),
      ...(r.reason ? { reason: r.reason } : {}),
      ...(r.error ? { error: r.error } : {}),
    };
  }

  /** How libnfs (and QEMU's nfs driver) names an export of a proxy client: NFS and MOUNT on one port. */
  endpointUrl(name: string, port: number): string {
    return `nfs://127.0.0.1${name.endsWith('/') ? name : name + '/'}?version=3&nfsport=${port}&mountport=${port}`;
  }

  /** Each agent's health, for the dashboard. */
  async health(): Promise<Array<{ name: string; url: string; up: boolean; sessions?: number; error?: string }>> {
    return Promise.all(
      this.hosts.map(async (a) => {
        try {
          const h = await this.agent(a.name, 'GET', '/v1/health', undefined, 3000);
          return { name: a.name, url: a.url, up: true, sessions: h.sessions };
        } catch (e) {
          return { name: a.name, url: a.url, up: false, error: (e as Error).message };
        }
      }),
    );
  }
}
