import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RemoteNfs } from '../../src/backends/remote-nfs/remote-nfs.js';
import { AuthFlavor } from '../../src/rpc/types.js';
import { startGanesha } from '../../test/helpers/ganesha.js';
import { spawnGvfs } from '../../test/helpers/gvfs-proc.js';
import { createStatRemove, randomReads, seqRead, seqWrite, type Target } from '../lib/nfs-workloads.js';
import { peakRssMiB } from '../lib/stats.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';

const MiB = 1 << 20;
const ROOT = { flavor: AuthFlavor.AUTH_SYS, uid: 0, gid: 0, gids: [] };

/**
 * Issue 2: the same client (our pipelined NFSv3 client) against `gvfs serve`
 * and nfs-ganesha 4 exporting the same directory, in one run.
 */
export async function serverSuite(ctx: BenchContext): Promise<SuiteResult> {
  const size = ctx.quick ? 64 * MiB : 1024 * MiB;
  const files = ctx.quick ? 200 : 2000;
  const randOps = ctx.quick ? 2000 : 20000;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-server-'));
  const exp = path.join(dir, 'export');
  await fs.mkdir(exp);
  // The file both servers read: random bytes, written in 8 MiB pieces (never whole in memory).
  const fh = await fs.open(path.join(exp, 'read.bin'), 'w');
  for (let off = 0; off < size; off += 8 * MiB) await fh.write(randomBytes(Math.min(8 * MiB, size - off)));
  await fh.close();

  const gvfs = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(dir, 'state')]);
  const gan = await startGanesha({ dir: exp, workDir: path.join(dir, 'ganesha') });
  const systems: Record<string, { t: Target; pid: () => number; close: () => Promise<void> }> = {};
  const connect = async (name: string, port: number, mountPort: number, exportPath: string, pid: () => number) => {
    const nfs = new RemoteNfs({ host: '127.0.0.1', port, mountPort, maxInFlight: 32 });
    const root = (await nfs.mount(exportPath, ROOT)).fh;
    systems[name] = { t: { nfs, root, cred: ROOT }, pid, close: () => nfs.close() };
  };
  await connect('gvfs', gvfs.port, gvfs.port, '/', () => gvfs.pid);
  await connect('ganesha', gan.port, gan.mountPort, gan.exportPath, () => gan.pid);

  const workloads: Array<{ name: string; unit: string; run: (t: Target, sys: string) => Promise<number> }> = [
    { name: 'seq write 64 KiB', unit: 'MiB/s', run: (t, s) => seqWrite(t, `w64-${s}`, size, 64 * 1024, 16) },
    { name: 'seq write 1 MiB', unit: 'MiB/s', run: (t, s) => seqWrite(t, `w1m-${s}`, size, MiB, 4) },
    { name: 'seq read 64 KiB', unit: 'MiB/s', run: (t) => seqRead(t, 'read.bin', size, 64 * 1024, 16) },
    { name: 'seq read 1 MiB', unit: 'MiB/s', run: (t) => seqRead(t, 'read.bin', size, MiB, 4) },
    { name: 'random read 4 KiB', unit: 'ops/s', run: (t) => randomReads(t, 'read.bin', size, randOps, 16) },
    { name: `create/stat/remove ${files}`, unit: 'ops/s', run: async (t, s) => (await createStatRemove(t, `meta-${s}`, files)).opsPerSec },
  ];
  try {
    const res = await ctx.compare(
      'server',
      Object.keys(systems),
      workloads.map((w) => ({ name: w.name, unit: w.unit, run: (sys: string) => w.run(systems[sys].t, sys) })),
    );
    res.notes.push(`file ${size / MiB} MiB, page cache warm on the server side for both; client: gvfs RemoteNfs, 1 connection, window 16 (64 KiB) / 4 (1 MiB)`);
    res.memory = { gvfsPeakRssMiB: await peakRssMiB(gvfs.pid), ganeshaPeakRssMiB: await peakRssMiB(gan.pid) };
    return res;
  } finally {
    for (const s of Object.values(systems)) await s.close();
    await gvfs.stop();
    await gan.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
