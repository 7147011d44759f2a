import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { DEFAULT_CAPACITY, resolveCacheOptions } from '../../src/wrappers/cache/options.js';
import { startGanesha } from '../../test/helpers/ganesha.js';
import { spawnGvfs, type GvfsProcess } from '../../test/helpers/gvfs-proc.js';
import { startSshd } from '../../test/helpers/sshd.js';
import { memoryStateFile, randomFile } from '../lib/files.js';
import { nfsbench } from '../lib/libnfs-client.js';
import { checkLink, linkTolerance, PROFILES, startLink, type Link, type LinkProfile } from '../lib/link-emulator.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';

const run = promisify(execFile);
const MiB = 1 << 20;

/**
 * The proxy client's read-ahead as a depth of 1 MiB READs: the bytes of
 * block fetches it keeps on the wire at once by default. Plain NFS gets the
 * same depth (a kernel client with read-ahead), so the baseline is not
 * capped at one READ per round trip while GVFS reads ahead.
 */
const defaults = resolveCacheOptions({ dir: '', capacity: DEFAULT_CAPACITY, serverId: '', session: '' });
export const GVFS_READ_AHEAD_DEPTH = Math.max(1, Math.floor(Math.min(defaults.readAheadBytes, defaults.fetchBytesInFlight) / MiB));

/**
 * Issue 8: GVFS beside what users would pick instead, on the same emulated
 * link in one run. Every system reaches its server through its own relay of
 * the same profile (checked before the run):
 *   nfs    nfsbench → link → nfs-ganesha (plain NFS) with as many 1 MiB READs in flight as
 *          GVFS's read-ahead keeps (GVFS_READ_AHEAD_DEPTH): the main baseline
 *   nfs-depth1   the same, one READ at a time (a client without read-ahead)
 *   gvfs-nocache nfsbench → gvfs proxy-client (no cache, so no read-ahead) → link → gvfs proxy-server → nfs-ganesha
 *   gvfs-cold / gvfs-warm   the same with the proxy client's disk cache: a first session
 *          on an empty cache, then a second session (another key and process) on the same host
 *   sshfs  dd / reads on an sshfs mount → link → OpenSSH
 *   scp    scp of the whole file through the link, then local reads (copy-then-run)
 *   local  nfsbench → gvfs serve of the same directory, no link (the warm target's peer)
 * Figures are MiB/s of the file (or ops/s), so link-bandwidth ratios follow.
 */
