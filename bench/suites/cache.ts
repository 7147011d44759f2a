import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { DEFAULT_BLOCK_SIZE } from '../../src/wrappers/cache/options.js';
import { spawnGvfs, type GvfsProcess } from '../../test/helpers/gvfs-proc.js';
import { randomFile } from '../lib/files.js';
import { nfsbench } from '../lib/libnfs-client.js';
import { checkLink, linkTolerance, PROFILES, startLink, type Link } from '../lib/link-emulator.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';
import { peakRssMiB } from '../lib/stats.js';

const MiB = 1 << 20;

export interface CacheSuiteOptions {
  /** Cache block size (--block-size), e.g. '256K'; default the proxy client's. */
  blockSize?: string;
  /** File size in MiB (default 1024, 64 with --quick). */
  sizeMiB?: number;
  /** Also read cold through an emulated WAN link (default true). */
  wan?: boolean;
}

/**
 * Issue 5: the same file, read by the same client (nfsbench) —
 *   chain  through proxy client (no cache) → proxy server → gvfs serve
 *   cold   through a proxy client with an empty cache directory (a new one per run)
 *   warm   through a proxy client whose cache holds the file (--cache-size 10G)
 *   local  gvfs serve of the same directory, no proxies (the same NFSv3 front end)
 * All on loopback, every gvfs piece its own process. The warm proxy client's
 * peak RSS is reported (with its 10 GiB cache setting). With `wan`, a cold
 * cached read and an uncached chain read also go through an emulated
 * 40 ms / 200 Mbit/s link (one READ at a time), reported against the link's bandwidth.
 */
