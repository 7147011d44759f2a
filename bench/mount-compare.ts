/**
 * `gvfs mount` of two (or more) builds side by side, for a loaded machine:
 * the mount suite's four workloads (small files, seq read, seq write,
 * metadata loop) in interleaved rounds (build order rotating each round),
 * the local disk as the reference, and per workload the wall time, the CPU
 * seconds of the mount process and of its proxy server (/proc/PID/stat:
 * they move far less with the load than wall time), and — in a counting
 * pass before the rounds — the FUSE requests by opcode and the server's NFS
 * calls by procedure for the small-file workload.
 *
 *   node dist/bench/mount-compare.js ROUNDS OUT.json BUILD_DIR...
 *   e.g. node dist/bench/mount-compare.js 5 /tmp/cmp.json /tmp/base18 /work/wt/small18
 *
 * Each BUILD_DIR is a checkout with its own dist/ and native/build; each
 * build mounts its own proxy server (same export directory, session key,
 * loopback). Environment: MOUNT_CMP_FILES (small files, default 1000),
 * MOUNT_CMP_MIB (seq file size, default 128), MOUNT_CMP_META (metadata
 * loops, default 500), MOUNT_CMP_ONLY (regular expression over workload
 * names), MOUNT_CMP_NODE_OPTIONS (NODE_OPTIONS for the mount processes, e.g.
 * the cpu-prof preload of bench/lib/cpu-prof.ts).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { packSmallFileTree, randomFile } from './lib/files.js';
import { cpuSeconds } from './lib/proc-cpu.js';

const run = promisify(execFile);
const MiB = 1 << 20;
const [roundsArg, outFile, ...builds] = process.argv.slice(2);
if (!roundsArg || !outFile || builds.length === 0) {
  console.error('usage: mount-compare.js ROUNDS OUT.json BUILD_DIR...');
  process.exit(2);
}
const rounds = Number(roundsArg);
const nFiles = Number(process.env.MOUNT_CMP_FILES ?? 1000);
const size = Number(process.env.MOUNT_CMP_MIB ?? 128) * MiB;
const nMeta = Number(process.env.MOUNT_CMP_META ?? 500);
const only = process.env.MOUNT_CMP_ONLY ? new RegExp(process.env.MOUNT_CMP_ONLY) : undefined;

/** CPU seconds of a process so far (0 for none). */
const cpuOf = (pid: number | undefined): Promise<number> => (pid ? cpuSeconds(pid) : Promise.resolve(0));

async function dropCaches(): Promise<void> {
  await run('sync');
  await fs.writeFile('/proc/sys/vm/drop_caches', '3').catch(() => undefined);
}

interface Proc {
  proc: ChildProcess;
  info: any;
  lines: string[];
  stop(): Promise<void>;
}

/** `node BUILD/dist/src/cli/main.js ARGS --json`, once its first stdout line is out. */
async function gvfs(build: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Proc> {
  const proc = spawn(process.execPath, [path.join(build, 'dist', 'src', 'cli', 'main.js'), ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const lines: string[] = [];
  createInterface({ input: proc.stderr! }).on('line', (l) => lines.push(l));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve);
    proc.once('exit', (c) => reject(new Error(`gvfs ${args[0]} exited with ${c}:\n${lines.join('\n')}`)));
  });
  return {
    proc,
    info: JSON.parse(line),
    lines,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 60_000);
      await once(proc, 'exit');
      clearTimeout(t);
    },
  };
}

