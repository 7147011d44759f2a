/**
 * Issue 20's measurement: the consistency models over a wide-area link.
 * Two compute hosts (proxy clients with their own cache directories, each
 * through its own emulated link to the proxy server: bench/lib/link-emulator.ts,
 * profile wan by default: 40 ms RTT, 200 Mbit/s). A read-mostly workload:
 * host B, like a build, stats and opens FILES small files over and over
 * (LOOKUP + GETATTR + READ each, CONC files at a time), while host A edits
 * EDITS of them every 200 ms (truncate + write, write-through).
 *
 * Systems:
 *   ttl 1 s, ttl 0, poll 1 s, callback — the proxy client's cache under each model;
 *   nfs (no cache) — the same workload with our NFSv3 client straight to
 *     `gvfs serve` (the export through an NFSv3 server, no proxy, no cache)
 *     through the same link: what plain NFS without client caching costs;
 *   local cache (no consistency) — the proxy client's cache trusting what it
 *     holds for an hour: the warm local cache every model is held against
 *     (its stale reads are expected: it never asks).
 *
 * Figures per system: calls the server handled per second (both hosts),
 * B's pass time (one pass = every file once; median of the passes after
 * two warm-up passes), and stale reads, two ways: `strict` (B read a
 * version older than one A had finished writing before B's read began:
 * must be 0 for callback) and `bounded` (older than one A finished
 * writing more than 2 s before: must be 0 for poll 1 s and ttl 1 s).
 *
 *   node dist/bench/consistency-wan.js [--secs 20] [--files 1000] [--edits 5] [--conc 16] [--profile wan] [--out DIR] [--only name,name] [--rounds N]
 *
 * `--rounds N`: every system N times, interleaved (round 1: each system in
 * turn, then round 2...), so a machine that is slower for a while weighs on
 * every system alike. A system's pass figure is then the median of all its
 * passes, its calls per second the median of its rounds'; each round's own
 * pass medians are kept (`rounds`).
 *
 * Writes DIR/consistency-wan.json and an SVG per figure (bench/lib/chart.ts).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { LocalExport } from '../src/backends/local-export/local-export.js';
import { RemoteNfs } from '../src/backends/remote-nfs/remote-nfs.js';
import { newSessionKey, type SessionKey } from '../src/channel/session-key.js';
import { SessionRegistry } from '../src/channel/sessions.js';
import { createNfs3Server } from '../src/frontends/nfs3-server/server.js';
import { StableHow } from '../src/nfs3/constants.js';
import { createProxyClient, type ProxyClient } from '../src/proxy/proxy-client.js';
import { createProxyServer } from '../src/proxy/proxy-server.js';
import type { RpcServer } from '../src/rpc/server.js';
import { AuthFlavor, type Credentials } from '../src/rpc/types.js';
import type { CacheOptions } from '../src/wrappers/cache/options.js';
import { workloadSvg } from './lib/chart.js';
import { PROFILES, startLink, type Link } from './lib/link-emulator.js';
import { gitState, machine } from './lib/report.js';
import { summarize, type Sample } from './lib/stats.js';

const ROOT: Credentials = { flavor: AuthFlavor.AUTH_SYS, uid: 0, gid: 0, gids: [] };
const { values: a } = parseArgs({
  options: {
    secs: { type: 'string', default: '20' },
    files: { type: 'string', default: '1000' },
    edits: { type: 'string', default: '5' },
    conc: { type: 'string', default: '16' },
    profile: { type: 'string', default: 'wan' },
    out: { type: 'string' },
    only: { type: 'string' },
    rounds: { type: 'string', default: '1' },
  },
});
const secs = Number(a.secs);
const files = Number(a.files);
const edits = Number(a.edits);
const conc = Number(a.conc);
const rounds = Math.max(1, Number(a.rounds));
const profile = PROFILES[a.profile!];
if (!profile) throw new Error(`no link profile ${a.profile} (${Object.keys(PROFILES).join(', ')})`);

interface Host {
  client: RemoteNfs;
  root: Buffer;
  close(): Promise<void>;
}

interface SystemResult {
  serverCallsPerSec: number;
  /** Calls by procedure at the server during the measured window (per second). */
  byProc: Record<string, number>;
  passSeconds: Sample;
  passes: number;
  staleStrict: number;
  staleBounded: number;
  /** Reads whose bytes were no version A ever wrote (never expected: a torn or mixed read). */
  garbled: number;
  reads: number;
  edits: number;
  /** With --rounds: each round's pass median (s) and calls per second. */
  rounds?: Array<{ passMedian: number; callsPerSec: number }>;
}

