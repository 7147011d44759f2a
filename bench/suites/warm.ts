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
 * reads, so a "warm" read that went to the server shows.
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
  const canDrop = await dropCaches();
  try {
    ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, 'ps'), '--metrics', '127.0.0.1:0']);
    await fs.mkdir(mnt);
    const cacheMiB = Math.ceil((2 * size) / MiB) + 256;
    gm = await spawnMount(['--server', `127.0.0.1:${ps.port}`, '--key', keyFile, '--cache-dir', path.join(dir, 'cache'), '--cache-size', `${cacheMiB}M`, mnt]);
    const root: Record<string, string> = { 'gvfs-warm': mnt, local: exp };
    const dd = (s: string) => run('dd', [`if=${root[s]}/read.bin`, 'of=/dev/null', 'bs=1M', 'status=none']);
    const sent = await serverBytesSent(ps);
    const cold = await secs(() => dd('gvfs-warm'));
    const afterFill = await serverBytesSent(ps);
    const res = await ctx.compare('warm', ['gvfs-warm', 'local'], [
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
      `proxy server bytes sent: ${fmtMiB(afterFill - sent)} MiB while the cache filled, ${fmtMiB(afterWarm - afterFill)} MiB during all the timed warm reads`,
      canDrop ? 'page cache dropped (echo 3 > /proc/sys/vm/drop_caches) before each read of the first row' : 'page cache NOT dropped (no permission): the first row is not from the disk',
    );
    res.memory = { mountPeakRssMiB: await peakRssMiB(gm.proc.pid!) };
    return res;
  } finally {
    await gm?.stop();
    await ps?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const fmtMiB = (b: number) => (b / MiB).toFixed(1);

/** The proxy server's RPC bytes written to clients (every channel), from its metrics endpoint. */
async function serverBytesSent(ps: GvfsProcess): Promise<number> {
  const at = (ps.info as { metrics?: { address: string; port: number } }).metrics;
  if (!at) throw new Error('proxy server started without --metrics');
  const text = await (await fetch(`http://${at.address}:${at.port}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(/^gvfs_channel_bytes_total\{[^}]*direction="out"[^}]*\} ([0-9.e+]+)$/gm)) sum += Number(m[1]);
  return sum;
}
