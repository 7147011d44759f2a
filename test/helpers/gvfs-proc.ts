import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

export interface GvfsProcess {
  proc: ChildProcess;
  pid: number;
  port: number;
  stop(): Promise<void>;
}

/** Run a gvfs command that prints `{"listening":{"port":N}}` with --json, in its own process (so its RSS can be read). */
export async function spawnGvfs(args: string[]): Promise<GvfsProcess> {
  const proc = spawn(process.execPath, [CLI, ...args, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = createInterface({ input: proc.stdout! });
  const port = await new Promise<number>((resolve, reject) => {
    proc.once('exit', (c) => reject(new Error(`gvfs ${args[0]} exited with ${c}`)));
    rl.once('line', (l) => resolve(JSON.parse(l).listening.port));
  });
  return {
    proc,
    pid: proc.pid!,
    port,
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}