type System = { name: string; cache?: Partial<CacheOptions> };
const SYSTEMS: System[] = [
  { name: 'ttl 1 s', cache: { consistency: 'ttl', attrTimeoutMs: 1000 } },
  { name: 'ttl 0', cache: { consistency: 'ttl', attrTimeoutMs: 0 } },
  { name: 'poll 1 s', cache: { consistency: 'poll', pollMs: 1000 } },
  { name: 'callback', cache: { consistency: 'callback' } },
  { name: 'nfs (no cache)' },
  { name: 'local cache (no consistency)', cache: { consistency: 'ttl', attrTimeoutMs: 3_600_000 } },
];

async function measure(sys: System): Promise<SystemResult & { times: number[] }> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-consist-wan-'));
  const dir = path.join(base, 'export');
  await fs.mkdir(dir);
  for (let i = 0; i < files; i++) await fs.writeFile(path.join(dir, `f${i}`), `file ${i} version 0`);
  const links: Link[] = [];
  let server: RpcServer;
  let stop: () => Promise<void>;
  let host: (name: string) => Promise<Host>;
  if (!sys.cache) {
    // Plain NFS: gvfs serve (LocalExport behind the NFSv3 server), each host's client through its own link.
    const exp = await LocalExport.open({ root: dir, stateDir: path.join(base, 'serve-state') });
    server = createNfs3Server({ backend: exp });
    const port = (await server.listen(0, '127.0.0.1')).port;
    host = async () => {
      const l = await startLink(profile, { host: '127.0.0.1', port });
      links.push(l);
      const client = new RemoteNfs({ host: '127.0.0.1', port: l.port, mountPort: l.port, timeoutMs: 120_000 });
      const root = (await client.mount('/', ROOT)).fh;
      return { client, root, close: () => client.close() };
    };
    stop = async () => {
      await server.close();
      await exp.close();
    };
  } else {
    const keys: SessionKey[] = [newSessionKey('alice'), newSessionKey('alice')];
    const ps = await createProxyServer({
      exports: [{ kind: 'local', dir }],
      sessions: new SessionRegistry(keys),
      map: new Map([['alice', { uid: 0, gid: 0, gids: [] }]]),
      stateDir: path.join(base, 'ps'),
    });
    server = ps.server;
    const port = (await ps.listen(0, '127.0.0.1')).port;
    let k = 0;
    host = async (name) => {
      const l = await startLink(profile, { host: '127.0.0.1', port });
      links.push(l);
      const pc: ProxyClient = createProxyClient({
        host: '127.0.0.1',
        port: l.port,
        key: keys[k++],
        meta: false,
        timeoutMs: 120_000,
        cache: { dir: path.join(base, name), capacity: 256 << 20, writeBack: false, ...sys.cache },
      });
      await pc.cache!.ready;
      const p = (await pc.server.listen(0, '127.0.0.1')).port;
      const client = new RemoteNfs({ host: '127.0.0.1', port: p, timeoutMs: 120_000 });
      const root = (await client.mount('/', ROOT)).fh;
      return {
        client,
        root,
        async close() {
          await client.close();
          await pc.close();
        },
      };
    };
    stop = () => ps.close();
  }
  const A = await host('cache-a');
  const B = await host('cache-b');
  // Per file: A's versions with the time each write finished.
  const written = new Map<number, Array<{ n: number; at: number }>>();
  let staleStrict = 0;
  let staleBounded = 0;
  let garbled = 0;
  let reads = 0;
  let measuring = false;
  const newestBefore = (i: number, t: number) => {
    let n = 0;
    for (const v of written.get(i) ?? []) if (v.at <= t && v.n > n) n = v.n;
    return n;
  };
  const readOne = async (i: number) => {
    const began = Date.now();
    const fh = (await B.client.lookup(ROOT, B.root, `f${i}`)).fh;
    const at = await B.client.getattr(ROOT, fh);
    const text = (await B.client.read(ROOT, fh, 0, at.size + 64)).data.toString();
    const m = /version (\d+)$/.exec(text);
    if (!measuring) return;
    // An empty file: A's truncate seen between its two calls. Anything else must be a whole version.
    if (!m || !text.startsWith(`file ${i} version `)) {
      if (text !== '') garbled++;
      return;
    }
    reads++;
    const got = Number(m[1]);
    if (got < newestBefore(i, began)) staleStrict++;
    if (got < newestBefore(i, began - 2000)) staleBounded++;
  };
  const pass = async () => {
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: conc }, async () => {
        for (let i = next++; i < files; i = next++) await readOne(i);
      }),
    );
    return (performance.now() - t0) / 1000;
  };
  await pass(); // warm: B's cache holds every file (and its delegations, under callback)
  await pass();
  const stats = server.stats;
  const calls0 = stats.calls;
  const proc0 = new Map(stats.callsByProc);
  let editing = true;
  let editsDone = 0;
  const t0 = Date.now();
  measuring = true;
  const editor = (async () => {
    for (let n = 1; editing; n++) {
      for (let e = 0; e < edits && editing; e++) {
        const i = (n * 7 + e * 131) % files;
        const fh = (await A.client.lookup(ROOT, A.root, `f${i}`)).fh;
        await A.client.setattr(ROOT, fh, { size: 0 });
        await A.client.write(ROOT, fh, 0, Buffer.from(`file ${i} version ${n}`), StableHow.FILE_SYNC);
        const list = written.get(i) ?? [];
        list.push({ n, at: Date.now() });
        written.set(i, list);
        editsDone++;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const times: number[] = [];
  while (Date.now() - t0 < secs * 1000) times.push(await pass());
  const s = (Date.now() - t0) / 1000;
  const calls = stats.calls - calls0;
  const byProc: Record<string, number> = {};
  for (const [p, n] of stats.callsByProc) if (n - (proc0.get(p) ?? 0) > 0) byProc[p] = Math.round(((n - (proc0.get(p) ?? 0)) / s) * 10) / 10;
  editing = false;
  measuring = false;
  await editor;
  await A.close();
  await B.close();
  for (const l of links) await l.close();
  await stop();
  await fs.rm(base, { recursive: true, force: true });
  return { serverCallsPerSec: calls / s, byProc, passSeconds: summarize(times), passes: times.length, staleStrict, staleBounded, garbled, reads, edits: editsDone, times };
}

/** Rounds of one system as one result: all passes' median, the rounds' median call rate, counts summed. */
function combine(rs: Array<SystemResult & { times: number[] }>): SystemResult {
  if (rs.length === 1) {
    const { times: _t, ...r } = rs[0];
    return r;
  }
  const times = rs.flatMap((r) => r.times);
  const sum = (k: 'staleStrict' | 'staleBounded' | 'garbled' | 'reads' | 'edits') => rs.reduce((n, r) => n + r[k], 0);
  return {
    serverCallsPerSec: summarize(rs.map((r) => r.serverCallsPerSec)).median,
    byProc: rs[rs.length >> 1].byProc,
    passSeconds: summarize(times),
    passes: times.length,
    staleStrict: sum('staleStrict'),
    staleBounded: sum('staleBounded'),
    garbled: sum('garbled'),
    reads: sum('reads'),
    edits: sum('edits'),
    rounds: rs.map((r) => ({ passMedian: r.passSeconds.median, callsPerSec: r.serverCallsPerSec })),
  };
}

// The tree as the run starts (what the figures are of), not as it ends.
const git = await gitState();
const only = a.only ? new Set(a.only.split(',')) : undefined;
const results: Record<string, SystemResult> = {};
const perRound = new Map<string, Array<SystemResult & { times: number[] }>>();
for (let round = 1; round <= rounds; round++) {
  for (const sys of SYSTEMS) {
    if (only && !only.has(sys.name)) continue;
    const r = await measure(sys);
    perRound.set(sys.name, [...(perRound.get(sys.name) ?? []), r]);
    if (rounds > 1) console.log(`round ${round} ${sys.name.padEnd(30)} server calls/s ${r.serverCallsPerSec.toFixed(1).padStart(8)}   B pass ${r.passSeconds.median.toFixed(3)} s`);
  }
}
for (const [name, rs] of perRound) {
  const r = combine(rs);
  results[name] = r;
  console.log(
    `${name.padEnd(30)} server calls/s ${r.serverCallsPerSec.toFixed(1).padStart(8)}   B pass ${r.passSeconds.median.toFixed(3)} s (${r.passSeconds.min.toFixed(3)}–${r.passSeconds.max.toFixed(3)}, ${r.passes} passes)   stale strict ${r.staleStrict} bounded ${r.staleBounded} of ${r.reads} reads, garbled ${r.garbled}   A edits ${r.edits}\n    server calls/s by procedure: ${JSON.stringify(r.byProc)}`,
  );
}

const ttl1 = results['ttl 1 s'];
const local = results['local cache (no consistency)'];
// Each system's server calls against ttl 1 s's (how many times fewer), and its pass time against the warm local cache's.
const ratios: Record<string, { fewerCallsThanTtl1s?: number; passVsLocalCache?: number }> = {};
for (const [k, r] of Object.entries(results)) {
  ratios[k] = {};
  if (ttl1) ratios[k].fewerCallsThanTtl1s = ttl1.serverCallsPerSec / r.serverCallsPerSec;
  if (local) ratios[k].passVsLocalCache = r.passSeconds.median / local.passSeconds.median;
  console.log(`${k.padEnd(30)} ${ttl1 ? `${ratios[k].fewerCallsThanTtl1s!.toFixed(2)}x fewer server calls than ttl 1 s` : ''}   ${local ? `pass ${ratios[k].passVsLocalCache!.toFixed(2)}x the warm local cache's` : ''}`);
}
const targets: Record<string, string | boolean> = {};
if (ttl1 && results['poll 1 s']) targets['poll cuts server calls >= 10x vs ttl 1 s'] = ttl1.serverCallsPerSec / results['poll 1 s'].serverCallsPerSec >= 10;
if (ttl1 && results.callback) targets['callback cuts server calls >= 10x vs ttl 1 s'] = ttl1.serverCallsPerSec / results.callback.serverCallsPerSec >= 10;
if (local && results.callback) targets['callback warm pass within 1.1x of the warm local cache'] = results.callback.passSeconds.median / local.passSeconds.median <= 1.1;
if (results.callback) targets['callback: 0 strict stale reads'] = results.callback.staleStrict === 0;
targets['every read a whole version A wrote (all systems)'] = Object.values(results).every((r) => r.garbled === 0);
for (const [k, v] of Object.entries(targets)) console.log(`${v ? 'MET    ' : 'NOT MET'} ${k}`);

if (a.out) {
  await fs.mkdir(a.out, { recursive: true });
  const record = {
    bench: 'bench/consistency-wan.ts',
    args: { secs, files, edits, conc, profile, rounds },
    git,
    // The 1/5/15-minute load averages at the end of the run (the machine is shared).
    machine: { ...machine(), loadavg: os.loadavg() },
    date: new Date().toISOString(),
    results,
    ratios,
    targets,
  };
  await fs.writeFile(path.join(a.out, 'consistency-wan.json'), JSON.stringify(record, null, 2) + '\n');
  const sample = (v: number): Sample => summarize([v]);
  const charts = [
    { name: 'server calls per second (both hosts)', unit: 'calls/s', better: 'lower' as const, systems: Object.fromEntries(Object.entries(results).map(([k, r]) => [k, sample(r.serverCallsPerSec)])) },
    { name: "host B's pass over the files", unit: 's', better: 'lower' as const, systems: Object.fromEntries(Object.entries(results).map(([k, r]) => [k, r.passSeconds])) },
  ];
  for (const [i, w] of charts.entries()) await fs.writeFile(path.join(a.out, `consistency-wan-${i + 1}.svg`), workloadSvg(`consistency over ${profile.name}`, w));
  console.log(`results in ${a.out}`);
}