export async function wanSuite(ctx: BenchContext, profileName = 'wan', sizes: { imageMiB?: number; memMiB?: number } = {}): Promise<SuiteResult> {
  const profile: LinkProfile = PROFILES[profileName];
  if (!profile) throw new Error(`unknown link profile ${profileName} (${Object.keys(PROFILES).join(', ')})`);
  const check = await checkLink(profile, linkTolerance(ctx), 3, !ctx.quick);
  const image = (sizes.imageMiB ?? (ctx.quick ? 24 : 2048)) * MiB;
  const mem = (sizes.memMiB ?? (ctx.quick ? 16 : 512)) * MiB;
  const randOps = ctx.quick ? 50 : 500;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-wan-'));
  const exp = path.join(dir, 'export');
  await fs.mkdir(exp);
  await randomFile(path.join(exp, 'disk.img'), image);
  await memoryStateFile(path.join(exp, 'memory.ram'), mem);
  const gan = await startGanesha({ dir: exp, workDir: path.join(dir, 'ganesha') });
  // "local": the same front end (nfsbench) on a gvfs serve of the same directory, no link, no proxies.
  const localSrv = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(dir, 'serve-state')]);
  const local = { nfsPort: localSrv.port, mountPort: localSrv.port, exportPath: '/' };
  const sshd = await startSshd(path.join(dir, 'sshd'));
  const links: Link[] = [];
  const link = async (port: number) => {
    const l = await startLink(profile, { host: '127.0.0.1', port });
    links.push(l);
    return l.port;
  };
  const procs: GvfsProcess[] = [localSrv];
  const keyFile = path.join(dir, 'session.key');
  const key2File = path.join(dir, 'session2.key');
  await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
  await writeKeyFile(key2File, newSessionKey('bench2', undefined, { uid: 0, gid: 0, gids: [] }));
  const ps = await spawnGvfs([
    'proxy-server', '--listen', '127.0.0.1:0', '--key', keyFile, '--key', key2File, '--state-dir', path.join(dir, 'ps'),
    '--upstream', `nfs://127.0.0.1:${gan.port}${gan.exportPath}?mountport=${gan.mountPort}`,
  ]);
  procs.push(ps);
  const psLink = await link(ps.port);
  const pc = await spawnGvfs(['proxy-client', '--server', `127.0.0.1:${psLink}`, '--key', keyFile]);
  procs.push(pc);
  /**
   * GVFS with its disk cache: a new cache directory makes a cold session; a
   * second session (another key, another process) on the same host and
   * cache directory is the warm one. Both end before the next run.
   */
  let cacheRun = 0;
  const withCache = async <T>(f: (cold: { nfsPort: number; mountPort: number; exportPath: string }, warm: () => Promise<{ nfsPort: number; mountPort: number; exportPath: string }>) => Promise<T>): Promise<T> => {
    const cacheDir = path.join(dir, `cache-${++cacheRun}`);
    const a = await spawnGvfs(['proxy-client', '--server', `127.0.0.1:${psLink}`, '--key', keyFile, '--cache-dir', cacheDir, '--write-through']);
    let b: GvfsProcess | undefined;
    try {
      return await f({ nfsPort: a.port, mountPort: a.port, exportPath: gan.exportPath }, async () => {
        b = await spawnGvfs(['proxy-client', '--server', `127.0.0.1:${psLink}`, '--key', key2File, '--cache-dir', cacheDir, '--write-through']);
        return { nfsPort: b.port, mountPort: b.port, exportPath: gan.exportPath };
      });
    } finally {
      await b?.stop();
      await a.stop();
      await fs.rm(cacheDir, { recursive: true, force: true });
    }
  };
  // ganesha's NFS and MOUNT ports each get a relay on the same profile.
  const nfs = { nfsPort: await link(gan.port), mountPort: await link(gan.mountPort), exportPath: gan.exportPath };
  const gvfs = { nfsPort: pc.port, mountPort: pc.port, exportPath: gan.exportPath };
  const sshPort = await link(sshd.port);
  const known = path.join(dir, 'known_hosts');
  await fs.writeFile(known, (await fs.readFile(sshd.knownHosts, 'utf8')).replace(`]:${sshd.port} `, `]:${sshPort} `));
  const sshOpts = ['-i', sshd.userKey, '-o', `UserKnownHostsFile=${known}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes'];
  const mnt = path.join(dir, 'sshfs');
  await fs.mkdir(mnt);
  await run('sshfs', ['-p', String(sshPort), '-o', `IdentityFile=${sshd.userKey},UserKnownHostsFile=${known},StrictHostKeyChecking=yes`, `root@127.0.0.1:${exp}`, mnt]);
  const secs = async (f: () => Promise<unknown>) => {
    const t0 = performance.now();
    await f();
    return (performance.now() - t0) / 1000;
  };
  const copy = path.join(dir, 'copy');
  const scp = (name: string) => run('scp', ['-q', '-P', String(sshPort), ...sshOpts, `root@127.0.0.1:${exp}/${name}`, copy]);
  /** Random 4 KiB reads of a local or FUSE path, one at a time (as a booting guest does). */
  const localRandom = async (file: string, size: number) => {
    const fh = await fs.open(file, 'r');
    const b = Buffer.alloc(4096);
    try {
      for (let i = 0; i < randOps; i++) await fh.read(b, 0, 4096, Math.floor(Math.random() * (size / 4096)) * 4096);
    } finally {
      await fh.close();
    }
  };
  const nfsDepth = (s: string) => (s === 'nfs' ? GVFS_READ_AHEAD_DEPTH : 1);
  const seq = async (s: string, file: string, size: number) => {
    if (s === 'gvfs-cold' || s === 'gvfs-warm')
      return withCache(async (cold, warm) => {
        const c = (await nfsbench({ ...cold, op: 'seqread', file, size, xfer: MiB, depth: 1, timeoutSec: 3600 })).mib_per_s!;
        if (s === 'gvfs-cold') return c;
        return (await nfsbench({ ...(await warm()), op: 'seqread', file, size, xfer: MiB, depth: 1, timeoutSec: 3600 })).mib_per_s!;
      });
    if (s === 'nfs' || s === 'nfs-depth1') return (await nfsbench({ ...nfs, op: 'seqread', file, size, xfer: MiB, depth: nfsDepth(s), timeoutSec: 3600 })).mib_per_s!;
    if (s === 'local') return (await nfsbench({ ...local, op: 'seqread', file, size, xfer: MiB, depth: 1, timeoutSec: 3600 })).mib_per_s!;
    if (s === 'gvfs-nocache') return (await nfsbench({ ...gvfs, op: 'seqread', file, size, xfer: MiB, depth: 1, timeoutSec: 3600 })).mib_per_s!;
    if (s === 'sshfs') return size / MiB / (await secs(() => run('dd', [`if=${mnt}/${file}`, 'of=/dev/null', 'bs=1M', 'status=none'])));
    return size / MiB / (await secs(() => scp(file)));
  };
  // The main baseline (nfs, with read-ahead) last: every ratio in the table is against it.
  const systems = ['gvfs-cold', 'gvfs-warm', 'gvfs-nocache', 'sshfs', 'scp', 'local', 'nfs-depth1', 'nfs'];
  try {
    const res = await ctx.compare(`wan-${profile.name}`, systems, [
      { name: `seq read ${image / MiB} MiB image`, unit: 'MiB/s', run: (s) => seq(s, 'disk.img', image) },
      { name: `memory-state read ${mem / MiB} MiB (50% zero)`, unit: 'MiB/s', run: (s) => seq(s, 'memory.ram', mem) },
      {
        name: `random 4 KiB reads x${randOps}`,
        unit: 'ops/s',
        run: async (s) => {
          // One random READ at a time for every NFS client (read-ahead does not apply): nfs and nfs-depth1 run the same.
          if (s === 'nfs' || s === 'nfs-depth1' || s === 'gvfs-nocache' || s === 'local') return (await nfsbench({ ...(s.startsWith('nfs') ? nfs : s === 'local' ? local : gvfs), op: 'randread', file: 'disk.img', size: image, ops: randOps, depth: 1, timeoutSec: 3600 })).ops_per_s!;
          if (s === 'gvfs-cold' || s === 'gvfs-warm')
            return withCache(async (cold, warm) => {
              // Warm: the same random offsets would be a fairer warm test; a first pass over the image makes it warm instead.
              const c = (await nfsbench({ ...cold, op: 'randread', file: 'disk.img', size: image, ops: randOps, depth: 1, timeoutSec: 3600 })).ops_per_s!;
              if (s === 'gvfs-cold') return c;
              await nfsbench({ ...cold, op: 'seqread', file: 'disk.img', size: image, xfer: MiB, depth: 1, timeoutSec: 3600 });
              return (await nfsbench({ ...(await warm()), op: 'randread', file: 'disk.img', size: image, ops: randOps, depth: 1, timeoutSec: 3600 })).ops_per_s!;
            });
          if (s === 'sshfs') return randOps / (await secs(() => localRandom(`${mnt}/disk.img`, image)));
          return randOps / (await secs(async () => {
            await scp('disk.img');
            await localRandom(copy, image);
          }));
        },
      },
    ]);
    const linkMiBs = profile.bitsPerSec / 8 / MiB;
    if (check.warning) res.notes.push(`WARNING: ${check.warning}`);
    res.notes.push(`link ${profile.name}: set ${profile.rttMs} ms RTT, ${profile.bitsPerSec / 1e6} Mbit/s per direction; measured ${check.rttMs.toFixed(2)} ms, ${check.mbitPerSec.toFixed(1)} Mbit/s; link = ${linkMiBs.toFixed(1)} MiB/s`);
    res.notes.push(`sequential reads: nfs = nfsbench with ${GVFS_READ_AHEAD_DEPTH} x 1 MiB READs in flight (the depth of GVFS's read-ahead: ${defaults.fetchBytesInFlight / MiB} MiB of fetches on the wire), nfs-depth1 = one READ at a time; gvfs-cold/warm/nocache: nfsbench one 1 MiB READ at a time against the proxy client (cold/warm: --cache-dir with ${defaults.blockSize / MiB} MiB blocks, which reads ahead itself; nocache: no cache, no read-ahead)`);
    res.notes.push('random 4 KiB reads: one at a time for every system (nfs and nfs-depth1 run the same workload)');
    for (const w of res.workloads) {
      if (w.unit === 'MiB/s') for (const [s, v] of Object.entries(w.systems)) if (s !== 'local' && s !== 'gvfs-warm') res.notes.push(`${w.name}: ${s} = ${(v.median / linkMiBs).toFixed(2)}x link bandwidth`);
      res.notes.push(`${w.name}: gvfs-warm / local = ${(w.systems['gvfs-warm'].median / w.systems.local.median).toFixed(2)}`);
    }
    return res;
  } finally {
    await run('fusermount', ['-u', mnt]).catch(() => run('umount', ['-l', mnt]).catch(() => undefined));
    for (const p of procs.reverse()) await p.stop();
    for (const l of links) await l.close();
    await sshd.stop();
    await gan.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
