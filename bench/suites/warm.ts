import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { spawnGvfs, type GvfsProcess } from '../../test/helpers/gvfs-proc.js';
import { randomFile } from '../lib/files.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';
import { peakRssMiB } from '../lib/stats.js';
import { dropCaches, secs, spawnMount } from './mount.js';

const run = promisify(execFile);
const MiB = 1 << 20;

/**
 * Issue 19: a file in a `gvfs mount`'s disk cache (read through it once
 * before, untimed) read again with dd, against the same file on the local
 * disk. Two rows: the page cache dropped before each read (both read from
 * the disk: gvfs its cache's block files, local the file), and warm (the
 * same read twice, the second timed: the kernel's page cache, under FUSE
 * for gvfs). The proxy server's bytes sent are counted around the timed
 * reads, so a "warm" read that went to the server shows. A third system,
 * gvfs-ro, is a read-only mount (--read-only) with a cache of its own: once
 * its cache holds the file whole, opens are handed to that file (FUSE
 * passthrough) and the kernel reads it itself.
 */
export async function warmSuite(ctx: BenchContext): Promise<SuiteResult> {
  const size = Number(process.env.GVFS_BENCH_WARM_MIB ?? (ctx.quick ? 64 : 1024)) * MiB;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-warm-'));
  const exp = path.join(dir, 'export');
  await fs.mkdir(exp);
  await randomFile(path.join(exp, 'read.bin'), size);
  const keyFile = path.join(dir, 'session.key');
  await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
  const mnt = path.join(dir, 'gvfs');
  let ps: GvfsProcess | undefined;
  let gm: Awaited<ReturnType<typeof spawnMount>> | undefined;
  let ro: Awaited<ReturnType<typeof spawnMount>> | undefined;
  const canDrop = await dropCaches();
  try {
    ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, 'ps'), '--metrics', '127.0.0.1:0']);
    await fs.mkdir(mnt);
    const cacheMiB = Math.ceil((2 * size) / MiB) + 256;
    gm = await spawnMount(['--server', `127.0.0.1:${ps.port}`, '--key', keyFile, '--cache-dir', path.join(dir, 'cache'), '--cache-size', `${cacheMiB}M`, mnt]);
    await fs.mkdir(path.join(dir, 'gvfs-ro'));
    const roCache = path.join(dir, 'cache-ro');
    ro = await spawnMount(['--server', `127.0.0.1:${ps.port}`, '--key', keyFile, '--cache-dir', roCache, '--cache-size', `${cacheMiB}M`, '--read-only', path.join(dir, 'gvfs-ro')]);
    const root: Record<string, string> = { 'gvfs-warm': mnt, 'gvfs-ro': ro.mnt, local: exp };
    const dd = (s: string) => run('dd', [`if=${root[s]}/read.bin`, 'of=/dev/null', 'bs=1M', 'status=none']);
    const sent = await serverBytesSent(ps);
    const cold = await secs(() => dd('gvfs-warm'));
    const coldRo = await secs(() => dd('gvfs-ro'));
    // The read-only mount makes the whole file from the blocks once all are on disk: waited for here, untimed.
    const madeIn = await secs(() => wholeFile(roCache, size));
    const afterFill = await serverBytesSent(ps);
    const res = await ctx.compare('warm', ['gvfs-warm', 'gvfs-ro', 'local'], [
      {
        name: `seq read ${size / MiB} MiB (dd bs=1M), page cache dropped`,
        unit: 'MiB/s',
        run: async (s) => {
          await dropCaches();
          return size / MiB / (await secs(() => dd(s)));
        },
      },
      {
        name: `seq read ${size / MiB} MiB (dd bs=1M), page cache warm`,
        unit: 'MiB/s',
        run: async (s) => {
          await dd(s);
          return size / MiB / (await secs(() => dd(s)));
        },
      },
    ]);
    const afterWarm = await serverBytesSent(ps);
    res.notes.push(
      `gvfs-warm: gvfs mount --cache-dir (cache ${cacheMiB} MiB, default block size and consistency) of a proxy server exporting the directory local reads; the file (${size / MiB} MiB of random bytes) read through it once first, untimed: ${(size / MiB / cold).toFixed(0)} MiB/s cold`,
      `gvfs-ro: gvfs mount --read-only of the same proxy server with a cache of its own (same size), filled the same way (${(size / MiB / coldRo).toFixed(0)} MiB/s cold); its whole file (the file in one piece, made from the blocks in the background) was on disk ${madeIn.toFixed(2)} s after the fill read; opens then pass through to it (FUSE passthrough) where the kernel allows`,
      `proxy server bytes sent: ${fmtMiB(afterFill - sent)} MiB while the caches filled, ${fmtMiB(afterWarm - afterFill)} MiB during all the timed warm reads`,
      canDrop ? 'page cache dropped (echo 3 > /proc/sys/vm/drop_caches) before each read of the first row' : 'page cache NOT dropped (no permission): the first row is not from the disk',
    );
    res.memory = { mountPeakRssMiB: await peakRssMiB(gm.proc.pid!), roMountPeakRssMiB: await peakRssMiB(ro.proc.pid!) };
    return res;
  } finally {
    await ro?.stop();
    await gm?.stop();
    await ps?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const fmtMiB = (b: number) => (b / MiB).toFixed(1);

/** Wait until a whole file of `size` bytes is in cache directory `dir` (blocks/<xx>/<fk>/w.<tag>): polled, up to 5 minutes. */
async function wholeFile(dir: string, size: number): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    for (const e of await fs.readdir(path.join(dir, 'blocks'), { recursive: true, withFileTypes: true }).catch(() => [])) {
      if (e.isFile() && e.name.startsWith('w.') && (await fs.stat(path.join(e.parentPath ?? e.path, e.name)).catch(() => undefined))?.size === size) return;
    }
    if (Date.now() - t0 > 300_000) throw new Error(`no whole file of ${size} bytes in ${dir} after 5 minutes`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The proxy server's RPC bytes written to clients (every channel), from its metrics endpoint. */
async function serverBytesSent(ps: GvfsProcess): Promise<number> {
  const at = (ps.info as { metrics?: { address: string; port: number } }).metrics;
  if (!at) throw new Error('proxy server started without --metrics');
  const text = await (await fetch(`http://${at.address}:${at.port}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(/^gvfs_channel_bytes_total\{[^}]*direction="out"[^}]*\} ([0-9.e+]+)$/gm)) sum += Number(m[1]);
  return sum;
}
