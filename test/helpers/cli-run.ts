import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { GVFS_CLI, gvfsArgv } from '../../src/cli/self.js';

/** dist/src/cli/main.js of this build. */
export { GVFS_CLI };

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit (ms). */
  ms: number;
}

/** Run `gvfs ARGS` to its end (killed after `timeoutMs`); never rejects on a non-zero status. */
export function gvfsRun(args: string[], o: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  const t0 = Date.now();
  const proc = spawn(process.execPath, gvfsArgv(args), {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: o.cwd,
    env: { ...process.env, GVFS_LOG_LEVEL: process.env.GVFS_LOG_LEVEL ?? 'warn', ...o.env },
  });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const t = setTimeout(() => proc.kill('SIGKILL'), o.timeoutMs ?? 120_000);
  return new Promise((resolve) => {
    proc.once('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

export interface Daemon {
  proc: ChildProcess;
  /** Its first stdout line (--json), parsed. */
  info: any;
  stderr(): string;
  /** Send `sig` and wait for the exit: its status and how long it took (ms). */
  terminate(sig?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  /** SIGKILL if still running (cleanup). */
  kill(): void;
}

/** `gvfs ARGS --json` left running; resolves with its first line. */
export async function gvfsDaemon(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Daemon> {
  const proc = spawn(process.execPath, gvfsArgv([...args, '--json']), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, GVFS_LOG_LEVEL: process.env.GVFS_LOG_LEVEL ?? 'warn', ...env },
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 1 << 20) err = err.slice(-(1 << 19));
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve);
    void exited.then((x) => reject(new Error(`gvfs ${args.join(' ')} exited (${x.code ?? x.signal}):\n${err}`)));
  });
  return {
    proc,
    info: JSON.parse(line),
    stderr: () => err,
    async terminate(sig: NodeJS.Signals = 'SIGTERM') {
      const t0 = Date.now();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
      const x = await exited;
      return { ...x, ms: Date.now() - t0 };
    },
    kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
}
