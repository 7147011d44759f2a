#!/usr/bin/env node
// One READ at a time, `gvfs serve` against nfs-ganesha exporting the same 1 GiB file: each server's rate, p50
// latency, CPU per READ (user and system, /proc/PID/stat) and context switches per READ (all its threads),
// ROUNDS alternating rounds (default 5), random 4 KiB and sequential 1 MiB. PERF=1: then `perf record -g` of
// each server through 60000 more random READs, into OUT_DIR/perf-<server>.data (the gvfs server runs with
// --perf-basic-prof so its JavaScript has names; perf is Debian's linux-perf, which setup does not install).
// Writes OUT_DIR/x1.txt. Run from a built tree (dist/).
// Usage: [ROUNDS=5] [PERF=1] node bench/tools/serve-x1-cpu.mjs OUT_DIR
import fs from 'node:fs/promises'; import os from 'node:os'; import path from 'node:path'; import { spawn } from 'node:child_process';
const dist = new URL('../../dist', import.meta.url).pathname;
const { startGanesha } = await import(`${dist}/test/helpers/ganesha.js`);
const { spawnGvfs } = await import(`${dist}/test/helpers/gvfs-proc.js`);
const { nfsbench } = await import(`${dist}/bench/lib/libnfs-client.js`);
const { randomFile } = await import(`${dist}/bench/lib/files.js`);
const out = process.argv[2];
if (!out) throw new Error('usage: serve-x1-cpu.mjs OUT_DIR');
await fs.mkdir(out, { recursive: true });
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'x1-')); const exp = path.join(dir, 'export'); await fs.mkdir(exp);
const size = 1 << 30; await randomFile(path.join(exp, 'read.bin'), size);
const gv = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(dir, 'state')], process.env.PERF ? { NODE_OPTIONS: '--perf-basic-prof' } : {});
const gan = await startGanesha({ dir: exp, workDir: path.join(dir, 'ganesha') });
const sys = { gvfs: { e: { nfsPort: gv.port, mountPort: gv.port, exportPath: '/' }, pid: gv.pid }, ganesha: { e: { nfsPort: gan.port, mountPort: gan.mountPort, exportPath: gan.exportPath }, pid: gan.pid } };
const tck = 100; // USER_HZ
async function usage(pid) {
  const st = (await fs.readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  let vol = 0, inv = 0;
  for (const t of await fs.readdir(`/proc/${pid}/task`)) {
    const s = await fs.readFile(`/proc/${pid}/task/${t}/status`, 'utf8').catch(() => '');
    vol += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)?.[1] ?? 0); inv += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(s)?.[1] ?? 0);
  }
  return { u: Number(st[11]) / tck, s: Number(st[12]) / tck, vol, inv };
}
const work = [
  { name: 'random 4 KiB x1', a: { op: 'randread', file: 'read.bin', size, ops: 40000, depth: 1 }, per: (o) => o.ops },
  { name: 'seq 1 MiB x1', a: { op: 'seqread', file: 'read.bin', size, xfer: 1 << 20, depth: 1 }, per: (o) => o.ops },
];
const lines = [];
const log = (s) => { console.log(s); lines.push(s); };
try {
  for (const w of work) {
    const r = { gvfs: [], ganesha: [] };
    for (const s of ['gvfs', 'ganesha']) await nfsbench({ ...sys[s].e, ...w.a }); // warm-up
    for (let i = 0; i < Number(process.env.ROUNDS ?? 5); i++) for (const s of i % 2 ? ['ganesha', 'gvfs'] : ['gvfs', 'ganesha']) {
      const b = await usage(sys[s].pid); const o = await nfsbench({ ...sys[s].e, ...w.a }); const a = await usage(sys[s].pid);
      const n = w.per(o);
      r[s].push({ rate: o.ops_per_s ?? o.mib_per_s, p50: o.lat_us_p50, user: ((a.u - b.u) * 1e6) / n, sys: ((a.s - b.s) * 1e6) / n, vol: (a.vol - b.vol) / n, inv: (a.inv - b.inv) / n });
    }
    const med = (xs, k) => [...xs.map((x) => x[k])].sort((p, q) => p - q)[xs.length >> 1];
    for (const s of ['gvfs', 'ganesha']) log(`${w.name} ${s}: rate ${med(r[s], 'rate').toFixed(0)} (${r[s].map((x) => x.rate.toFixed(0)).join(' ')}), p50 ${med(r[s], 'p50')} us, server CPU per op: user ${med(r[s], 'user').toFixed(1)} us, sys ${med(r[s], 'sys').toFixed(1)} us, voluntary switches ${med(r[s], 'vol').toFixed(2)}, involuntary ${med(r[s], 'inv').toFixed(2)}`);
    log(`${w.name} ratio gvfs/ganesha ${(med(r.gvfs, 'rate') / med(r.ganesha, 'rate')).toFixed(3)}`);
  }
  if (process.env.PERF) for (const s of ['gvfs', 'ganesha']) {
    const f = path.join(out, `perf-${s}.data`);
    const p = spawn('perf', ['record', '-F', '4999', '-g', '-o', f, '-p', String(sys[s].pid)], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 500));
    await nfsbench({ ...sys[s].e, ...work[0].a, ops: 60000 });
    p.kill('SIGINT'); await new Promise((r) => p.on('exit', r));
  }
} finally { await gv.stop(); await gan.stop(); await fs.rm(dir, { recursive: true, force: true }); await fs.writeFile(path.join(out, 'x1.txt'), lines.join('\n') + '\n'); }
