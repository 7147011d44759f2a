/**
 * Where a call's time goes through the proxy chain: CPU per call (or per
 * MiB) of each process on the path — proxy client, proxy server, nfs-ganesha
 * and the two C relays that stand where the proxies do in the chain suite's
 * `relay` system — split into user and system time (/proc/PID/stat), for
 * the same workloads as the chain suite. CPU time for a fixed amount of
 * work moves much less than throughput on a machine that is not quiet.
 *
 *   node dist/bench/chain-cpu.js ROUNDS OUT.json
 *
 * Environment: CHAIN_CPU_ONLY (a regular expression over workload names),
 * CHAIN_CPU_SIZE_MIB (bytes per read workload, default 256). The first
 * round warms the processes up (V8 optimises the hot paths) and is not
 * counted.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startChainSystems } from './lib/chain-systems.js';
import { nfsbench, type NfsbenchArgs } from './lib/libnfs-client.js';
import { cpuTimes } from './lib/proc-cpu.js';
import { randomFile } from './lib/files.js';

const MiB = 1 << 20;
const [roundsArg, outFile] = process.argv.slice(2);
if (!roundsArg || !outFile) {
  console.error('usage: chain-cpu.js ROUNDS OUT.json');
  process.exit(2);
}
const rounds = Number(roundsArg);
const size = Number(process.env.CHAIN_CPU_SIZE_MIB ?? 256) * MiB;
const files = 2000;
type Args = Omit<NfsbenchArgs, 'nfsPort' | 'mountPort' | 'exportPath'>;
const allWorkloads: Array<{ name: string; unit: string; per: number; args: (sys: string, round: number) => Args }> = [
  // nfsbench's meta op makes four calls per file: CREATE, LOOKUP + GETATTR (the stat), REMOVE.
  { name: `create/stat/remove ${files}`, unit: 'µs CPU/call', per: files * 4, args: (s, r) => ({ op: 'meta', dir: `m-${s}-${r}`, files }) },
  { name: 'seq read 1 MiB x4', unit: 'µs CPU/MiB', per: size / MiB, args: () => ({ op: 'seqread', file: 'read.bin', size, xfer: MiB, depth: 4 }) },
  { name: 'seq read 64 KiB x16', unit: 'µs CPU/MiB', per: size / MiB, args: () => ({ op: 'seqread', file: 'read.bin', size, xfer: 64 * 1024, depth: 16 }) },
];
const only = process.env.CHAIN_CPU_ONLY ? new RegExp(process.env.CHAIN_CPU_ONLY) : undefined;
const workloads = allWorkloads.filter((w) => !only || only.test(w.name));
if (workloads.length === 0) {
  console.error(`chain-cpu: no workload matches CHAIN_CPU_ONLY (${allWorkloads.map((w) => w.name).join('; ')})`);
  process.exit(2);
}

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-chain-cpu-'));
const exp = path.join(dir, 'export');
await fs.mkdir(exp);
await randomFile(path.join(exp, 'read.bin'), size);

/** system → workload → process → samples of [user, sys] per unit (µs) */
const samples: Record<string, Record<string, Record<string, Array<[number, number]>>>> = {};
const rates: Record<string, Record<string, number[]>> = {};
const chain = await startChainSystems(dir, exp).catch(async (e) => {
  await fs.rm(dir, { recursive: true, force: true });
  throw e;
});
try {
  for (let round = 0; round <= rounds; round++) {
    for (const w of workloads) {
      for (const [sys, s] of Object.entries(chain.systems)) {
        const before = Object.fromEntries(await Promise.all(Object.entries(s.pids).map(async ([k, pid]) => [k, await cpuTimes(pid)] as const)));
        const res = await nfsbench({ nfsPort: s.nfsPort, mountPort: s.mountPort, exportPath: chain.exportPath, timeoutSec: 900, ...w.args(sys, round) });
        const line: string[] = [];
        for (const [k, pid] of Object.entries(s.pids)) {
          const now = await cpuTimes(pid);
          const u = ((now.user - before[k].user) * 1e6) / w.per;
          const y = ((now.sys - before[k].sys) * 1e6) / w.per;
          if (round > 0) (((samples[sys] ??= {})[w.name] ??= {})[k] ??= []).push([u, y]);
          line.push(`${k} ${u.toFixed(0)}+${y.toFixed(0)}`);
        }
        const rate = w.unit.endsWith('call') ? res.ops_per_s! : res.mib_per_s!;
        if (round > 0) ((rates[sys] ??= {})[w.name] ??= []).push(rate);
        console.log(`${round === 0 ? 'warm-up' : `round ${round}`} ${w.name} ${sys}: ${rate.toFixed(0)} ${w.unit.endsWith('call') ? 'calls/s' : 'MiB/s'}; ${w.unit} user+sys: ${line.join(', ')}`);
      }
    }
  }
} finally {
  await chain.stop();
  await fs.rm(dir, { recursive: true, force: true });
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const table = workloads.flatMap((w) =>
  Object.keys(samples).map((sys) => ({
    workload: w.name,
    system: sys,
    unit: w.unit,
    rateMedian: median(rates[sys][w.name]),
    processes: Object.fromEntries(Object.entries(samples[sys][w.name]).map(([k, v]) => [k, { user: median(v.map((x) => x[0])), sys: median(v.map((x) => x[1])) }])),
  })),
);
for (const row of table)
  console.log(`${row.workload.padEnd(24)} ${row.system.padEnd(6)} ${row.rateMedian.toFixed(0).padStart(6)}  ${Object.entries(row.processes).map(([k, v]) => `${k} ${v.user.toFixed(0)}+${v.sys.toFixed(0)}`).join(', ')} (${row.unit}, user+sys)`);
let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: path.dirname(new URL(import.meta.url).pathname) }).toString().trim();
} catch {
  // not a checkout
}
await fs.writeFile(outFile, JSON.stringify({ date: new Date().toISOString(), commit, command: process.argv.join(' '), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, rounds, sizeMiB: size / MiB, table, raw: { samples, rates } }, null, 2));
