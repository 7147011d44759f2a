import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RemoteNfs } from '../../src/backends/remote-nfs/remote-nfs.js';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { pushImage } from '../../src/image/push.js';
import { readPublisherKey, writePublisherKey } from '../../src/image/signature.js';
import type { TransferHint } from '../../src/meta/format.js';
import { generateMeta } from '../../src/meta/generate.js';
import type { Credentials } from '../../src/rpc/types.js';
import { AuthFlavor } from '../../src/rpc/types.js';
import { FileStore } from '../../src/store/file-store.js';
import { S3Store } from '../../src/store/s3-store.js';
import { spawnGvfs, type GvfsProcess } from '../../test/helpers/gvfs-proc.js';
import { cephPrereq, startCeph, type Ceph } from '../../test/helpers/ceph.js';
import { checkLink, linkTolerance, PROFILES, startLink, type Link } from '../lib/link-emulator.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';
import { summarize } from '../lib/stats.js';
import { cpuSeconds } from '../lib/proc-cpu.js';
import { seeded } from '../../test/integration/store/guest-versions.js';

const MiB = 1 << 20;


/**
 * Knobs for a focused run (environment, so the command line stays the suite's):
 *   GVFS_BENCH_STORE_SYSTEMS   comma list of systems to measure (default local,store-file,store-ceph)
 *   GVFS_BENCH_STORE_FAILOVER  0: skip the failover runs
 *   GVFS_BENCH_CPU_PROF        a directory: every proxy server and client runs with node --cpu-prof into it
 */
const ONLY = process.env.GVFS_BENCH_STORE_SYSTEMS?.split(',').filter(Boolean);
const asked = (sys: string) => !ONLY || ONLY.includes(sys);
const PROF_ENV: NodeJS.ProcessEnv = process.env.GVFS_BENCH_CPU_PROF ? { GVFS_NODE_FLAGS: `--cpu-prof --cpu-prof-dir=${process.env.GVFS_BENCH_CPU_PROF}` } : {};
const ROOT: Credentials = { flavor: AuthFlavor.AUTH_SYS, uid: 0, gid: 0, gids: [] };
/** The demo guest (scripts/guest/build.sh). */
const GUEST = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'build', 'guest');

/** Transfer hints as `gvfs vm publish` gives them (src/vm/publish.ts): kernel and initrd whole, disk and memory on demand. */
const HINTS: Record<string, TransferHint> = { vmlinuz: 'whole', 'initrd.img': 'whole', 'disk.qcow2': 'ondemand', 'data.bin': 'ondemand', ram: 'ondemand' };

/**
 * Issue 21: a cold clone of the demo guest from a store-backed proxy server
 * against today's local-export state server, over the emulated link between
 * the compute host (proxy client with a new disk cache, meta-data on) and
 * the proxy server. "Clone" = every file of the golden directory read in
 * full through the proxy client's NFS endpoint (1 MiB reads, 4 in flight,
 * file by file), timed from starting the proxy client (its connect and key
 * proof cross the link) to the last byte; each read's bytes are checked
 * against the original afterwards. The golden directory is the demo
 * guest's files plus a 32 MiB memory file (8 MiB of data in 64 KiB runs,
 * the rest zero), with `gvfs meta gen` hints as `gvfs vm publish` sets them;
 * the store holds the same directory pushed with `gvfs image push` (the
 * manifest carries the hints and block hashes).
 *   local        proxy-server --export DIR
 *   store-file   proxy-server --store file:///STORE
 *   store-ceph   proxy-server --store s3://... on a single-node Ceph (radosgw), when it starts
 * Then failover: two store-backed proxy servers (file store) behind their own
 * links, the client given both; the one in use is SIGKILLed half-way; once
 * with A in use, once with B.
 */
