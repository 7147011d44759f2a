import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';

/** Debian's strace (setup installs it). */
export const STRACE = '/usr/bin/strace';

/** strace `args` attached to every thread of `pid` (and threads it starts), writing to `log`; resolves once attached. */
export async function attachStrace(pid: number, args: string[], log: string): Promise<ChildProcess> {
  const st = spawn(STRACE, ['-f', ...args, '-o', log, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    st.stderr!.on('data', (d) => {
      err += d;
      if (/attached/.test(err)) resolve();
    });
    st.on('exit', (code) => reject(new Error(`strace exited (${code}): ${err}`)));
  });
  return st;
}

/** Detach `st` (SIGINT) and return the trace it wrote to `log`. */
export async function detachStrace(st: ChildProcess, log: string): Promise<string> {
  st.kill('SIGINT');
  if (st.exitCode === null) await once(st, 'exit');
  return fs.readFile(log, 'utf8');
}
