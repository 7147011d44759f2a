import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { startGanesha } from '../../test/helpers/ganesha.js';
import { spawnGvfs, type GvfsProcess } from '../../test/helpers/gvfs-proc.js';
import { startSshd } from '../../test/helpers/sshd.js';
import { memoryStateFile, randomFile } from '../lib/files.js';
import { nfsbench } from '../lib/libnfs-client.js';
import { checkLink, PROFILES, startLink, type Link, type LinkProfile } from '../lib/link-emulator.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';

const run = promisify(execFile);
const MiB = 1 << 20;

/**
 * Issue 8: GVFS beside what users would pick instead, on the same emulated
 * link in one run. Every system reaches its server through its own relay of
 * the same profile (checked before the run):
 *   nfs    nfsbench → link → nfs-ganesha (plain NFS, one request at a time)
 *   gvfs   nfsbench → gvfs proxy-client → link → gvfs proxy-server → nfs-ganesha
 *   sshfs  dd / reads on an sshfs mount → link → OpenSSH
 *   scp    scp of the whole file through the link, then local reads (copy-then-run)
 * Figures are MiB/s of the file (or ops/s), so link-bandwidth ratios follow.
 */
export async function wanSuite(ctx: BenchContext, profileName = 'wan'): Promise<SuiteResult> {
  const profile: LinkProfile = PROFILES[profileName];
  if (!profile) throw new Error(`unknown link profile ${profileName} (${Object.keys(PROFILES).join(', ')})`);
  const check = await checkLink(profile);
  const image = ctx.quick ? 24 * MiB : 2048 * MiB;
  const mem = ctx.quick ? 16 * MiB : 512 * MiB;
  const randOps = ctx.quick ? 50 : 500;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-wan-'));
  const exp = path.join(dir, 'export');
  await fs.mkdir(exp);
  await randomFile(path.join(exp, 'disk.img'), image);
  await memoryStateFile(path.join(exp, 'memory.ram'), mem);
  const gan = await startGanesha({ dir: exp, workDir: path.join(dir, 'ganesha') });
  const sshd = await startSshd(path.join(dir, 'sshd'));
  const links: Link[] = [];
  const link = async (port: number) => {
    const l = await startLink(profile, { host: '127.0.0.1', port });
    links.push(l);
    return l.port;
  };
  const procs: GvfsProcess[] = [];
  const keyFile = path.join(dir, 'session.key');
  await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
  const ps = await spawnGvfs([
    'proxy-server', '--listen', '127.0.0.1:0', '--key', keyFile, '--state-dir', path.join(dir, 'ps'),
    '--upstream', `nfs://127.0.0.1:${gan.port}${gan.exportPath}?mountport=${gan.mountPort}`,
  ]);
  procs.push(ps);
  const pc = await spawnGvfs(['proxy-client', '--server', `127.0.0.1:${await link(ps.port)}`, '--key', keyFile]);
  procs.push(pc);
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
  const seq = async (s: string, file: string, size: number) => {
    if (s === 'nfs') return (await nfsbench({ ...nfs, op: 'seqread', file, size, xfer: MiB, depth: 1, timeoutSec: 3600 })).mib_per_s!;
    if (s === 'gvfs') return (await nfsbench({ ...gvfs, op: 'seqread', file, size, xfer: MiB, depth: 1, timeoutSec: 3600 })).mib_per_s!;
    if (s === 'sshfs') return size / MiB / (await secs(() => run('dd', [`if=${mnt}/${file}`, 'of=/dev/null', 'bs=1M', 'status=none'])));
    return size / MiB / (await secs(() => scp(file)));
  };
  const systems = ['gvfs', 'sshfs', 'scp', 'nfs'];
  try {
    const res = await ctx.compare(`wan-${profile.name}`, systems, [
      { name: `seq read ${image / MiB} MiB image`, unit: 'MiB/s', run: (s) => seq(s, 'disk.img', image) },
      { name: `memory-state read ${mem / MiB} MiB (50% zero)`, unit: 'MiB/s', run: (s) => seq(s, 'memory.ram', mem) },
      {
        name: `random 4 KiB reads x${randOps}`,
        unit: 'ops/s',
        run: async (s) => {
          if (s === 'nfs' || s === 'gvfs') return (await nfsbench({ ...(s === 'nfs' ? nfs : gvfs), op: 'randread', file: 'disk.img', size: image, ops: randOps, depth: 1, timeoutSec: 3600 })).ops_per_s!;
          if (s === 'sshfs') return randOps / (await secs(() => localRandom(`${mnt}/disk.img`, image)));
          return randOps / (await secs(async () => {
            await scp('disk.img');
            await localRandom(copy, image);
          }));
        },
      },
    ]);
    const linkMiBs = profile.bitsPerSec / 8 / MiB;
    res.notes.push(`link ${profile.name}: set ${profile.rttMs} ms RTT, ${profile.bitsPerSec / 1e6} Mbit/s per direction; measured ${check.rttMs.toFixed(2)} ms, ${check.mbitPerSec.toFixed(1)} Mbit/s; link = ${linkMiBs.toFixed(1)} MiB/s`);
    res.notes.push('nfs and gvfs read with nfsbench, 1 MiB READs, one request at a time (the client a program gets without read-ahead); gvfs here has no cache yet');
    for (const w of res.workloads) if (w.unit === 'MiB/s') for (const [s, v] of Object.entries(w.systems)) res.notes.push(`${w.name}: ${s} = ${(v.median / linkMiBs).toFixed(2)}x link bandwidth`);
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
