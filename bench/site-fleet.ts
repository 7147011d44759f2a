/**
 * Issue 22's measurement: HOSTS compute hosts of one site clone the demo
 * guest at once from a store-backed proxy server across an emulated
 * wide-area link (bench/lib/link-emulator.ts profile wan: 40 ms RTT,
 * 200 Mbit/s), with and without a site cache tier on the site's LAN.
 *
 *   node dist/bench/site-fleet.js [HOSTS=8] [OUT.json]   (also writes OUT-N.svg, one chart per figure)
 *   node dist/bench/site-fleet.js --charts OUT.json      (the charts of a results file written before)
 *
 * The store is a single-node Ceph (radosgw) beside the proxy server (the
 * "state" side). Each host is a `gvfs proxy-client` process with its own
 * cache directory and --trust-publisher (chunks by hash); a clone is our
 * NFS client reading every file of the image through it, 1 MiB at a time,
 * checked against the source. The tier (`gvfs cache-server`) reaches the
 * store through a second link of the same profile: wide-area bytes are the
 * sum over both links, both directions. With TIER_UPSTREAM_KIND=proxy the
 * tier's upstream is the proxy server itself (`--upstream gvfs://...`, over
 * a session of its own, across that second link) instead of the store.
 *
 * Runs: one host alone (the cold-clone reference), HOSTS without the tier,
 * HOSTS with it. Every simulated host connects from 127.0.0.1, so the
 * tier's per-peer connection limit is raised (one peer here is HOSTS hosts). Prints and writes JSON: wall time until every clone is
 * done, wide-area bytes, proxy-server calls (all, GET_CHUNK, STORE_FILE).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RemoteNfs } from '../src/backends/remote-nfs/remote-nfs.js';
import { newSessionKey, writeKeyFile } from '../src/channel/session-key.js';
import { SessionRegistry } from '../src/channel/sessions.js';
import { pushImage } from '../src/image/push.js';
import { readPublisherKey, readTrustedKeys, writePublisherKey } from '../src/image/signature.js';
import { createProxyServer } from '../src/proxy/proxy-server.js';
import { AuthFlavor, type Credentials } from '../src/rpc/types.js';
import { S3Store } from '../src/store/s3-store.js';
import { PROFILES, startLink, type Link } from './lib/link-emulator.js';
import { startCeph } from '../test/helpers/ceph.js';
import { spawnGvfs, type GvfsProcess } from '../test/helpers/gvfs-proc.js';
import { cpuSeconds } from './lib/proc-cpu.js';
import { workloadSvg } from './lib/chart.js';
import { summarize } from './lib/stats.js';
import { GUEST } from '../test/integration/store/guest-versions.js';

const ROOT: Credentials = { flavor: AuthFlavor.AUTH_SYS, uid: 0, gid: 0, gids: [] };
const HOSTS = Number(process.argv[2] ?? 8);
const OUT = process.argv[3];
/** The tier's upstream fetches at once: enough to fill the wide-area link's bandwidth-delay product with 64 KiB chunks. */
const TIER_UPSTREAM = Number(process.env.TIER_UPSTREAM ?? 64);
/** store: the tier fetches from radosgw; proxy: from the store-backed proxy server (GET_CHUNK, the tier's own session). */
const TIER_UPSTREAM_KIND = process.env.TIER_UPSTREAM_KIND === 'proxy' ? 'proxy' : 'store';

interface Run {
  label: string;
  hosts: number;
  tier: boolean;
  wallMs: number;
  perHostMs: number[];
  wanBytes: number;
  wanDown: number;
  serverCalls: number;
  getChunk: number;
  storeFile: number;
  tierStats?: unknown;
  hostTotals?: Record<string, number>;
  /**
   * CPU seconds used during the clones (user + system, /proc): the host processes, the tier, Ceph's daemons,
   * and this process (proxy server, link emulators, NFS readers). perWallSecond near the core count: the run
   * was bound by this machine's CPU, not by the link.
   */
  cpu?: { hostsS: number; tierS: number; cephS: number; benchS: number; totalS: number; perWallSecond: number; cores: number };
}

