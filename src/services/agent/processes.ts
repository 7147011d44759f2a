import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { gvfsArgv } from '../../cli/self.js';

/** A process the agent started: its pid and the kernel's start time, so a reused pid is never taken for it. */
export interface ProcessId {
  pid: number;
  startTime: string;
}

/** Start time (clock ticks since boot, /proc/PID/stat field 22) and state of a process, or undefined if it is gone. */
export async function procStat(pid: number): Promise<{ state: string; startTime: string } | undefined> {
  try {
    const s = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0], startTime: rest[19] };
  } catch {
    return undefined;
  }
}

/** Is this the process we started, still running (a zombie counts as gone)? */
export async function isAlive(p: ProcessId): Promise<boolean> {
  const st = await procStat(p.pid);
  return !!st && st.state !== 'Z' && st.state !== 'X' && st.startTime === p.startTime;
}

export interface Started extends ProcessId {
  /** The JSON line the command printed once ready. */
  info: Record<string, any>;
}

/**
 * Run `gvfs ARGS --json` detached (its own session, so it outlives the
 * agent), stdout and stderr to files in `dir`; resolve with its first JSON
 * line once it prints one. If it exits first, or prints nothing within
 * `timeoutMs`, it is killed and the promise rejects with the log's tail.
 */
export async function startDetached(args: string[], dir: string, name: string, timeoutMs = 60_000, env: NodeJS.ProcessEnv = {}): Promise<Started> {
  const outFile = path.join(dir, `${name}.out`);
  const logFile = path.join(dir, `${name}.log`);
  const out = await fs.open(outFile, 'w', 0o600);
  const err = await fs.open(logFile, 'a', 0o600);
  let child;
  try {
    child = spawn(process.execPath, gvfsArgv([...args, '--json']), {
      detached: true,
      stdio: ['ignore', out.fd, err.fd],
      env: { ...process.env, GVFS_LOG_LEVEL: process.env.GVFS_LOG_LEVEL ?? 'warn', ...env },
    });
  } finally {
    await out.close();
    await err.close();
  }
  let exited: number | string | null | undefined;
  child.once('exit', (code, sig) => (exited = code ?? sig));
  child.once('error', (e) => (exited = e.message));
  child.unref();
  const pid = child.pid;
  if (!pid) throw new Error(`could not start gvfs ${args[0]}`);
  const stat = await procStat(pid);
  const t0 = Date.now();
  for (let wait = 5; ; wait = Math.min(wait * 2, 50)) {
    const text = await fs.readFile(outFile, 'utf8').catch(() => '');
    const nl = text.indexOf('\n');
    if (nl >= 0) {
      try {
        return { pid, startTime: stat?.startTime ?? '', info: JSON.parse(text.slice(0, nl)) };
      } catch {
        /* not JSON: report below */
      }
    }
    if (exited !== undefined || Date.now() - t0 > timeoutMs) {
      if (exited === undefined) await stopProcess({ pid, startTime: stat?.startTime ?? '' }, 5000);
      const tail = (await fs.readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-6).join('\n');
      const why = exited !== undefined ? `exited (${exited})` : `printed nothing within ${timeoutMs} ms`;
      throw new Error(`gvfs ${args[0]} ${why}: ${errorLines(tail)}`);
    }
    await delay(wait);
  }
}

/** The human part of a log tail (pino lines give their msg/err.message). */
function errorLines(tail: string): string {
  return tail
    .split('\n')
    .map((l) => {
      try {
        const j = JSON.parse(l);
        return j.err?.message ?? j.msg ?? l;
      } catch {
        return l;
      }
    })
    .filter(Boolean)
    .join(' | ');
}

/** SIGTERM, wait up to `graceMs` for it to go, then SIGKILL. Resolves once the process is gone; true if it went by itself. */
export async function stopProcess(p: ProcessId, graceMs: number): Promise<boolean> {
  if (!(await isAlive(p))) return true;
  try {
    process.kill(p.pid, 'SIGTERM');
  } catch {
    return true;
  }
  const t0 = Date.now();
  while (Date.now() - t0 < graceMs) {
    if (!(await isAlive(p))) return true;
    await delay(25);
  }
  try {
    process.kill(p.pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  while (await isAlive(p)) await delay(25);
  return false;
}
