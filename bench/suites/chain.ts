import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startChainSystems, type ChainSystems } from '../lib/chain-systems.js';
import { nfsbench } from '../lib/libnfs-client.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';
import { peakRssMiB } from '../lib/stats.js';
import { randomFile } from '../lib/files.js';

const MiB = 1 << 20;

/**
 * Issue 3: the same client (nfsbench, on libnfs) directly against the
 * upstream server (nfs-ganesha) and through proxy client + proxy server, in
 * one run. The proxies run as their own processes so their memory is theirs.
 * A third system, `relay`, puts two byte-forwarding C relays where the
 * proxies stand (bench/native/relay.c): the floor of any two user-level hops
 * on this machine, which the chain's own work is judged against.
 */
export async function chainSuite(ctx: BenchContext): Promise<SuiteResult> {
  const size = ctx.quick ? 64 * MiB : 1024 * MiB;
  const files = ctx.quick ? 200 : 2000;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-chain-'));
  const exp = path.join(dir, 'export');
  await fs.mkdir(exp);
  await randomFile(path.join(exp, 'read.bin'), size);

  const chain = await startChainSystems(dir, exp).catch(async (e) => {
    await fs.rm(dir, { recursive: true, force: true });
    throw e;
  });
  const at = (sys: string) => {
    const { nfsPort, mountPort } = chain.systems[sys as keyof ChainSystems['systems']];
    return { nfsPort, mountPort, exportPath: chain.exportPath };
  };
  try {
    const res = await ctx.compare('chain', ['chain', 'relay', 'direct'], [
      { name: 'seq read 1 MiB x4', unit: 'MiB/s', run: async (s) => (await nfsbench({ ...at(s), op: 'seqread', file: 'read.bin', size, xfer: MiB, depth: 4 })).mib_per_s! },
      { name: 'seq read 64 KiB x16', unit: 'MiB/s', run: async (s) => (await nfsbench({ ...at(s), op: 'seqread', file: 'read.bin', size, xfer: 64 * 1024, depth: 16 })).mib_per_s! },
      { name: 'seq write 1 MiB x4', unit: 'MiB/s', run: async (s) => (await nfsbench({ ...at(s), op: 'seqwrite', file: `w-${s}.bin`, size, xfer: MiB, depth: 4 })).mib_per_s! },
      { name: 'seq write 64 KiB x16', unit: 'MiB/s', run: async (s) => (await nfsbench({ ...at(s), op: 'seqwrite', file: `w-${s}.bin`, size, xfer: 64 * 1024, depth: 16 })).mib_per_s! },
      { name: `create/stat/remove ${files} (ops/s)`, unit: 'ops/s', run: async (s) => (await nfsbench({ ...at(s), op: 'meta', dir: `m-${s}`, files })).ops_per_s! },
      {
        name: `create/stat/remove ${files} (1/latency)`,
        unit: '1/ms',
        run: async (s) => 1000 / (await nfsbench({ ...at(s), op: 'meta', dir: `m-${s}`, files })).lat_us_avg!,
      },
    ]);
    res.notes.push(`upstream nfs-ganesha on loopback; file ${size / MiB} MiB; client nfsbench (libnfs raw async); proxies are separate gvfs processes`);
    res.notes.push('per-operation latency ratio = 1 / (the 1/latency ratio)');
    res.notes.push('relay: two C processes forwarding bytes (one read and one write per burst, bench/native/relay.c) where the proxies stand: what two hops cost before any NFS work');
    const pids = chain.systems.chain.pids;
    res.memory = { proxyServerPeakRssMiB: await peakRssMiB(pids['proxy server']), proxyClientPeakRssMiB: await peakRssMiB(pids['proxy client']) };
    return res;
  } finally {
    await chain.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