export async function storeSuite(ctx: BenchContext, profileName = 'wan'): Promise<SuiteResult> {
  const profile = PROFILES[profileName];
  if (!profile) throw new Error(`unknown link profile ${profileName}`);
  // The comparison is a ratio of interleaved medians over one emulator, so a link a few per cent off (timers firing late
  // on a loaded machine) slows every system alike: measured, said in the notes, not refused.
  const check = await checkLink(profile, linkTolerance(ctx), 5, false);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-store-'));
  const golden = path.join(dir, 'golden');
  await fs.mkdir(golden);
  const procs: GvfsProcess[] = [];
  const links: Link[] = [];
  let ceph: Ceph | undefined;
  const notes: string[] = [];
  try {
    // build/guest is a link into the main checkout: copy its files one by one, never the directory.
    for (const n of Object.keys(HINTS)) if (n !== 'ram') await fs.copyFile(path.join(GUEST, n), path.join(golden, n));
    await fs.copyFile(path.join(GUEST, 'guest.json'), path.join(golden, 'guest.json'));
    const ram = Buffer.alloc(32 * MiB);
    for (let i = 0; i < 128; i++) seeded(64 << 10, `ram-${i}`).copy(ram, ((i * 37) % 512) * (64 << 10));
    await fs.writeFile(path.join(golden, 'ram'), ram);
    for (const [n, hint] of Object.entries(HINTS)) await generateMeta(path.join(golden, n), { root: golden, hint });
    const files = (await fs.readdir(golden)).filter((n) => !n.startsWith('.')).sort();
    const want = new Map(await Promise.all(files.map(async (n) => [n, await fs.readFile(path.join(golden, n))] as const)));
    const goldenBytes = [...want.values()].reduce((s, b) => s + b.length, 0);

    const keyFile = path.join(dir, 'session.key');
    await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
    const { pubFile } = await writePublisherKey(path.join(dir, 'pub'));
    const pub = await readPublisherKey(path.join(dir, 'pub'));
    const storeDir = path.join(dir, 'store');
    const pushed = await pushImage(new FileStore(storeDir), golden, 'guest', pub);
    const secret = path.join(dir, 'handle-secret');
    await fs.writeFile(secret, randomBytes(32), { mode: 0o600 });

    const start = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
      const p = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--key', keyFile, ...args], { ...PROF_ENV, ...env });
      procs.push(p);
      const l = await startLink(profile, { host: '127.0.0.1', port: p.port });
      links.push(l);
      return { p, link: l };
    };
    const storeArgs = (name: string) => ['--store', `file://${storeDir}`, '--trust-publisher', pubFile, '--handle-secret', secret, '--state-dir', path.join(dir, `ps-${name}`)];
    const servers: Record<string, { link: Link; sub: string[]; pid: number }> = {};
    const add = async (sys: string, args: string[], sub: string[], env: NodeJS.ProcessEnv = {}) => {
      const { p, link } = await start(args, env);
      servers[sys] = { link, sub, pid: p.pid };
    };
    if (asked('local')) await add('local', ['--export', golden, '--state-dir', path.join(dir, 'ps-local')], []);
    if (asked('store-file')) await add('store-file', storeArgs('file'), ['guest']);
    const skip = asked('store-ceph') ? cephPrereq() : 'not asked for (GVFS_BENCH_STORE_SYSTEMS)';
    if (skip) notes.push(`store-ceph not measured: ${skip}`);
    else {
      try {
        ceph = await startCeph();
        const s3 = new S3Store({ bucket: 'gvfs-bench', prefix: 'golden', endpoint: ceph.endpoint, accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey });
        await s3.ensureBucket();
        await pushImage(s3, golden, 'guest', pub);
        await s3.close();
        const env = { AWS_ACCESS_KEY_ID: ceph.accessKeyId, AWS_SECRET_ACCESS_KEY: ceph.secretAccessKey };
        await add('store-ceph', ['--store', 's3://gvfs-bench/golden', '--store-endpoint', ceph.endpoint, '--trust-publisher', pubFile, '--state-dir', path.join(dir, 'ps-ceph')], ['guest'], env);
        notes.push(`Ceph (single node, memstore OSD, radosgw) up in ${ceph.startSeconds.toFixed(1)} s`);
      } catch (e) {
        notes.push(`store-ceph not measured: Ceph did not come up (${(e as Error).message.split('\n')[0]})`);
      }
    }

    let round = 0;
    /** CPU seconds of the last clone's proxy client (from its start to its last byte). */
    let lastClientCpu = NaN;
    /** One cold clone through a new proxy client to `serverArg`; `midway` runs once half the bytes are in. Seconds. */
    const clone = async (serverArg: string, sub: string[], extra: string[] = [], midway?: () => void): Promise<number> => {
      const cacheDir = path.join(dir, `cache-${round++}`);
      const t0 = performance.now();
      const pc = await spawnGvfs(['proxy-client', '--listen', '127.0.0.1:0', '--server', serverArg, '--key', keyFile, '--cache-dir', cacheDir, ...extra], PROF_ENV);
      const nfs = new RemoteNfs({ host: '127.0.0.1', port: pc.port, timeoutMs: 300_000, maxInFlight: 8 });
      try {
        let d = (await nfs.mount('/', ROOT)).fh;
        for (const s of sub) d = (await nfs.lookup(ROOT, d, s)).fh;
        const got = new Map<string, Buffer>();
        let done = 0;
        let fired = false;
        for (const n of files) {
          const fh = (await nfs.lookup(ROOT, d, n)).fh;
          const size = want.get(n)!.length;
          const out = Buffer.alloc(size);
          const offs: number[] = [];
          for (let off = 0; off < size; off += MiB) offs.push(off);
          const worker = async () => {
            for (let off = offs.shift(); off !== undefined; off = offs.shift()) {
              if (midway && !fired && done >= goldenBytes / 2) {
                fired = true;
                midway();
              }
              const r = await nfs.read(ROOT, fh, off, MiB);
              r.data.copy(out, off, 0, r.count);
              done += r.count;
            }
          };
          await Promise.all([worker(), worker(), worker(), worker()]);
          got.set(n, out);
        }
        const s = (performance.now() - t0) / 1000;
        lastClientCpu = await cpuSeconds(pc.pid);
        for (const [n, b] of got) if (!b.equals(want.get(n)!)) throw new Error(`${serverArg}: ${n} differs from the golden file`);
        if (midway && !fired) throw new Error('the failure was never injected');
        return s;
      } finally {
        await nfs.close();
        await pc.stop();
        await fs.rm(cacheDir, { recursive: true, force: true });
      }
    };

    const systems = Object.keys(servers);
    const serverCpu = new Map<string, number[]>(systems.map((x) => [x, []]));
    const clientCpu = new Map<string, number[]>(systems.map((x) => [x, []]));
    const benchCpu = new Map<string, number[]>(systems.map((x) => [x, []]));
    const res = await ctx.compare(`store-${profile.name}`, systems, [
      {
        name: `cold clone: every file of the golden directory (${(goldenBytes / MiB).toFixed(1)} MiB) through a new proxy client`,
        unit: 's',
        better: 'lower',
        run: async (sys) => {
          const before = await cpuSeconds(servers[sys].pid);
          const own = process.cpuUsage();
          const s = await clone(`127.0.0.1:${servers[sys].link.port}`, servers[sys].sub);
          const srv = (await cpuSeconds(servers[sys].pid)) - before;
          const ownUsed = process.cpuUsage(own);
          benchCpu.get(sys)!.push((ownUsed.user + ownUsed.system) / 1e6);
          serverCpu.get(sys)!.push(srv);
          clientCpu.get(sys)!.push(lastClientCpu);
          process.stderr.write(`    ${sys}: ${s.toFixed(2)} s; CPU proxy server ${srv.toFixed(2)} s, proxy client ${lastClientCpu.toFixed(2)} s, bench process ${benchCpu.get(sys)!.at(-1)!.toFixed(2)} s\n`);
          return s;
        },
      },
    ]);
    res.baseline = systems.includes('local') ? 'local' : systems[0];
    const cpuRow = (name: string, m: Map<string, number[]>) =>
      res.workloads.push({ name, unit: 's', better: 'lower', systems: Object.fromEntries(systems.map((x) => [x, summarize(m.get(x)!)])) });
    cpuRow('CPU of the proxy server per cold clone (user + system, /proc)', serverCpu);
    cpuRow('CPU of the proxy client per cold clone (user + system, from its start)', clientCpu);
    cpuRow('CPU of the bench process per cold clone (link emulator, NFS reader, byte checks)', benchCpu);
    cpuRow('CPU of proxy server + client per cold clone', new Map(systems.map((x) => [x, serverCpu.get(x)!.map((v, i) => v + clientCpu.get(x)![i])])));

    // Failover: two store-backed servers on one store, each behind its own link; the one in use is killed half-way.
    const failover = process.env.GVFS_BENCH_STORE_FAILOVER !== '0' && systems.includes('store-file');
    const pair = failover ? [await start(storeArgs('fa')), await start(storeArgs('fb'))] : [];
    const killed: Record<string, number[]> = { 'A killed': [], 'B killed': [] };
    for (let r = 0; failover && r < ctx.runs; r++) {
      for (const [label, first] of [['A killed', 0], ['B killed', 1]] as const) {
        const order = first === 0 ? pair : [pair[1], pair[0]];
        const victim = order[0].p;
        const s = await clone(order.map((x) => `127.0.0.1:${x.link.port}`).join(','), ['guest'], ['--timeout', '20000'], () => victim.proc.kill('SIGKILL'));
        killed[label].push(s);
        process.stderr.write(`    failover (${label}): ${s.toFixed(2)} s, bytes identical\n`);
        // Bring the victim back on the same port behind its link (a new process; same store, secret, state).
        await victim.stop();
        const name = first === 0 ? 'fa' : 'fb';
        const again = await spawnGvfs(['proxy-server', '--listen', `127.0.0.1:${victim.port}`, '--key', keyFile, ...storeArgs(name)]);
        procs.push(again);
        order[0].p = again;
      }
    }
    // Same system columns as the first workload (the report's table): the failover runs are store-file's; NaN elsewhere.
    if (failover) res.workloads.push({
      name: 'the same clone from two store-backed servers (file store, each behind its own link), the one in use SIGKILLed half-way (A in use, then B, each run)',
      unit: 's',
      better: 'lower',
      systems: Object.fromEntries(systems.map((sys) => [sys, summarize(sys === 'store-file' ? [...killed['A killed'], ...killed['B killed']] : [NaN])])),
    });

    const med = (sys: string) => res.workloads[0].systems[sys]?.median ?? NaN;
    if (check.warning) res.notes.push(`WARNING: the emulated link measured outside ${linkTolerance(ctx) * 100} % of its setting before the runs (RTT ${check.rttMs.toFixed(2)} ms, ${check.mbitPerSec.toFixed(1)} Mbit/s; a loaded machine's timers fire late); every system ran over the same emulator`);
    res.notes.push(`link ${profile.name}: ${profile.rttMs} ms RTT, ${profile.bitsPerSec / 1e6} Mbit/s between the proxy client and each proxy server; measured ${check.rttMs.toFixed(2)} ms, ${check.mbitPerSec.toFixed(1)} Mbit/s`);
    res.notes.push(`golden directory: ${files.map((n) => `${n} ${(want.get(n)!.length / MiB).toFixed(1)} MiB`).join(', ')}; hints: ${Object.entries(HINTS).map(([n, h]) => `${n} ${h}`).join(', ')}; pushed: ${pushed.uniqueChunks} chunks, ${(pushed.storedBytes / MiB).toFixed(1)} MiB stored`);
    for (const sys of systems.filter((s) => s !== 'local')) res.notes.push(`${sys} / local = ${(med(sys) / med('local')).toFixed(3)} (target <= 1.1)`);
    res.notes.push(`failover: ${Object.entries(killed).map(([k, v]) => `${k} ${v.map((x) => x.toFixed(2)).join(', ')} s`).join('; ')}; every clone's bytes identical to the golden files; against store-file's cold clone ${med('store-file').toFixed(2)} s`);
    res.notes.push(...notes);
    // What else ran is not ours to know: the load average says how busy the machine was (2 cores here).
    res.notes.push(`runs interleaved (system order rotates each run), ${ctx.runs} runs; load average (1/5/15 min) at the end ${os.loadavg().map((x) => x.toFixed(2)).join('/')} on ${os.cpus().length} cores: on a busy machine absolute times are noisy, ratios of interleaved medians less so`);
    return res;
  } finally {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    for (const l of links) await l.close().catch(() => undefined);
    await ceph?.stop().catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}