async function main(): Promise<void> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-site-fleet-'));
  const ceph = await startCeph();
  const procs: GvfsProcess[] = [];
  const links: Link[] = [];
  try {
    const env = { AWS_ACCESS_KEY_ID: ceph.accessKeyId, AWS_SECRET_ACCESS_KEY: ceph.secretAccessKey };
    const s3 = (endpoint = ceph.endpoint) => new S3Store({ bucket: 'gvfs-fleet', prefix: 'golden', endpoint, accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey });
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    const push = s3();
    await push.ensureBucket();
    const pushed = await pushImage(push, GUEST, 'guest', await readPublisherKey(path.join(work, 'pub')));
    await push.close();
    // What a clone must produce (the demo guest is read, never written: build/guest is shared).
    const want = new Map<string, string>();
    for (const n of await fs.readdir(GUEST)) want.set(n, createHash('sha256').update(await fs.readFile(path.join(GUEST, n))).digest('hex'));
    const plainBytes = [...(await Promise.all([...want.keys()].map((n) => fs.stat(path.join(GUEST, n)))))].reduce((s, st) => s + st.size, 0);

    const key = newSessionKey('alice');
    const keyFile = path.join(work, 'alice.key');
    await writeKeyFile(keyFile, key);
    const tierKey = newSessionKey('site-tier');
    const tierKeyFile = path.join(work, 'tier.key');
    await writeKeyFile(tierKeyFile, tierKey);
    const ps = await createProxyServer({
      exports: [{ kind: 'store', store: s3(), trusted: await readTrustedKeys([pubFile]) }],
      sessions: new SessionRegistry([key, tierKey]),
      map: new Map([['alice', { uid: 0, gid: 0, gids: [] }], ['site-tier', { uid: 65534, gid: 65534, gids: [] }]]),
      stateDir: path.join(work, 'ps'),
    });
    const psPort = (await ps.listen(0, '127.0.0.1')).port;
    const rgwPort = Number(new URL(ceph.endpoint).port);

    const runs: Run[] = [];
    const measure = async (label: string, hosts: number, tier: boolean): Promise<Run> => {
      const toServer = await startLink(PROFILES.wan, { host: '127.0.0.1', port: psPort });
      // The tier's own wide-area link: to the store, or to the proxy server (TIER_UPSTREAM_KIND=proxy).
      const toStore = await startLink(PROFILES.wan, { host: '127.0.0.1', port: TIER_UPSTREAM_KIND === 'proxy' ? psPort : rgwPort });
      links.push(toServer, toStore);
      const mine: GvfsProcess[] = [];
      let t: GvfsProcess | undefined;
      if (tier) {
        const upstream = TIER_UPSTREAM_KIND === 'proxy' ? ['--upstream', `gvfs://127.0.0.1:${toStore.port}`, '--upstream-key', tierKeyFile] : ['--upstream', 's3://gvfs-fleet/golden', '--store-endpoint', `http://127.0.0.1:${toStore.port}`];
        t = await spawnGvfs(['cache-server', '--listen', '127.0.0.1:0', ...upstream, '--cache-dir', path.join(work, `${label}-tier`), '--insecure', '--max-upstream', String(TIER_UPSTREAM), '--max-connections-per-peer', '512'], env);
        mine.push(t);
      }
      const clients = await Promise.all(
        Array.from({ length: hosts }, (_, i) =>
          spawnGvfs([
            'proxy-client', '--listen', '127.0.0.1:0', '--server', `127.0.0.1:${toServer.port}`, '--key', keyFile, '--no-meta', '--timeout', '120000',
            '--cache-dir', path.join(work, `${label}-host${i}`), '--cache-size', '1G', '--trust-publisher', pubFile,
            ...(t ? ['--site-cache', `127.0.0.1:${t.port}`, '--site-timeout', '10000'] : []),
          ]),
        ),
      );
      mine.push(...clients);
      procs.push(...mine);
      const cpuNow = async () => {
        const sum = async (pids: number[]) => (await Promise.all(pids.map((p) => cpuSeconds(p).catch(() => 0)))).reduce((a, b) => a + b, 0);
        const self = process.cpuUsage();
        return { hosts: await sum(clients.map((c) => c.pid)), tier: t ? await sum([t.pid]) : 0, ceph: await sum(ceph.pids()), bench: (self.user + self.system) / 1e6 };
      };
      const cpu0 = await cpuNow();
      const before = { calls: ps.server.stats.calls, chunks: ps.chunks.c.chunks, files: ps.chunks.c.storeFiles };
      const b0 = { s: toServer.bytes(), t: toStore.bytes() };
      const t0 = performance.now();
      const perHostMs = await Promise.all(clients.map((c) => clone(c.port, want, t0)));
      const wallMs = performance.now() - t0;
      const cpu1 = await cpuNow();
      const d = (k: keyof typeof cpu0) => +(cpu1[k] - cpu0[k]).toFixed(2);
      const totalS = +(d('hosts') + d('tier') + d('ceph') + d('bench')).toFixed(2);
      const cpu = { hostsS: d('hosts'), tierS: d('tier'), cephS: d('ceph'), benchS: d('bench'), totalS, perWallSecond: +(totalS / (wallMs / 1000)).toFixed(2), cores: os.cpus().length };
      const s = toServer.bytes();
      const st = toStore.bytes();
      const wanDown = s.down - b0.s.down + (st.down - b0.t.down);
      const wanBytes = wanDown + (s.up - b0.s.up) + (st.up - b0.t.up);
      let tierStats: unknown;
      if (t) tierStats = await fetch(`http://127.0.0.1:${t.port}/v1/stats`).then((r) => r.json()).catch((e: Error) => ({ error: e.message }));
      const r: Run = { label, hosts, tier, wallMs: Math.round(wallMs), perHostMs: perHostMs.map(Math.round), wanBytes, wanDown, serverCalls: ps.server.stats.calls - before.calls, getChunk: ps.chunks.c.chunks - before.chunks, storeFile: ps.chunks.c.storeFiles - before.files, tierStats, cpu };
      for (const p of mine) await p.stop().catch(() => {});
      // Each host's own account of where its chunks came from (the line the chunk reader logs when it closes).
      const hostStats = clients.map((c) => c.lines.find((l) => l.msg === 'chunk reader closed'));
      const sum = (k: string) => hostStats.reduce((s, h) => s + Number(h?.[k] ?? 0), 0);
      r.hostTotals = { tierHits: sum('tierHits'), tierRefused: sum('tierRefused'), serverFetches: sum('serverFetches'), memHits: sum('memHits'), coalesced: sum('coalesced'), tierFailed: hostStats.reduce((s, h) => s + Number(h?.site?.failed ?? 0), 0) };
      console.log(JSON.stringify({ ...r, tierStats: undefined }));
      await toServer.close();
      await toStore.close();
      return r;
    };
    runs.push(await measure('one-cold', 1, false));
    runs.push(await measure(`${HOSTS}-no-tier`, HOSTS, false));
    runs.push(await measure(`${HOSTS}-tier`, HOSTS, true));
    const one = runs[0];
    const noTier = runs[1];
    const withTier = runs[2];
    const result = {
      commit: process.env.GVFS_COMMIT ?? null,
      git: await gitState(),
      when: new Date().toISOString(),
      machine: `${os.cpus().length} cores, loopback, link ${JSON.stringify(PROFILES.wan)}`,
      tierUpstream: TIER_UPSTREAM_KIND,
      loadAverage: os.loadavg(),
      image: { files: want.size, plainBytes, storedChunks: pushed },
      runs,
      ratios: {
        tierWanBytesVsOneCold: +(withTier.wanBytes / one.wanBytes).toFixed(3),
        tierTimeVsOneCold: +(withTier.wallMs / one.wallMs).toFixed(3),
        noTierWanBytesVsOneCold: +(noTier.wanBytes / one.wanBytes).toFixed(3),
        noTierTimeVsOneCold: +(noTier.wallMs / one.wallMs).toFixed(3),
        serverCallsNoTierVsTier: +(noTier.serverCalls / Math.max(1, withTier.serverCalls)).toFixed(2),
      },
    };
    console.log(JSON.stringify(result.ratios));
    if (OUT) {
      await fs.writeFile(OUT, JSON.stringify(result, null, 2) + '\n');
      await writeFleetCharts(OUT, runs);
    }
    await ps.close();
  } finally {
    for (const p of procs) await p.stop().catch(() => {});
    for (const l of links) await l.close().catch(() => {});
    await ceph.stop();
    await fs.rm(work, { recursive: true, force: true }).catch(() => {});
  }
}

