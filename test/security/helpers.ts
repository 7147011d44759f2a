import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

/** A gvfs command in its own process: its first stdout line (--json) and everything it logged. */
export interface Proc {
  proc: ChildProcess;
  info: any;
  port: number;
  /** stderr so far (the JSON log lines). */
  log(): string;
  /** Resolves when a stderr line matches (rejects on exit or after `ms`). */
  waitLog(re: RegExp, ms?: number): Promise<string>;
  stop(): Promise<void>;
}

export async function spawnGvfs(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Proc> {
  const proc = spawn(process.execPath, [CLI, ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  createInterface({ input: proc.stderr! }).on('line', (l) => {
    err += l + '\n';
    for (const w of [...waiters]) if (w.re.test(l)) waiters.splice(waiters.indexOf(w), 1), w.resolve(l);
  });
  const info = await new Promise<any>((resolve, reject) => {
    proc.once('exit', (c) => reject(new Error(`gvfs ${args[0]} exited with ${c}:\n${err}`)));
    createInterface({ input: proc.stdout! }).once('line', (l) => resolve(JSON.parse(l)));
  });
  return {
    proc,
    info,
    port: info.listening?.port,
    log: () => err,
    waitLog(re, ms = 60_000) {
      const hit = err.split('\n').find((l) => re.test(l));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no log line matching ${re} within ${ms} ms:\n${err}`)), ms);
        waiters.push({ re, resolve: (l) => (clearTimeout(t), resolve(l)) });
      });
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}
