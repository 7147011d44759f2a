import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startGanesha } from '../../test/helpers/ganesha.js';
import { spawnGvfs } from '../../test/helpers/gvfs-proc.js';
import { nfsbench } from '../lib/libnfs-client.js';
import { peakRssMiB } from '../lib/stats.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';
import { randomFile } from '../lib/files.js';

const MiB = 1 << 20;

/**
 * Issue 2: the same client (nfsbench, on libnfs) against `gvfs serve`
 * and nfs-ganesha 4 exporting the same directory, in one run.
 */
export async function serverSuite(ctx: BenchContext): Promise<SuiteResult> {
  const size = ctx.quick ? 64 * MiB : 1024 * MiB;
  const files = ctx.quick ? 200 : 2000;
  const randOps = ctx.quick ? 2000 : 20000;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-server-'));
  const exp = path.join(dir, 'export');
  await fs.mkdir(exp);
  // The file both servers read.
  await randomFile(path.join(exp, 'read.bin'), size);

  const gvfs = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(dir, 'state')]);
  const gan = await startGanesha({ dir: exp, workDir: path.join(dir, 'ganesha') });
  const ends: Record<string, { nfsPort: number; mountPort: number; exportPath: string }> = {
    gvfs: { nfsPort: gvfs.port, mountPort: gvfs.port, exportPath: '/' },
    ganesha: { nfsPort: gan.port, mountPort: gan.mountPort, exportPath: gan.exportPath },
  };
  const nb = (s: string, a: Omit<Parameters<typeof nfsbench>[0], 'nfsPort' | 'mountPort' | 'exportPath'>) => nfsbench({ ...ends[s], ...a });
  const workloads: Array<{ name: string; unit: string; run: (sys: string) => Promise<number> }> = [
    // The targets: 1 MiB at depth 1 and 4, random 4 KiB at depth 1 and 16; 64 KiB x16 as the many-small-calls case.
    { name: 'seq write 1 MiB x1', unit: 'MiB/s', run: async (s) => (await nb(s, { op: 'seqwrite', file: `w1-${s}`, size, xfer: MiB, depth: 1 })).mib_per_s! },
    { name: 'seq write 1 MiB x4', unit: 'MiB/s', run: async (s) => (await nb(s, { op: 'seqwrite', file: `w1m-${s}`, size, xfer: MiB, depth: 4 })).mib_per_s! },
    { name: 'seq write 64 KiB x16', unit: 'MiB/s', run: async (s) => (await nb(s, { op: 'seqwrite', file: `w64-${s}`, size, xfer: 64 * 1024, depth: 16 })).mib_per_s! },
    { name: 'seq read 1 MiB x1', unit: 'MiB/s', run: async (s) => (await nb(s, { op: 'seqread', file: 'read.bin', size, xfer: MiB, depth: 1 })).mib_per_s! },
    { name: 'seq read 1 MiB x4', unit: 'MiB/s', run: async (s) => (await nb(s, { op: 'seqread', file: 'read.bin', size, xfer: MiB, depth: 4 })).mib_per_s! },
    { name: 'seq read 64 KiB x16', unit: 'MiB/s', run: async (s) => (await nb(s, { op: 'seqread', file: 'read.bin', size, xfer: 64 * 1024, depth: 16 })).mib_per_s! },
    { name: 'random read 4 KiB x1', unit: 'ops/s', run: async (s) => (await nb(s, { op: 'randread', file: 'read.bin', size, ops: randOps, depth: 1 })).ops_per_s! },
    { name: 'random read 4 KiB x16', unit: 'ops/s', run: async (s) => (await nb(s, { op: 'randread', file: 'read.bin', size, ops: randOps, depth: 16 })).ops_per_s! },
    { name: `create/stat/remove ${files}`, unit: 'ops/s', run: async (s) => (await nb(s, { op: 'meta', dir: `meta-${s}`, files })).ops_per_s! },
  ];
  try {
    const res = await ctx.compare('server', ['gvfs', 'ganesha'], workloads);
    res.notes.push(`file ${size / MiB} MiB, page cache warm on the server side for both; client: nfsbench (libnfs raw async, one connection), depth as named`);
    res.memory = { gvfsPeakRssMiB: await peakRssMiB(gvfs.pid), ganeshaPeakRssMiB: await peakRssMiB(gan.pid) };
    return res;
  } finally {
    await gvfs.stop();
    await gan.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
