import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeCharts } from './chart.js';
import { fmt, summarize, table, type Sample } from './stats.js';

export interface WorkloadResult {
  name: string;
  unit: string;
  /** system → sample of rates (higher is better) */
  systems: Record<string, Sample>;
}

export interface SuiteResult {
  suite: string;
  /** The system every ratio is taken against (NaN figures: workload not applicable to a system). */
  baseline: string;
  workloads: WorkloadResult[];
  notes: string[];
  memory?: Record<string, number>;
}

export interface BenchContext {
  quick: boolean;
  runs: number;
  /** Run every workload on every system `runs` times, interleaved (system order rotates each run). */
  compare(suite: string, systems: string[], workloads: Array<{ name: string; unit: string; run: (sys: string) => Promise<number> }>): Promise<SuiteResult>;
}

export function makeContext(quick: boolean, runs: number): BenchContext {
  return {
    quick,
    runs,
    async compare(suite, systems, workloads) {
      const out: WorkloadResult[] = [];
      for (const w of workloads) {
        const samples: Record<string, number[]> = Object.fromEntries(systems.map((s) => [s, []]));
        for (let r = 0; r < runs; r++) {
          const order = systems.map((_, i) => systems[(i + r) % systems.length]);
          for (const s of order) samples[s].push(await w.run(s));
        }
        out.push({ name: w.name, unit: w.unit, systems: Object.fromEntries(systems.map((s) => [s, summarize(samples[s])])) });
        process.stderr.write(`  ${suite}: ${w.name} done\n`);
      }
      return { suite, baseline: systems[systems.length - 1], workloads: out, notes: [] };
    },
  };
}

/** Table of medians (min–max) and each system's ratio to the baseline (last system). */
export function render(r: SuiteResult): string {
  const systems = Object.keys(r.workloads[0]?.systems ?? {});
  const others = systems.filter((s) => s !== r.baseline);
  const rows = [['workload', 'unit', ...systems.map((s) => `${s} median (min–max)`), ...others.map((s) => `${s}/${r.baseline}`)]];
  for (const w of r.workloads) {
    rows.push([
      w.name,
      w.unit,
      ...systems.map((s) => `${fmt(w.systems[s].median)} (${fmt(w.systems[s].min)}–${fmt(w.systems[s].max)})`),
      ...others.map((s) => {
        const q = w.systems[s].median / w.systems[r.baseline].median;
        return Number.isFinite(q) ? q.toFixed(2) : 'n/a';
      }),
    ]);
  }
  let text = `== ${r.suite} ==\n${table(rows)}\n`;
  if (r.memory) text += Object.entries(r.memory).map(([k, v]) => `${k}: ${fmt(v)} MiB`).join('\n') + '\n';
  for (const n of r.notes) text += `note: ${n}\n`;
  return text;
}

/** JSON (with the machine and settings) and one SVG chart per workload; returns the JSON path. */
export async function saveResults(dir: string, results: SuiteResult[], settings: object): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(dir, `bench-${stamp}.json`);
  await writeCharts(dir, `bench-${stamp}`, results);
  const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, kernel: os.release() };
  await fs.writeFile(file, JSON.stringify({ date: new Date().toISOString(), machine, settings, results }, (_, v) => (typeof v === 'bigint' ? v.toString() : v), 2));
  return file;
}
