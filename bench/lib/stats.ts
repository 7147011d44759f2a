/** Small helpers for reporting: medians with min–max, ratios, process memory. */
import fs from 'node:fs/promises';

export interface Sample {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function summarize(runs: number[]): Sample {
  const s = [...runs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], runs };
}

/** Peak resident set (VmHWM) of a process, in MiB. */
export async function peakRssMiB(pid: number): Promise<number> {
  const st = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmHWM:\s+(\d+) kB/.exec(st);
  return m ? Number(m[1]) / 1024 : NaN;
}

export function fmt(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return 'n/a';
  return n >= 100 ? n.toFixed(0) : n.toFixed(digits);
}

export function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ')).join('\n');
}
