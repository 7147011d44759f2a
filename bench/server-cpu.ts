/**
 * CPU cost of `gvfs serve` per workload, for comparing two builds on a
 * machine that is not quiet: throughput moves by 10–20 % with whatever else
 * runs, but the server's own CPU time (user + system, from /proc/PID/stat)
 * for a fixed amount of work moves much less. Same workloads and client
 * (nfsbench) as the server suite; builds alternate round by round.
 *
 *   node dist/bench/server-cpu.js ROUNDS OUT.json BUILD_DIR...
 *   e.g. node dist/bench/server-cpu.js 5 /tmp/cpu.json /work/base /work/main
 *
 * Each BUILD_DIR is a checkout with its own dist/ (and bench/native/build/nfsbench).
 * nfsbench gets 15 minutes per workload: CPU time, not wall time, is measured,
 * and a loaded machine is slow.
 * Environment: SERVER_CPU_ONLY (a regular expression: run only the workloads
 * whose name matches), SERVER_CPU_SIZE_MIB (bytes per streaming workload,
 * default 1024), SERVER_CPU_NODE_OPTIONS (given to the server as
 * NODE_OPTIONS, e.g. "--import=dist/bench/lib/cpu-prof.js" with
 * GVFS_CPU_PROF_DIR=/tmp/prof to profile it: see bench/lib/cpu-prof.ts).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { cpuSeconds } from './lib/proc-cpu.js';
import os from 'node:os';
import path from 'node:path';
import { randomFile } from './lib/files.js';

const MiB = 1 << 20;
const [roundsArg, outFile, ...builds] = process.argv.slice(2);
if (!roundsArg || !outFile || builds.length === 0) {
  console.error('usage: server-cpu.js ROUNDS OUT.json BUILD_DIR...');
  process.exit(2);
}

const size = Number(process.env.SERVER_CPU_SIZE_MIB ?? 1024) * MiB;
const files = 2000;
const randOps = 20000;
const allWorkloads = [
  { name: 'seq write 64 KiB x16', per: size / MiB, unit: 'ms CPU/MiB', a: { op: 'seqwrite', file: 'w64', size, xfer: 64 * 1024, depth: 16 } },
  { name: 'seq write 1 MiB x4', per: size / MiB, unit: 'ms CPU/MiB', a: { op: 'seqwrite', file: 'w1m', size, xfer: MiB, depth: 4 } },
  { name: 'seq read 64 KiB x16', per: size / MiB, unit: 'ms CPU/MiB', a: { op: 'seqread', file: 'read.bin', size, xfer: 64 * 1024, depth: 16 } },
  { name: 'seq read 1 MiB x4', per: size / MiB, unit: 'ms CPU/MiB', a: { op: 'seqread', file: 'read.bin', size, xfer: MiB, depth: 4 } },
  { name: 'random read 4 KiB x16', per: randOps, unit: 'µs CPU/op', a: { op: 'randread', file: 'read.bin', size, ops: randOps, depth: 16 } },
  // nfsbench's meta op makes four calls per file: CREATE, LOOKUP + GETATTR (the stat), REMOVE.
  { name: `create/stat/remove ${files}`, per: files * 4, unit: 'µs CPU/op', a: { op: 'meta', dir: 'meta', files } },
];
const only = process.env.SERVER_CPU_ONLY ? new RegExp(process.env.SERVER_CPU_ONLY) : undefined;
const workloads = allWorkloads.filter((w) => !only || only.test(w.name));

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-cpu-'));
const exp = path.join(dir, 'export');
await fs.mkdir(exp);
await randomFile(path.join(exp, 'read.bin'), size);

const results: Record<string, Record<string, number[]>> = {};
for (let round = 0; round < Number(roundsArg); round++) {
  for (const build of builds) {
    const { spawnGvfs } = await import(path.join(build, 'dist/test/helpers/gvfs-proc.js'));
    const { nfsbench } = await import(path.join(build, 'dist/bench/lib/libnfs-client.js'));
    const gvfs = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(dir, `state-${round}`)], process.env.SERVER_CPU_NODE_OPTIONS ? { NODE_OPTIONS: process.env.SERVER_CPU_NODE_OPTIONS } : {});
    try {
      for (const w of workloads) {
        const before = await cpuSeconds(gvfs.pid);
        // Fresh names for what is written, so every build creates its files anew each round.
        const a = { ...w.a, ...(w.a.op === 'seqwrite' ? { file: `${w.a.file}-${round}` } : {}), ...(w.a.op === 'meta' ? { dir: `meta-${round}-${builds.indexOf(build)}` } : {}) };
        await nfsbench({ nfsPort: gvfs.port, mountPort: gvfs.port, exportPath: '/', timeoutSec: 900, ...a });
        const cpu = (await cpuSeconds(gvfs.pid)) - before;
        const v = w.unit.startsWith('ms') ? (cpu * 1000) / w.per : (cpu * 1e6) / w.per;
        ((results[build] ??= {})[w.name] ??= []).push(v);
        console.log(`round ${round + 1} ${build}: ${w.name} ${v.toFixed(2)} ${w.unit}`);
      }
    } finally {
      await gvfs.stop();
      for (const w of workloads) if (w.a.op === 'seqwrite') await fs.rm(path.join(exp, `${w.a.file}-${round}`), { force: true });
    }
  }
}
await fs.rm(dir, { recursive: true, force: true });

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const commit = (b: string) => {
  try {
    return execFileSync('git', ['-C', b, 'rev-parse', '--short', 'HEAD']).toString().trim();
  } catch {
    return 'unknown';
  }
};
const table = workloads.map((w) => ({
  workload: w.name,
  unit: w.unit,
  medians: Object.fromEntries(builds.map((b) => [b, median(results[b][w.name])])),
  ratio: builds.length > 1 ? median(results[builds[1]][w.name]) / median(results[builds[0]][w.name]) : undefined,
}));
for (const row of table)
  console.log(`${row.workload.padEnd(26)} ${builds.map((b) => row.medians[b].toFixed(2)).join('  ')} ${row.unit}${row.ratio ? `  ${builds[1]}/${builds[0]} = ${row.ratio.toFixed(3)}` : ''}`);
await fs.writeFile(
  outFile,
  JSON.stringify({ date: new Date().toISOString(), command: process.argv.join(' '), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, rounds: Number(roundsArg), builds: builds.map((b) => ({ dir: b, commit: commit(b) })), raw: results, table }, null, 2),
);