/** The server's NFS calls by procedure, from its Prometheus text. */
async function serverCalls(m: { address: string; port: number }): Promise<Record<string, number>> {
  const text = await (await fetch(`http://${m.address}:${m.port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^gvfs_rpc_calls_total\{([^}]*)\} (\S+)$/gm)) {
    const proc = /procedure="([^"]*)"/.exec(m[1])?.[1] ?? '?';
    const prog = /program="([^"]*)"/.exec(m[1])?.[1] ?? '?';
    const k = `${prog}.${proc}`;
    out[k] = (out[k] ?? 0) + Number(m[2]);
  }
  return out;
}

const diff = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v - (a[k] ?? 0)]).filter(([, v]) => (v as number) > 0));

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-mount-cmp-'));
const exp = path.join(dir, 'export');
await fs.mkdir(exp);
await randomFile(path.join(exp, 'read.bin'), size);
// The mount suite's small-file tree, packed once.
const tarFile = await packSmallFileTree(dir, nFiles);

// The bench's own key file (format of src/channel/session-key.ts), written by the first build.
const keyFile = path.join(dir, 'session.key');
{
  const { newSessionKey, writeKeyFile } = await import(path.join(builds[builds.length - 1], 'dist', 'src', 'channel', 'session-key.js'));
  await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
}

interface Sys {
  name: string;
  build?: string;
  server?: Proc;
  mount?: Proc;
  root: string;
}
const systems: Sys[] = [{ name: 'local', root: exp }];
const mountEnv = process.env.MOUNT_CMP_NODE_OPTIONS ? { NODE_OPTIONS: process.env.MOUNT_CMP_NODE_OPTIONS } : {};

async function mountOf(s: Sys): Promise<Proc> {
  const mnt = path.join(dir, `mnt-${s.name}`);
  await fs.mkdir(mnt, { recursive: true });
  return gvfs(s.build!, ['mount', '--server', `127.0.0.1:${s.server!.info.listening.port}`, '--key', keyFile, mnt, '--foreground'], { GVFS_LOG_LEVEL: 'info', ...mountEnv });
}

/** The mount's stats line at its exit: FUSE requests by opcode. */
async function stopForOps(m: Proc): Promise<Record<string, number>> {
  await m.stop();
  for (const l of m.lines.reverse()) {
    try {
      const j = JSON.parse(l);
      if (j.stats?.ops) return j.stats.ops;
    } catch {
      /* not JSON */
    }
  }
  return {};
}

const result: any = { date: new Date().toISOString(), builds: {}, load: [] as number[][], counts: {}, rounds: [] as any[], nFiles, sizeMiB: size / MiB, nMeta };
try {
  for (const [i, b] of builds.entries()) {
    const name = `b${i}:${path.basename(b)}`;
    const commit = execFileSync('git', ['-C', b, 'rev-parse', '--short', 'HEAD']).toString().trim();
    const dirty = execFileSync('git', ['-C', b, 'status', '--porcelain', '--untracked-files=no']).toString().trim() !== '';
    result.builds[name] = { dir: b, commit, dirty };
    const server = await gvfs(b, ['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, `ps-${i}`), '--metrics', '127.0.0.1:0']);
    systems.push({ name, build: b, server, root: '' });
  }

  // Counting pass: one fresh mount per phase, so its exit stats are that phase's requests.
  if (!only || only.test('small files')) {
    for (const s of systems.slice(1)) {
      const c: any = {};
      let m = await mountOf(s);
      const d = path.join(m.info.mounted, 'count');
      await fs.mkdir(d);
      let calls0 = await serverCalls(s.server!.info.metrics);
      await run('tar', ['-C', d, '-xf', tarFile]);
      c.extract = { fuse: await stopForOps(m), nfs: diff(calls0, await serverCalls(s.server!.info.metrics)) };
      await dropCaches();
      m = await mountOf(s);
      calls0 = await serverCalls(s.server!.info.metrics);
      await run('sh', ['-c', `tar -C '${path.join(m.info.mounted, 'count')}' -cf - tree | cat > /dev/null`]);
      c.readBack = { fuse: await stopForOps(m), nfs: diff(calls0, await serverCalls(s.server!.info.metrics)) };
      await fs.rm(path.join(exp, 'count'), { recursive: true });
      result.counts[s.name] = c;
      console.error(`${s.name} counts (${nFiles} files): ${JSON.stringify(c)}`);
    }
  }

  for (const s of systems.slice(1)) {
    s.mount = await mountOf(s);
    s.root = s.mount.info.mounted;
  }

  let n = 0;
  const workloads: Array<{ name: string; unit: string; run: (root: string) => Promise<{ value: number; secs: number; extra?: any }> }> = [
    {
      name: `small files: tar -x ${nFiles} then read all back`,
      unit: 'files/s',
      run: async (root: string) => {
        const d = path.join(root, `small-${n++}`);
        await fs.mkdir(d);
        const t0 = performance.now();
        await run('tar', ['-C', d, '-xf', tarFile]);
        const tx = (performance.now() - t0) / 1000;
        await dropCaches();
        const t1 = performance.now();
        await run('sh', ['-c', `tar -C '${d}' -cf - tree | cat > /dev/null`]);
        const tr = (performance.now() - t1) / 1000;
        await run('rm', ['-rf', d]);
        return { value: (2 * nFiles) / (tx + tr), secs: tx + tr, extra: { extractS: tx, readBackS: tr } };
      },
    },
    {
      name: `seq read ${size / MiB} MiB (dd bs=1M)`,
      unit: 'MiB/s',
      run: async (root: string) => {
        await dropCaches();
        const t0 = performance.now();
        await run('dd', [`if=${root}/read.bin`, 'of=/dev/null', 'bs=1M', 'status=none']);
        const t = (performance.now() - t0) / 1000;
        return { value: size / MiB / t, secs: t };
      },
    },
    {
      name: `seq write ${size / MiB} MiB (dd bs=1M conv=fsync)`,
      unit: 'MiB/s',
      run: async (root: string) => {
        const out = `${root}/write-${n++}.bin`;
        const t0 = performance.now();
        await run('dd', ['if=/dev/zero', `of=${out}`, 'bs=1M', `count=${size / MiB}`, 'conv=fsync', 'status=none']);
        const t = (performance.now() - t0) / 1000;
        await fs.rm(out);
        return { value: size / MiB / t, secs: t };
      },
    },
    {
      name: `metadata loop: ${nMeta} x (create, stat, chmod, rename, stat, unlink)`,
      unit: 'loops/s',
      run: async (root: string) => {
        const d = path.join(root, `meta-${n++}`);
        await fs.mkdir(d);
        const script = `import os,sys\nd=sys.argv[1]\nfor i in range(int(sys.argv[2])):\n  a=f'{d}/f{i}'; b=f'{d}/g{i}'\n  os.close(os.open(a,os.O_CREAT|os.O_WRONLY,0o644)); os.stat(a); os.chmod(a,0o600); os.rename(a,b); os.stat(b); os.unlink(b)`;
        const t0 = performance.now();
        await run('python3', ['-c', script, d, String(nMeta)]);
        const t = (performance.now() - t0) / 1000;
        await fs.rmdir(d);
        return { value: nMeta / t, secs: t };
      },
    },
  ].filter((w) => !only || only.test(w.name));

  for (let r = 0; r < rounds; r++) {
    result.load.push(os.loadavg());
    for (const w of workloads) {
      // Rotate the order of the mounted builds each round; local first (the reference).
      const mounted = systems.slice(1);
      const order = [systems[0], ...mounted.slice(r % mounted.length), ...mounted.slice(0, r % mounted.length)];
      for (const s of order) {
        const mc0 = await cpuOf(s.mount?.proc.pid);
        const sc0 = await cpuOf(s.server?.proc.pid);
        const x = await w.run(s.root);
        const row = { round: r, workload: w.name, unit: w.unit, system: s.name, ...x, mountCpuS: (await cpuOf(s.mount?.proc.pid)) - mc0, serverCpuS: (await cpuOf(s.server?.proc.pid)) - sc0, load1: os.loadavg()[0] };
        result.rounds.push(row);
        console.error(`round ${r} ${w.name} ${s.name}: ${x.value.toFixed(1)} ${w.unit} (${x.secs.toFixed(2)} s; mount CPU ${row.mountCpuS.toFixed(2)} s, server CPU ${row.serverCpuS.toFixed(2)} s, load ${row.load1.toFixed(1)})`);
      }
    }
    await fs.writeFile(outFile, JSON.stringify(result, null, 1));
  }

  // Medians per workload and system; ratio of each build to the first, per round, then its median.
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  result.summary = workloads.map((w) => {
    const rows = result.rounds.filter((x: any) => x.workload === w.name);
    const per: any = {};
    for (const s of systems) {
      const mine = rows.filter((x: any) => x.system === s.name);
      per[s.name] = { value: median(mine.map((x: any) => x.value)), mountCpuS: median(mine.map((x: any) => x.mountCpuS)), serverCpuS: median(mine.map((x: any) => x.serverCpuS)) };
    }
    const base = systems[1]?.name;
    for (const s of systems.slice(2)) {
      const ratios = [];
      for (let r = 0; r < rounds; r++) {
        const a = rows.find((x: any) => x.round === r && x.system === base);
        const b = rows.find((x: any) => x.round === r && x.system === s.name);
        if (a && b) ratios.push(b.value / a.value);
      }
      per[s.name].ratioToFirst = ratios.map((x) => +x.toFixed(3));
      per[s.name].medianRatio = +median(ratios).toFixed(3);
    }
    return { workload: w.name, unit: w.unit, ...per };
  });
  await fs.writeFile(outFile, JSON.stringify(result, null, 1));
  console.log(JSON.stringify(result.summary, null, 1));
} finally {
  for (const s of systems.slice(1)) {
    await s.mount?.stop().catch(() => undefined);
    await s.server?.stop().catch(() => undefined);
  }
  await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
}