export async function cacheSuite(ctx: BenchContext, o: CacheSuiteOptions = {}): Promise<SuiteResult> {
  const size = (o.sizeMiB ?? (ctx.quick ? 64 : 1024)) * MiB;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-cache-'));
  const exp = path.join(dir, 'export');
  await fs.mkdir(exp);
  await randomFile(path.join(exp, 'read.bin'), size);
  const procs: GvfsProcess[] = [];
  const links: Link[] = [];
  const serve = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(dir, 'serve-state')]);
  procs.push(serve);
  const keyFile = path.join(dir, 'session.key');
  await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
  const ps = await spawnGvfs([
    'proxy-server', '--listen', '127.0.0.1:0', '--key', keyFile, '--state-dir', path.join(dir, 'ps'),
    '--upstream', `nfs://127.0.0.1:${serve.port}/?mountport=${serve.port}`,
  ]);
  procs.push(ps);
  const bs = o.blockSize ? ['--block-size', o.blockSize] : [];
  const proxyClient = (server: number, extra: string[]) => spawnGvfs(['proxy-client', '--listen', '127.0.0.1:0', '--server', `127.0.0.1:${server}`, '--key', keyFile, ...extra]);
  const chain = await proxyClient(ps.port, []);
  procs.push(chain);
  const warm = await proxyClient(ps.port, ['--cache-dir', path.join(dir, 'cache-warm'), '--cache-size', '10G', '--write-through', ...bs]);
  procs.push(warm);
  const at = (port: number) => ({ nfsPort: port, mountPort: port, exportPath: '/', timeoutSec: 3600 });
  // Warm the warm one: one whole read before anything is timed.
  await nfsbench({ ...at(warm.port), op: 'seqread', file: 'read.bin', size, xfer: MiB, depth: 4 });
  let coldRuns = 0;
  let coldPeakRss = 0;
  /** A fresh proxy client on an empty cache directory for every cold run. */
  const cold = async <T>(server: number, f: (port: number) => Promise<T>): Promise<T> => {
    const cacheDir = path.join(dir, `cache-cold-${++coldRuns}`);
    const p = await proxyClient(server, ['--cache-dir', cacheDir, '--cache-size', '10G', '--write-through', ...bs]);
    try {
      const r = await f(p.port);
      coldPeakRss = Math.max(coldPeakRss, await peakRssMiB(p.pid));
      return r;
    } finally {
      await p.stop();
      await fs.rm(cacheDir, { recursive: true, force: true });
    }
  };
  const ports: Record<string, () => number> = { chain: () => chain.port, warm: () => warm.port, local: () => serve.port };
  const read = (s: string, a: { op: 'seqread' | 'randread'; xfer?: number; depth: number; ops?: number }) => {
    const go = (port: number) => nfsbench({ ...at(port), file: 'read.bin', size, ...a });
    return s === 'cold' ? cold(ps.port, go) : go(ports[s]());
  };
  const randOps = ctx.quick ? 2000 : 20000;
  try {
    const res = await ctx.compare('cache', ['chain', 'cold', 'warm', 'local'], [
      { name: 'seq read 1 MiB x4', unit: 'MiB/s', run: async (s) => (await read(s, { op: 'seqread', xfer: MiB, depth: 4 })).mib_per_s! },
      { name: 'seq read 64 KiB x16', unit: 'MiB/s', run: async (s) => (await read(s, { op: 'seqread', xfer: 64 * 1024, depth: 16 })).mib_per_s! },
      { name: 'seq read 1 MiB x1', unit: 'MiB/s', run: async (s) => (await read(s, { op: 'seqread', xfer: MiB, depth: 1 })).mib_per_s! },
      { name: `random read 4 KiB x16 (${randOps})`, unit: 'ops/s', run: async (s) => (await read(s, { op: 'randread', depth: 16, ops: randOps })).ops_per_s! },
    ]);
    res.notes.push(`file ${size / MiB} MiB of random bytes; upstream gvfs serve (page cache warm); client nfsbench (libnfs raw async, one connection); proxies are separate gvfs processes on loopback; cache block size ${o.blockSize ?? `${DEFAULT_BLOCK_SIZE / 1024}K (default)`}; cold = new proxy client and empty cache directory per run (blocks go to the page cache of this 24 GiB machine)`);
    for (const w of res.workloads) res.notes.push(`${w.name}: warm / local = ${(w.systems.warm.median / w.systems.local.median).toFixed(2)}, cold / chain = ${(w.systems.cold.median / w.systems.chain.median).toFixed(2)}`);
    res.memory = { warmProxyClientPeakRssMiB_cache10G: await peakRssMiB(warm.pid), coldProxyClientPeakRssMiB_cache10G: coldPeakRss, chainProxyClientPeakRssMiB: await peakRssMiB(chain.pid) };
    if (o.wan ?? true) {
      const profile = PROFILES.wan;
      const check = await checkLink(profile, linkTolerance(ctx), 3, !ctx.quick);
      const wanSize = (ctx.quick ? 24 : 256) * MiB;
      const psLink = await startLink(profile, { host: '127.0.0.1', port: ps.port });
      links.push(psLink);
      const wanChain = await proxyClient(psLink.port, []);
      procs.push(wanChain);
      const linkMiBs = profile.bitsPerSec / 8 / MiB;
      const one = (port: number) => nfsbench({ ...at(port), op: 'seqread', file: 'read.bin', size: wanSize, xfer: MiB, depth: 1 });
      const c = (await cold(psLink.port, one)).mib_per_s!;
      const n = (await one(wanChain.port)).mib_per_s!;
      if (check.warning) res.notes.push(`WARNING: ${check.warning}`);
      res.notes.push(
        `emulated WAN (${profile.rttMs} ms RTT, ${profile.bitsPerSec / 1e6} Mbit/s = ${linkMiBs.toFixed(1)} MiB/s; measured ${check.rttMs.toFixed(1)} ms, ${check.mbitPerSec.toFixed(0)} Mbit/s), ${wanSize / MiB} MiB, 1 MiB READs one at a time: cold with cache ${c.toFixed(1)} MiB/s = ${(c / linkMiBs).toFixed(2)}x link; chain without cache ${n.toFixed(1)} MiB/s = ${(n / linkMiBs).toFixed(2)}x link`,
      );
    }
    return res;
  } finally {
    for (const p of procs.reverse()) await p.stop();
    for (const l of links) await l.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
