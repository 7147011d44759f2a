import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { nativeTool } from './libnfs-client.js';

/** A running relay (bench/native/relay.c): bytes in at 127.0.0.1:port, out to its target, untouched. */
export interface Relay {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Start a relay to 127.0.0.1:`targetPort` on a port of the kernel's choice.
 * The chain suite puts two between its client and nfs-ganesha: the least
 * two user-level hops cost on this machine, with no NFS work at all.
 */
export async function startRelay(targetPort: number): Promise<Relay> {
  const bin = await nativeTool('relay');
  const child = spawn(bin, ['0', '127.0.0.1', String(targetPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdout.setEncoding('utf8');
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: string) => {
      out += d;
      const line = out.split('\n');
      if (line.length > 1) resolve(Number(line[0]));
    });
    child.once('error', reject);
    child.once('exit', (code, sig) => reject(new Error(`relay exited at start (${sig ?? `code ${code}`}): ${err.trim()}`)));
  });
  return {
    port,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = once(child, 'exit');
      child.kill('SIGKILL');
      await gone;
    },
  };
}
