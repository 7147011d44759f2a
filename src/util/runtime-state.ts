import { unlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { onWarnOrError, type LogLine } from './log.js';
import { privateDir } from './private-dir.js';

/**
 * How the daemons of a host find each other for `gvfs status`: each running
 * daemon (serve, proxy-server, proxy-client, mount, agent, sessiond) keeps a
 * small JSON state file, `<runtime dir>/daemons/<role>-<pid>.json`, in the
 * user's private runtime directory (util/private-dir.ts: /run/gvfs for
 * root, else $XDG_RUNTIME_DIR/gvfs; GVFS_RUNTIME_DIR overrides). The file is
 * written once ready, rewritten when a warning or error is logged (it keeps
 * the last RECENT_ERRORS of them), and removed when the process exits. A
 * process killed without its exit handler (SIGKILL, a crash in native code)
 * leaves its file behind: readers tell it is dead by its pid and the pid's
 * start time (so a reused pid is not mistaken for it).
 */
export interface DaemonState {
  role: string;
  pid: number;
  /** Start time of the process in clock ticks since boot (/proc/PID/stat field 22): a pid reused later has another. */
  startTicks: string | null;
  startedAt: string;
  /** Addresses it listens on (host:port), or its mountpoint for a mount. */
  listen?: string;
  mountpoint?: string;
  /** The server it links to (proxy-client, mount), as host:port or nfs://. */
  server?: string;
  session?: string;
  user?: string;
  cacheDir?: string;
  /** The session's directory in the cache (control socket, journal): where `gvfs status` asks for cache use and dirty bytes. */
  sessionDir?: string;
  /** Anything else worth showing (exports, sessions managed, fingerprint ...). */
  info?: Record<string, unknown>;
  recentErrors: LogLine[];
}

export const RECENT_ERRORS = 20;

export async function runtimeDir(): Promise<string> {
  return privateDir();
}

export async function daemonsDir(): Promise<string> {
  const d = path.join(await runtimeDir(), 'daemons');
  await fs.mkdir(d, { recursive: true, mode: 0o700 });
  return d;
}

/** Clock ticks since boot at which `pid` started, or null (no /proc, or gone). */
export async function startTicksOf(pid: number): Promise<string | null> {
  const s = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!s) return null;
  // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return rest[19] ?? null;
}

/** Whether the process a state file describes is still running (same pid, same start time). */
export async function isAlive(st: Pick<DaemonState, 'pid' | 'startTicks'>): Promise<boolean> {
  try {
    process.kill(st.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (st.startTicks === null) return true;
  return (await startTicksOf(st.pid)) === st.startTicks;
}

export interface DaemonRegistration {
  file: string;
  update(patch: Partial<DaemonState>): Promise<void>;
  close(): Promise<void>;
}

/**
 * Announce this process as a running daemon. Failing to write the state
 * file never stops a daemon (it only makes it invisible to gvfs status);
 * the reason goes to stderr once.
 */
export async function registerDaemon(s: Omit<DaemonState, 'pid' | 'startTicks' | 'startedAt' | 'recentErrors'>): Promise<DaemonRegistration> {
  let file = '';
  const state: DaemonState = { ...s, pid: process.pid, startTicks: await startTicksOf(process.pid), startedAt: new Date().toISOString(), recentErrors: [] };
  let writing: Promise<void> = Promise.resolve();
  let closed = false;
  const write = () => {
    if (closed || !file) return writing;
    // Writes in order, each whole (a temporary file renamed over the old one): a reader never sees half a file.
    writing = writing.then(async () => {
      const tmp = `${file}.tmp`;
      await fs.writeFile(tmp, JSON.stringify(state) + '\n', { mode: 0o600 });
      await fs.rename(tmp, file);
    }).catch((e) => {
      process.stderr.write(`gvfs ${s.role}: cannot write its state file for gvfs status: ${(e as Error).message}\n`);
    });
    return writing;
  };
  try {
    file = path.join(await daemonsDir(), `${s.role}-${process.pid}.json`);
  } catch (e) {
    process.stderr.write(`gvfs ${s.role}: no runtime directory for gvfs status: ${(e as Error).message}\n`);
  }
  let pending: NodeJS.Timeout | undefined;
  const off = onWarnOrError((l) => {
    state.recentErrors.push(l);
    if (state.recentErrors.length > RECENT_ERRORS) state.recentErrors.splice(0, state.recentErrors.length - RECENT_ERRORS);
    // A burst of errors is one rewrite.
    pending ??= setTimeout(() => {
      pending = undefined;
      void write();
    }, 200).unref();
  });
  // The exit handler must be synchronous (the process is ending); it runs on process.exit and normal ends.
  const removeNow = () => {
    if (!file) return;
    try {
      unlinkSync(file);
    } catch {
      /* already gone */
    }
  };
  process.once('exit', removeNow);
  await write();
  return {
    file,
    update: (patch) => {
      Object.assign(state, patch);
      return write();
    },
    close: async () => {
      closed = true;
      off();
      clearTimeout(pending);
      await writing;
      process.off('exit', removeNow);
      if (file) await fs.rm(file, { force: true });
    },
  };
}

export interface FoundDaemon extends DaemonState {
  file: string;
  alive: boolean;
}

/** Every state file in the runtime directory, each checked for life. Unreadable files are skipped (a write in progress is a .tmp). */
export async function listDaemons(): Promise<FoundDaemon[]> {
  const dir = await daemonsDir();
  const out: FoundDaemon[] = [];
  for (const n of (await fs.readdir(dir)).filter((x) => x.endsWith('.json')).sort()) {
    const file = path.join(dir, n);
    const text = await fs.readFile(file, 'utf8').catch(() => undefined);
    if (!text) continue;
    let st: DaemonState;
    try {
      st = JSON.parse(text) as DaemonState;
    } catch {
      continue;
    }
    if (typeof st.pid !== 'number') continue;
    out.push({ ...st, recentErrors: st.recentErrors ?? [], file, alive: await isAlive(st) });
  }
  return out;
}