/** The commit measured and whether the tree had changes (scripts/check-readme-figures.mjs reads it). */
async function gitState(): Promise<{ commit: string; dirty: boolean } | null> {
  const { execFile } = await import('node:child_process');
  const run = (a: string[]) => new Promise<string>((res, rej) => execFile('git', a, (e, out) => (e ? rej(e) : res(out.trim()))));
  try {
    return { commit: await run(['rev-parse', 'HEAD']), dirty: (await run(['status', '--porcelain', '--untracked-files=no'])) !== '' };
  } catch {
    return null;
  }
}

/** Read every file of the image through the proxy client at `port`; returns ms from `t0` to the last byte. */
async function clone(port: number, want: Map<string, string>, t0: number): Promise<number> {
  const nfs = new RemoteNfs({ host: '127.0.0.1', port, timeoutMs: 300_000 });
  try {
    const root = (await nfs.mount('/', ROOT)).fh;
    const dir = (await nfs.lookup(ROOT, root, 'guest')).fh;
    for (const [n, sum] of want) {
      const fh = (await nfs.lookup(ROOT, dir, n)).fh;
      const h = createHash('sha256');
      for (let off = 0; ; ) {
        const r = await nfs.read(ROOT, fh, off, 1 << 20);
        h.update(r.data);
        off += r.count;
        if (r.eof || r.count === 0) break;
      }
      if (h.digest('hex') !== sum) throw new Error(`clone through port ${port}: ${n} differs`);
    }
    return performance.now() - t0;
  } finally {
    await nfs.close();
  }
}

