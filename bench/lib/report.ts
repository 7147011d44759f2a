import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { writeCharts } from './chart.js';
import { fmt, summarize, table, type Sample } from './stats.js';

/** Which way a workload's figures improve: rates go up, times go down. Every table and chart says which. */
export type Better = 'higher' | 'lower';

export interface WorkloadResult {
  name: string;
  unit: string;
  better: Better;
  /** system → sample of the workload's figure */
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
  compare(suite: string, systems: string[], workloads: Array<{ name: string; unit: string; better?: Better; run: (sys: string) => Promise<number> }>): Promise<SuiteResult>;
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
        out.push({ name: w.name, unit: w.unit, better: w.better ?? 'higher', systems: Object.fromEntries(systems.map((s) => [s, summarize(samples[s])])) });
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
  const rows = [['workload', 'unit', 'better', ...systems.map((s) => `${s} median (min–max)`), ...others.map((s) => `${s}/${r.baseline}`)]];
  for (const w of r.workloads) {
    rows.push([
      w.name,
      w.unit,
      w.better ?? 'higher',
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

const run = promisify(execFile);
const repoRoot = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface GitState {
  /** HEAD when the run started; null outside a git checkout. */
  commit: string | null;
  /** Tracked files differed from HEAD (the figures are then of uncommitted code). */
  dirty: boolean | null;
  /** The tracked files that differed (at most 50). */
  changed?: string[];
  error?: string;
}

/** The commit the benchmark code and the code under test come from, and whether the tree differed from it. */
export async function gitState(dir = repoRoot): Promise<GitState> {
  // From dist/bench/lib the checkout is two levels further up; git finds it from any directory inside.
  try {
    const commit = (await run('git', ['rev-parse', 'HEAD'], { cwd: dir })).stdout.trim();
    const st = (await run('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: dir, maxBuffer: 16 << 20 })).stdout.split('\n').filter(Boolean);
    return { commit, dirty: st.length > 0, ...(st.length ? { changed: st.slice(0, 50).map((l) => l.slice(3)) } : {}) };
  } catch (e) {
    return { commit: null, dirty: null, error: (e as Error).message.split('\n')[0] };
  }
}

export interface Machine {
  cpu: string | undefined;
  cpus: number;
  memGiB: number;
  kernel: string;
  os: string;
  node: string;
  hostname: string;
}

export function machine(): Machine {
  return {
    cpu: os.cpus()[0]?.model,
    cpus: os.cpus().length,
    memGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()} ${os.version()}`,
    os: os.platform(),
    node: process.version,
    hostname: os.hostname(),
  };
}

export interface RunRecord {
  /** When the run started (ISO 8601); the file name carries it too. */
  date: string;
  /** Set when the file is written for the last time: complete, or failed with the suite and error. */
  status: 'running' | 'complete' | 'failed';
  error?: { suite: string; message: string };
  git: GitState;
  /** The full command line (node, its options, the script, the arguments). */
  command: string[];
  machine: Machine;
  settings: object;
  results: SuiteResult[];
}

/**
 * One run's results file: written at the start and again after every suite,
 * so the raw JSON of the suites that finished survives a later one failing.
 */
export class ResultsFile {
  readonly file: string;
  readonly stamp: string;
  private chartsDone = 0;

  private constructor(
    readonly dir: string,
    private readonly record: RunRecord,
  ) {
    this.stamp = `bench-${record.date.replace(/[:.]/g, '-')}`;
    this.file = path.join(dir, `${this.stamp}.json`);
  }

  static async create(dir: string, settings: object): Promise<ResultsFile> {
    await fs.mkdir(dir, { recursive: true });
    const rec: RunRecord = {
      date: new Date().toISOString(),
      status: 'running',
      git: await gitState(),
      command: [process.execPath, ...process.execArgv, ...process.argv.slice(1)],
      machine: machine(),
      settings,
      results: [],
    };
    const f = new ResultsFile(dir, rec);
    await f.write();
    return f;
  }

  get data(): Readonly<RunRecord> {
    return this.record;
  }

  /** Add a finished suite: JSON rewritten, its charts written. */
  async add(r: SuiteResult): Promise<void> {
    this.record.results.push(r);
    await this.write();
    await writeCharts(this.dir, this.stamp, this.record.results.slice(this.chartsDone));
    this.chartsDone = this.record.results.length;
  }

  async finish(error?: { suite: string; message: string }): Promise<void> {
    this.record.status = error ? 'failed' : 'complete';
    if (error) this.record.error = error;
    await this.write();
  }

  private async write(): Promise<void> {
    // Write aside and rename: a reader never sees half a file.
    const tmp = `${this.file}.tmp`;
    await fs.writeFile(tmp, JSON.stringify(this.record, (_, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
    await fs.rename(tmp, this.file);
  }
}
