import fs from 'node:fs/promises';
import { Command, InvalidArgumentError } from 'commander';
import { call, HttpError, type PinnedTarget } from '../services/api/https.js';
import { bytes, duration } from '../services/dashboard/dashboard.js';
import { parseAccount } from '../services/sessiond/users.js';
import { parseSize } from './util.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`expected seconds (>= 0), got "${v}"`);
  return n;
}

/** HOST:PATH=MOUNTPOINT (PATH a directory on HOST or nfs://...). */
function parseExport(role: 'state' | 'data', v: string): Record<string, unknown> {
  const c = v.indexOf(':');
  const eq = v.lastIndexOf('=');
  if (c <= 0 || eq < c || !v.slice(eq + 1).startsWith('/')) throw new InvalidArgumentError(`--${role}: expected HOST:PATH=MOUNTPOINT, got "${v}"`);
  return { role, host: v.slice(0, c), path: v.slice(c + 1, eq), mountpoint: v.slice(eq + 1) };
}

/** HOST:PATH, served as an NFS endpoint. */
function parseNfsExport(role: 'state' | 'data', v: string): Record<string, unknown> {
  const c = v.indexOf(':');
  if (c <= 0) throw new InvalidArgumentError(`--${role}-nfs: expected HOST:PATH, got "${v}"`);
  return { role, host: v.slice(0, c), path: v.slice(c + 1), access: 'nfs' };
}

/** Where the session service is and who we are: flags, else GVFS_SESSIOND, GVFS_SESSIOND_FINGERPRINT, GVFS_TOKEN(_FILE). */
async function target(o: Record<string, any>): Promise<PinnedTarget> {
  const url = o.service ?? process.env.GVFS_SESSIOND;
  const fingerprint = o.fingerprint ?? process.env.GVFS_SESSIOND_FINGERPRINT;
  if (!url) throw new Error('no session service: give --service URL or set GVFS_SESSIOND');
  if (!fingerprint) throw new Error("no certificate fingerprint for the session service: give --fingerprint or set GVFS_SESSIOND_FINGERPRINT");
  const tokenFile = o.tokenFile ?? process.env.GVFS_TOKEN_FILE;
  let token = process.env.GVFS_TOKEN;
  if (tokenFile) {
    const st = await fs.stat(tokenFile);
    if (st.mode & 0o077) throw new Error(`${tokenFile}: token file is accessible by others; chmod 600 it`);
    token = (await fs.readFile(tokenFile, 'utf8')).trim();
  }
  if (!token) throw new Error('no token: give --token-file FILE or set GVFS_TOKEN / GVFS_TOKEN_FILE');
  return { url, fingerprint, token };
}

function withConnection(c: Command): Command {
  return c
    .option('--service <url>', 'the session service (https://HOST:PORT; env GVFS_SESSIOND)')
    .option('--fingerprint <sha256>', "its certificate's fingerprint (env GVFS_SESSIOND_FINGERPRINT)")
    .option('--token-file <file>', 'your token, owner-only (env GVFS_TOKEN_FILE, or GVFS_TOKEN)')
    .option('--json', 'print JSON');
}

async function api(o: Record<string, any>, method: string, path: string, body?: unknown): Promise<any> {
  try {
    return await call(await target(o), method, path, body, { timeoutMs: 20 * 60_000 });
  } catch (e) {
    if (e instanceof HttpError && e.body?.details) throw new Error(`${e.message}`);
    throw e;
  }
}

function describe(s: any): string {
  const lines = [`session ${s.id} (${s.user}): ${s.state}${s.state === 'ready' ? `, ${duration(s.timeLeft)} left (expires ${s.expiresAt})` : ''}`];
  for (const e of s.exports ?? []) {
    const where = e.mountpoint ? `${s.compute}:${e.mountpoint}` : (s.endpoints ?? []).find((x: any) => x.export === e.name)?.url ?? `${s.compute}: NFS endpoint ${e.name}`;
    lines.push(`  ${where}  <-  ${e.host}:${e.path} (${e.role}, ${(e.cache ?? s.cache).mode}${(e.cache ?? s.cache).shared ? ', shared cache' : ''})`);
  }
  const model = s.consistency === 'poll' ? `poll every ${s.pollPeriod} s` : s.consistency === 'callback' ? 'callback (delegations)' : `ttl (attribute timeout ${s.attrTimeout} s)`;
  lines.push(`  channel ${s.channel}, account ${s.account.uid}:${s.account.gid}, consistency ${model}`);
  const t = s.stats?.totals;
  if (t) lines.push(`  cache hits ${t.hitRatio === null ? '–' : `${(100 * t.hitRatio).toFixed(1)}%`} of bytes read, moved ${bytes(t.bytesMoved)}, dirty ${bytes(t.dirtyBytes)}`);
  if (s.statsError) lines.push(`  statistics unavailable: ${s.statsError}`);
  if (s.error) lines.push(`  error: ${s.error}`);
  if (s.pending?.length) lines.push(`  teardown pending on ${s.pending.join(', ')}`);
  return lines.join('\n');
}