/**
 * One SVG per figure (bench/lib/chart.ts), a bar per run: until all clones are done, wide-area bytes,
 * proxy-server calls, and the CPU seconds of the run. Written beside OUT.json, or alone with
 * `site-fleet.js --charts OUT.json` for a results file written before.
 */
async function writeFleetCharts(out: string, runs: Run[]): Promise<void> {
  const one = (v: number) => summarize([v]);
  const figures: Array<{ name: string; unit: string; value: (r: Run) => number | undefined }> = [
    { name: 'time until every host has cloned the image', unit: 'ms', value: (r) => r.wallMs },
    { name: 'wide-area bytes, both links, both ways', unit: 'MiB', value: (r) => r.wanBytes / 2 ** 20 },
    { name: 'calls handled by the proxy server', unit: 'calls', value: (r) => r.serverCalls },
    { name: 'CPU seconds of every process taking part', unit: 's', value: (r) => r.cpu?.totalS },
  ];
  for (const [i, f] of figures.entries()) {
    const systems = Object.fromEntries(runs.flatMap((r) => (f.value(r) === undefined ? [] : [[r.label, one(f.value(r)!)]])));
    if (!Object.keys(systems).length) continue;
    await fs.writeFile(out.replace(/\.json$/, '') + `-${i + 1}.svg`, workloadSvg('site fleet', { name: f.name, unit: f.unit, better: 'lower', systems }));
  }
}

if (process.argv[2] === '--charts') {
  const file = process.argv[3];
  await writeFleetCharts(file, (JSON.parse(await fs.readFile(file, 'utf8')) as { runs: Run[] }).runs);
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
