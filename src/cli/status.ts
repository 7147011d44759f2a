import fs from 'node:fs/promises';
import { Command } from 'commander';
import { mountState } from '../frontends/fuse/mountpoint.js';
import { controlRequest, controlSocketOf } from '../wrappers/cache/control-socket.js';
import { listDaemons, runtimeDir, type FoundDaemon } from '../util/runtime-state.js';
import type { LogLine } from '../util/log.js';

/** A GVFS FUSE mount as /proc/self/mountinfo shows it (file system type fuse.gvfs). */
export interface GvfsMount {
  mountpoint: string;
  source: string;
  /** The mount daemon serving it (by its state file), if one is known. */
  pid: number | null;
  /**
   * running: its daemon is alive; dead: its daemon is gone and the mount is
   * stale (gvfs umount it); unresponsive: a mount of no state file here
   * whose stat did not answer within 2 s (e.g. its server is down).
   */
  state: 'running' | 'dead' | 'unresponsive';
  /** Whether a state file in this runtime directory describes its daemon (else it was probed). */
  registered: boolean;
}

interface CacheUse {
  capacity?: number;
  used?: number;
  dirtyBytes?: number;
  flushBacklogBytes?: number;
  mode?: string;
  error?: string;
}

const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The fuse.gvfs mounts of this host's mount namespace. */
export async function gvfsMounts(): Promise<Array<{ mountpoint: string; source: string }>> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const out = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (sep < 0 || f[sep + 1] !== 'fuse.gvfs') continue;
    out.push({ mountpoint: unescape(f[4]), source: unescape(f[sep + 2]) });
  }
  return out;
}

/** A live session's cache use, asked through its control socket (a dead one has none to ask). */
async function cacheUse(d: FoundDaemon): Promise<CacheUse | undefined> {
  if (!d.sessionDir || !d.alive) return undefined;
  const c = await controlSocketOf(d.sessionDir);
  if (!c) return { error: 'no control socket' };
  const r = await controlRequest(c.socket, { op: 'stats' }, 5000).catch((e: Error) => ({ ok: false, error: e.message }));
  if (!r.ok) return { error: String(r.error) };
  const s = r.stats;
  return { capacity: s.capacity, used: s.used, dirtyBytes: s.dirtyBytes, flushBacklogBytes: s.flushBacklog?.bytes, mode: s.mode };
}

export interface Status {
  runtimeDir: string;
  daemons: Array<Omit<FoundDaemon, 'alive'> & { state: 'running' | 'dead'; cache?: CacheUse }>;
  mounts: GvfsMount[];
  servers: string[];
  recentErrors: Array<LogLine & { role: string; pid: number }>;
}

export async function collectStatus(): Promise<Status> {
  const found = await listDaemons();
  const daemons = await Promise.all(found.map(async ({ alive, ...d }) => ({ ...d, state: alive ? ('running' as const) : ('dead' as const), cache: await cacheUse({ ...d, alive }) })));
  const mounts: GvfsMount[] = await Promise.all(
    (await gvfsMounts()).map(async (m) => {
      const d = daemons.find((x) => x.role === 'mount' && x.mountpoint === m.mountpoint && x.state === 'running') ?? daemons.find((x) => x.role === 'mount' && x.mountpoint === m.mountpoint);
      if (d) return { ...m, pid: d.pid, state: d.state, registered: true };
      // Not one of ours (another runtime directory or user): ask the mount itself, in a child process with a bound.
      const probe = await mountState(m.mountpoint, 2000);
      return { ...m, pid: null, state: probe.state === 'live' ? 'running' : probe.state === 'stale' ? 'dead' : 'unresponsive', registered: false };
    }),
  );
  const servers = [...new Set(daemons.filter((d) => d.server).map((d) => d.server!))].sort();
  const recentErrors = daemons.flatMap((d) => d.recentErrors.map((e) => ({ ...e, role: d.role, pid: d.pid }))).sort((a, b) => a.time.localeCompare(b.time)).slice(-20);
  return { runtimeDir: await runtimeDir(), daemons, mounts, servers, recentErrors };
}

const mib = (n?: number) => `${((n ?? 0) / 2 ** 20).toFixed(1)} MiB`;

export function statusText(s: Status): string {
  const l: string[] = [`gvfs status (state files in ${s.runtimeDir}/daemons)`];
  if (!s.daemons.length && !s.mounts.length) l.push('no GVFS daemons or mounts on this host');
  if (s.daemons.length) l.push('daemons:');
  for (const d of s.daemons) {
    const where = [d.listen && `on ${d.listen}`, d.mountpoint && `at ${d.mountpoint}`, d.server && `-> ${d.server}`, d.session && `session ${d.session}${d.user ? ` (${d.user})` : ''}`].filter(Boolean).join(' ');
    l.push(`  ${d.role.padEnd(12)} pid ${String(d.pid).padEnd(7)} ${d.state === 'running' ? 'running' : 'DEAD'}  ${where}${d.state === 'running' ? `, since ${d.startedAt}` : ` (killed or crashed; its state file stays until gvfs status --clean)`}`);
    if (d.cacheDir) {
      const c = d.cache;
      l.push(`  ${''.padEnd(12)} cache ${d.cacheDir}${c && !c.error ? `: ${c.mode ?? ''} used ${mib(c.used)} of ${mib(c.capacity)}, dirty ${mib(c.dirtyBytes)}, flush backlog ${mib(c.flushBacklogBytes)}` : c?.error ? `: (${c.error})` : ''}`);
    }
  }
  if (s.mounts.length) l.push('mounts:');
  for (const m of s.mounts) {
    const by = m.registered ? `pid ${m.pid}` : 'a gvfs mount not registered here (another runtime directory)';
    const what = m.state === 'running' ? `served by ${by}` : m.state === 'dead' ? `DEAD: its gvfs mount process is gone (gvfs umount ${m.mountpoint})` : `UNRESPONSIVE: served by ${by}, but a stat took over 2 s`;
    l.push(`  ${m.mountpoint}  ${m.source}  ${what}`);
  }
  if (s.servers.length) l.push(`servers: ${s.servers.join(', ')}`);
  if (s.recentErrors.length) l.push('recent warnings and errors:');
  for (const e of s.recentErrors) l.push(`  ${e.time} ${e.role} ${e.pid} ${e.level}${e.layer ? ` [${e.layer}]` : ''}: ${e.msg}`);
  return l.join('\n');
}

export function statusCommand(): Command {
  return new Command('status')
    .description("This host's GVFS daemons (proxy servers and clients, mounts, agent, session service), mounts, servers, cache use and dirty bytes, and their recent warnings and errors; a killed daemon shows as DEAD")
    .option('--json', 'print as JSON')
    .option('--clean', 'remove the state files of dead daemons (after showing them)')
    .action(async (o) => {
      const s = await collectStatus();
      if (o.json) console.log(JSON.stringify(s));
      else console.log(statusText(s));
      if (o.clean) for (const d of s.daemons.filter((x) => x.state === 'dead')) await fs.rm(d.file, { force: true });
    });
}