export function sessionCommand(): Command {
  const c = new Command('session').description('Create, list, show, renew, change and destroy GVFS sessions through the session service');

  withConnection(c.command('create').description('Create a session; prints it once its mounts are usable'))
    .requiredOption('--compute <host>', 'the compute host (where the mounts are made)')
    .option('--state <host:path=mountpoint>', 'mount a state server directory (repeatable)', (v, p: any[] = []) => [...p, parseExport('state', v)])
    .option('--data <host:path=mountpoint>', 'mount a data server directory (repeatable)', (v, p: any[] = []) => [...p, parseExport('data', v)])
    .option('--state-nfs <host:path>', 'serve a state server directory as an NFSv3 endpoint on the compute host (for NFS clients; repeatable)', (v, p: any[] = []) => [...p, parseNfsExport('state', v)])
    .option('--data-nfs <host:path>', 'serve a data server directory as an NFSv3 endpoint on the compute host (repeatable)', (v, p: any[] = []) => [...p, parseNfsExport('data', v)])
    .option('--account <uid:gid[:groups]>', 'local account on the servers (one you may use; default your first)')
    .option('--cache <mode>', 'write-back, write-through or none (default write-back)')
    .option('--cache-size <size>', 'disk the cache may use, e.g. 1G', parseSize)
    .option('--shared-cache', "use the compute host's shared (golden) cache directory")
    .option('--block-size <size>', 'cache block size (power of two, 4K..4M)', parseSize)
    .option('--dirty-max-age <seconds>', 'longest a write-back write stays unflushed', seconds)
    .option('--attr-timeout <seconds>', 'how long a change made elsewhere may take to show', seconds)
    .option('--consistency <model>', 'ttl (attributes trusted for --attr-timeout), poll (trusted until the change log lists them; needs a cache) or callback (trusted while a delegation is held; needs a cache)')
    .option('--poll-period <seconds>', 'poll model: seconds between two asks of the change log', seconds)
    .option('--channel <kind>', 'tls or ssh (default tls)')
    .option('--lifetime <seconds>', 'seconds until the session is torn down', (v) => Math.round(seconds(v)))
    .option('--trust-publisher <file>', "a publisher's .pub file (gvfs image keygen): the compute host reads store images by chunk hash, verified against it (repeatable)", (v: string, prev: string[] = []) => [...prev, v])
    .option('--spec <file>', 'the request as JSON (flags given override it)')
    .action(async (o) => {
      const body: Record<string, any> = o.spec ? JSON.parse(await fs.readFile(o.spec, 'utf8')) : {};
      if (o.trustPublisher) {
        const lines: string[] = [];
        for (const f of o.trustPublisher as string[]) for (const l of (await fs.readFile(f, 'utf8')).split('\n')) if (l.trim() && !l.trim().startsWith('#')) lines.push(l.trim().split(/\s+/).slice(0, 2).join(' '));
        body.trustPublishers = lines;
      }
      body.compute = o.compute;
      const exports = [...(o.state ?? []), ...(o.data ?? []), ...(o.stateNfs ?? []), ...(o.dataNfs ?? [])];
      if (exports.length) body.exports = exports;
      if (o.account) {
        const a = parseAccount(o.account);
        body.account = a.gids.length ? a : { uid: a.uid, gid: a.gid };
      }
      if (o.cache || o.cacheSize || o.sharedCache || o.blockSize || o.dirtyMaxAge !== undefined) {
        body.cache = { ...(body.cache ?? {}), mode: o.cache ?? body.cache?.mode ?? 'write-back' };
        if (o.cacheSize) body.cache.size = o.cacheSize;
        if (o.sharedCache) body.cache.shared = true;
        if (o.blockSize) body.cache.blockSize = o.blockSize;
        if (o.dirtyMaxAge !== undefined) body.cache.dirtyMaxAge = o.dirtyMaxAge;
      }
      if (o.attrTimeout !== undefined) body.attrTimeout = o.attrTimeout;
      if (o.consistency) body.consistency = o.consistency;
      if (o.pollPeriod !== undefined) body.pollPeriod = o.pollPeriod;
      if (o.channel) body.channel = o.channel;
      if (o.lifetime !== undefined) body.lifetime = o.lifetime;
      if (!body.exports?.length) throw new Error('nothing to mount: give --state HOST:PATH=MOUNTPOINT and/or --data HOST:PATH=MOUNTPOINT (or --state-nfs/--data-nfs HOST:PATH)');
      const s = await api(o, 'POST', '/sessions', body);
      console.log(o.json ? JSON.stringify(s) : describe(s));
    });

  withConnection(c.command('list').description('Your sessions'))
    .option('--all', "everyone's (administrators)")
    .option('--ended', 'include destroyed and failed sessions')
    .action(async (o) => {
      const q = new URLSearchParams();
      if (o.all) q.set('all', 'true');
      if (o.ended) q.set('ended', 'true');
      const r = await api(o, 'GET', `/sessions${q.size ? `?${q}` : ''}`);
      if (o.json) return console.log(JSON.stringify(r));
      if (!r.sessions.length) return console.log('no sessions');
      for (const s of r.sessions) console.log(`${s.id}  ${s.state.padEnd(10)} ${s.state === 'ready' ? duration(s.timeLeft).padEnd(14) : ''.padEnd(14)} ${[...s.mounts.map((m: string) => `${s.compute}:${m}`), ...(s.endpoints ?? []).map((e: any) => e.url)].join(' ')}`);
    });

  withConnection(c.command('show').description('A session with its live statistics').argument('<id>')).action(async (id: string, o) => {
    const s = await api(o, 'GET', `/sessions/${encodeURIComponent(id)}`);
    console.log(o.json ? JSON.stringify(s) : describe(s));
  });

  withConnection(c.command('renew').description('Extend a session\'s lifetime from now').argument('<id>'))
    .option('--lifetime <seconds>', 'new lifetime (default: the current one)', (v) => Math.round(seconds(v)))
    .action(async (id: string, o) => {
      const s = await api(o, 'POST', `/sessions/${encodeURIComponent(id)}/renew`, o.lifetime !== undefined ? { lifetime: o.lifetime } : {});
      console.log(o.json ? JSON.stringify(s) : describe(s));
    });

  withConnection(c.command('set').description('Change policies of a running session (cache write mode, attribute timeout, consistency model)').argument('<id>'))
    .option('--cache <mode>', 'write-back or write-through')
    .option('--attr-timeout <seconds>', "the cache's attribute timeout", seconds)
    .option('--consistency <model>', 'ttl, poll or callback')
    .option('--poll-period <seconds>', 'poll model: seconds between two asks of the change log', seconds)
    .option('--mountpoint <path>', 'only this mount')
    .action(async (id: string, o) => {
      const body: Record<string, unknown> = {};
      if (o.cache) body.cache = { mode: o.cache };
      if (o.attrTimeout !== undefined) body.attrTimeout = o.attrTimeout;
      if (o.consistency) body.consistency = o.consistency;
      if (o.pollPeriod !== undefined) body.pollPeriod = o.pollPeriod;
      if (o.mountpoint) body.mountpoint = o.mountpoint;
      const s = await api(o, 'PATCH', `/sessions/${encodeURIComponent(id)}`, body);
      console.log(o.json ? JSON.stringify(s) : describe(s));
    });

  withConnection(c.command('destroy').description('Flush write-back data, unmount, stop the proxies, forget the key (again: no-op)').argument('<id>'))
    .option('--discard', 'DROP write-back data the server refuses (otherwise the session waits, destroying, with nothing lost)')
    .action(async (id: string, o) => {
    const s = await api(o, 'DELETE', `/sessions/${encodeURIComponent(id)}${o.discard ? '?discard=true' : ''}`);
    console.log(o.json ? JSON.stringify(s) : describe(s));
  });
  return c;
}
