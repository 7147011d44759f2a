import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { Codec, pack } from '../../src/meta/compress.js';
import { blockCount, isZero, META_DIR } from '../../src/meta/format.js';
import { generateMeta } from '../../src/meta/generate.js';
import { spawnGvfs } from '../../test/helpers/gvfs-proc.js';
import { memoryStateFile } from '../lib/files.js';
import { checkLink, linkTolerance, PROFILES, startLink } from '../lib/link-emulator.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';
import { spawnMount } from './mount.js';
import { NODE_FLAGS } from '../../src/cli/self.js';

const run = promisify(execFile);
const MiB = 1 << 20;
const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

/**
 * Issue 7: a memory-state-like file (half zero 64 KiB blocks, the rest
 * ~2:1 compressible) read whole with dd through `gvfs mount` over the
 * emulated link, each run on a new cache directory (cold), as:
 *   no-meta    --no-meta: the cache's plain READ path (read-ahead)
 *   zero-map   meta-data with the on-demand hint: zero blocks local, data
 *              blocks by BULK_READ as dd asks for them
 *   whole      whole-file hint: one compressed bulk transfer from the first read
 *   prefetch   the order recorded by `gvfs meta record` over a first sequential read
 * The physical limit is the file's non-zero blocks compressed as the proxy
 * server sends them (zstd level 1, 1 MiB ranges) over the link's bandwidth,
 * plus three round trips (GET_META, first BULK_READ, last reply).
 */
