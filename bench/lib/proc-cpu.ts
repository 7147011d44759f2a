import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';

/** Clock ticks per second of /proc's CPU times (getconf CLK_TCK; 100 on Linux). */
const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

/** user and system CPU seconds a process has used so far (/proc/PID/stat fields 14 and 15, counted after the command name). */
export async function cpuTimes(pid: number): Promise<{ user: number; sys: number }> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]) / TICK, sys: Number(f[12]) / TICK };
}

/** user + system CPU seconds a process has used so far. */
export async function cpuSeconds(pid: number): Promise<number> {
  const t = await cpuTimes(pid);
  return t.user + t.sys;
}
