import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { gvfsArgv } from '../../src/cli/self.js';

/** A pino log line of a child process (JSON), or the raw text of a non-JSON line. */
export type LogLine = Record<string, any> & { msg?: string; raw: string };

/** What a log line must match: a regular expression over its raw text, or a predicate over the parsed line. */
export type LogMatch = RegExp | ((l: LogLine) => boolean);

/** A gvfs command in its own process, its stderr (the JSON log) collected line by line. */
export interface GvfsChild {
  proc: ChildProcess;
  pid: number;
  /** Every stderr line so far. */
  lines: LogLine[];
  /** stderr so far, as text. */
  log(): string;
  /** Resolves with the first stderr line (past or future) matching; rejects after `timeoutMs`. */
  waitLog(match: LogMatch, timeoutMs?: number): Promise<LogLine>;
  /** SIGTERM (SIGKILL after 10 s) and wait for the exit; nothing if it has exited already. */
  stop(): Promise<void>;
}

/** A gvfs command started with --json, once it printed its first stdout line (`info`). */
export interface GvfsProcess extends GvfsChild {
  info: any;
  /** `info.listening.port`, for commands that listen. */
  port: number;
}

const matches = (m: LogMatch, l: LogLine) => (m instanceof RegExp ? m.test(l.raw) : m(l));

/** Who a child runs as (spawn's uid and gid; the supplementary groups are then cleared). */
export interface RunAs {
  uid: number;
  gid: number;
}

/** Start `node gvfs ARGS` (no --json added), collecting its stderr lines; stdout lines are handed to `onStdout`. */
export function startGvfs(args: string[], o: { env?: NodeJS.ProcessEnv; onStdout?: (line: string) => void; as?: RunAs } = {}): GvfsChild {
  // GVFS_NODE_FLAGS (in `o.env`): node flags NODE_OPTIONS refuses, e.g. --cpu-prof for a benchmark's profile.
  const flags = o.env?.GVFS_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
  const proc = spawn(process.execPath, [...flags, ...gvfsArgv(args)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env }, ...o.as });
  const lines: LogLine[] = [];
  const waiters: Array<{ match: LogMatch; resolve: (l: LogLine) => void }> = [];
  createInterface({ input: proc.stderr! }).on('line', (raw) => {
    let l: LogLine;
    try {
      l = { ...JSON.parse(raw), raw };
    } catch {
      l = { raw };
    }
    lines.push(l);
    for (const w of [...waiters]) {
      if (!matches(w.match, l)) continue;
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(l);
    }
  });
  if (o.onStdout) createInterface({ input: proc.stdout! }).on('line', o.onStdout);
  const log = () => lines.map((l) => l.raw + '\n').join('');
  return {
    proc,
    pid: proc.pid!,
    lines,
    log,
    waitLog(match, timeoutMs = 60_000) {
      const hit = lines.find((l) => matches(match, l));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no log line matching ${match} within ${timeoutMs} ms:\n${log()}`)), timeoutMs);
        waiters.push({ match, resolve: (l) => (clearTimeout(t), resolve(l)) });
      });
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await once(proc, 'exit');
      clearTimeout(t);
    },
  };
}

/** `gvfs ARGS --json` in its own process (so its RSS and log can be read); resolves with its first stdout line. */
export async function spawnGvfs(args: string[], env: NodeJS.ProcessEnv = {}, as?: RunAs): Promise<GvfsProcess> {
  let first!: (line: string) => void;
  const line = new Promise<string>((r) => (first = r));
  const c = startGvfs([...args, '--json'], { env, onStdout: (l) => first(l), as });
  const info = await Promise.race([
    line.then((l) => JSON.parse(l)),
    once(c.proc, 'exit').then(([code, signal]) => {
      throw new Error(`gvfs ${args[0]} exited with ${code ?? signal}:\n${c.log()}`);
    }),
  ]).catch(async (e) => {
    await c.stop(); // a first line that is not JSON: leave no process behind
    throw e;
  });
  return { ...c, info, port: info.listening?.port };
}

/** `gvfs proxy-server --listen 127.0.0.1:0 ARGS --json` (ARGS: --export, --key, ...); resolves once it listens. */
export const startProxyServer = (args: string[]): Promise<GvfsProcess> => spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', ...args]);

/** Run a gvfs command to its exit (killed after timeoutMs): exit code and all output. */
export async function runGvfs(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, gvfsArgv(args), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d) => (stdout += d));
  proc.stderr!.on('data', (d) => (stderr += d));
  const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  const [code, signal] = (await once(proc, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(t);
  return { code, signal, stdout, stderr };
}