export async function metaSuite(ctx: BenchContext, profileName = 'wan', memMiB?: number): Promise<SuiteResult> {
  const profile = PROFILES[profileName];
  if (!profile) throw new Error(`unknown link profile ${profileName}`);
  const check = await checkLink(profile, linkTolerance(ctx), 3, !ctx.quick);
  const size = (memMiB ?? (ctx.quick ? 64 : 1024)) * MiB;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-meta-'));
  const exp = path.join(dir, 'export');
  await fs.mkdir(path.join(exp, META_DIR), { recursive: true });
  const file = path.join(exp, 'ram.img');
  const { zeroBlocks, blocks } = await memoryStateFile(file, size, 0.5, 42);
  const expected = (await run('sha256sum', [file], { maxBuffer: 1 << 20 })).stdout.split(' ')[0];

  // What must cross: the non-zero blocks, compressed per 1 MiB chunk as BULK_READ does.
  const meta0 = (await generateMeta(file, { root: exp, hint: 'whole' })).meta;
  let wire = 0;
  let raw = 0;
  const h = await fs.open(file, 'r');
  try {
    const bs = meta0.blockSize;
    const per = MiB / bs;
    const buf = Buffer.alloc(MiB);
    for (let c = 0; c * MiB < size; c++) {
      await h.read(buf, 0, MiB, c * MiB);
      // Runs of consecutive data blocks are one range each, compressed alone.
      let start = -1;
      for (let i = 0; i <= per; i++) {
        const idx = c * per + i;
        const data = i < per && idx < blockCount(meta0) && !isZero(meta0, idx);
        if (data && start < 0) start = i;
        if (!data && start >= 0) {
          const r = buf.subarray(start * bs, i * bs);
          raw += r.length;
          wire += pack(r, Codec.ZSTD, 1).data.length;
          start = -1;
        }
      }
    }
  } finally {
    await h.close();
  }
  const bytesPerSec = profile.bitsPerSec / 8;
  const limitSec = wire / bytesPerSec + (3 * profile.rttMs) / 1000;

  const keyFile = path.join(dir, 'session.key');
  await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
  const ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, 'ps')]);
  const link = await startLink(profile, { host: '127.0.0.1', port: ps.port });
  const mnt = path.join(dir, 'mnt');
  await fs.mkdir(mnt);
  let n = 0;
  const wireBytes: Record<string, number[]> = {};
  const session = async <T>(sys: string, f: (m: string, cacheDir: string) => Promise<T>): Promise<T> => {
    const cacheDir = path.join(dir, `cache-${++n}`);
    const m = await spawnMount(['--server', `127.0.0.1:${link.port}`, '--key', keyFile, '--cache-dir', cacheDir, '--write-through', ...(sys === 'no-meta' ? ['--no-meta'] : []), mnt]);
    try {
      return await f(m.mnt, cacheDir);
    } finally {
      await m.stop();
      await fs.rm(cacheDir, { recursive: true, force: true });
    }
  };

  try {
    // The prefetch order: recorded over a first sequential read (dd, as the runs below).
    await generateMeta(file, { root: exp, hint: 'whole' });
    await session('record', async (m, cacheDir) => {
      await run(process.execPath, [...NODE_FLAGS, CLI, 'meta', 'record', '--cache-dir', cacheDir, '--hint', 'prefetch', '--', 'dd', `if=${m}/ram.img`, 'of=/dev/null', 'bs=1M', 'status=none']);
    });
    const hints: Record<string, 'ondemand' | 'whole' | 'prefetch'> = { 'zero-map': 'ondemand', whole: 'whole', prefetch: 'prefetch' };
    const systems = ['no-meta', 'zero-map', 'whole', 'prefetch'];
    const res = await ctx.compare(`meta-${profile.name}`, systems, [
      {
        name: `read ${size / MiB} MiB memory state (dd bs=1M, cold cache)`,
        unit: 'MiB/s',
        run: async (sys) => {
          if (hints[sys]) await generateMeta(file, { root: exp, hint: hints[sys] });
          return session(sys, async (m) => {
            const before = link.bytes();
            const t0 = performance.now();
            await run('dd', [`if=${m}/ram.img`, 'of=/dev/null', 'bs=1M', 'status=none']);
            const secs = (performance.now() - t0) / 1000;
            const after = link.bytes();
            (wireBytes[sys] ??= []).push(after.down - before.down + after.up - before.up);
            // Correctness outside the timing: the bytes read equal the file's.
            const got = (await run('sha256sum', [`${m}/ram.img`], { maxBuffer: 1 << 20 })).stdout.split(' ')[0];
            if (got !== expected) throw new Error(`${sys}: the file read through the mount differs from the file`);
            return size / MiB / secs;
          });
        },
      },
    ]);
    res.baseline = 'no-meta';
    const limitMiBs = size / MiB / limitSec;
    if (check.warning) res.notes.push(`WARNING: ${check.warning}`);
    res.notes.push(`link ${profile.name}: set ${profile.rttMs} ms RTT, ${profile.bitsPerSec / 1e6} Mbit/s; measured ${check.rttMs.toFixed(2)} ms, ${check.mbitPerSec.toFixed(1)} Mbit/s`);
    res.notes.push(`file: ${size / MiB} MiB, ${blocks} blocks of 64 KiB, ${zeroBlocks} zero (${((zeroBlocks / blocks) * 100).toFixed(1)}%); non-zero ${(raw / MiB).toFixed(1)} MiB, ${(wire / MiB).toFixed(1)} MiB after zstd level 1 (${(raw / wire).toFixed(2)}:1)`);
    res.notes.push(`physical limit: ${(wire / MiB).toFixed(1)} MiB / ${(bytesPerSec / MiB).toFixed(2)} MiB/s + 3 RTT = ${limitSec.toFixed(2)} s (= ${limitMiBs.toFixed(1)} MiB/s of file)`);
    for (const [s, v] of Object.entries(res.workloads[0].systems)) {
      const t = size / MiB / v.median;
      const wb = wireBytes[s] ?? [];
      res.notes.push(`${s}: ${t.toFixed(2)} s = ${(t / limitSec).toFixed(2)}x the physical limit; ${(wb.reduce((a, b) => a + b, 0) / Math.max(1, wb.length) / MiB).toFixed(1)} MiB crossed the link per run`);
    }
    const noMeta = size / MiB / res.workloads[0].systems['no-meta'].median;
    for (const s of ['whole', 'prefetch', 'zero-map']) res.notes.push(`${s}: ${(noMeta / (size / MiB / res.workloads[0].systems[s].median)).toFixed(2)}x faster than no-meta`);
    res.notes.push('each run: a new gvfs mount (FUSE, --cache-dir on a new directory, --write-through) → emulated link → gvfs proxy-server --export (session key); the meta-data hint set by gvfs meta gen before the run; sha256 of the file through the mount checked after each timed read');
    return res;
  } finally {
    await link.close();
    await ps.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
