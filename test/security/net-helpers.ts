import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { newSessionKey, writeKeyFile, type SessionKey } from '../../src/channel/session-key.js';

export const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

/** A pino log line of a child process (JSON), or the raw text of a non-JSON line. */
export type LogLine = Record<string, any> & { msg?: string; raw: string };

export interface Child {
  proc: ChildProcess;
  pid: number;
  /** Every stderr line so far. */
  lines: LogLine[];
  /** Resolves with the first stderr line (past or future) matching `pred`. */
  waitLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  stop(): Promise<void>;
}

/** Start `node gvfs ARGS`, collecting its stderr lines; stdout lines are handed to `onStdout`. */
export function startGvfs(args: string[], onStdout?: (line: string) => void): Child {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: LogLine[] = [];
  const waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  createInterface({ input: proc.stderr! }).on('line', (raw) => {
    let l: LogLine;
    try {
      l = { ...JSON.parse(raw), raw };
    } catch {
      l = { raw };
    }
    lines.push(l);
    for (const w of [...waiters]) if (w.pred(l)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(l);
    }
  });
  if (onStdout) createInterface({ input: proc.stdout! }).on('line', onStdout);
  return {
    proc,
    pid: proc.pid!,
    lines,
    waitLog(pred, timeoutMs = 30_000) {
      const hit = lines.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; last lines:\n${lines.slice(-8).map((l) => l.raw).join('\n')}`)), timeoutMs);
        waiters.push({ pred, resolve: (l) => (clearTimeout(t), resolve(l)) });
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

export interface ProxyServerProc extends Child {
  port: number;
}

/** `gvfs proxy-server --export DIR --key KEY ... --json` in its own process; resolves once it listens. */
export async function startProxyServer(args: string[]): Promise<ProxyServerProc> {
  let onLine!: (l: string) => void;
  const first = new Promise<string>((r) => (onLine = r));
  const c = startGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--json', ...args], (l) => onLine(l));
  const port = await Promise.race([
    first.then((l) => JSON.parse(l).listening.port as number),
    once(c.proc, 'exit').then(([code]) => {
      throw new Error(`proxy-server exited with ${code}:\n${c.lines.map((l) => l.raw).join('\n')}`);
    }),
  ]);
  return { ...c, port };
}

/** A session key for `user` mapped to uid/gid 0 (the test runs as root), written owner-only to dir/name. */
export async function keyFile(dir: string, name: string, user = 'alice', k: SessionKey = newSessionKey(user, undefined, { uid: 0, gid: 0, gids: [] })): Promise<{ file: string; key: SessionKey }> {
  const file = path.join(dir, name);
  await writeKeyFile(file, k);
  return { file, key: k };
}

/** Run a gvfs command to its exit (killed after timeoutMs): exit code and all output. */
export async function runGvfs(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d) => (stdout += d));
  proc.stderr!.on('data', (d) => (stderr += d));
  const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  const [code, signal] = (await once(proc, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(t);
  return { code, signal, stdout, stderr };
}

export async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}
