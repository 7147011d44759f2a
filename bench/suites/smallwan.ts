import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { spawnGvfs, type GvfsProcess } from '../../test/helpers/gvfs-proc.js';
import { startSshd, type Sshd } from '../../test/helpers/sshd.js';
import { packSmallFileTree } from '../lib/files.js';
import { checkLink, linkTolerance, PROFILES, startLink, type Link } from '../lib/link-emulator.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';
import { secs, spawnMount } from './mount.js';

const run = promisify(execFile);

/** sshfs's default dcache_timeout (sshfs -h): how long it trusts names and attributes it has seen. */
const SSHFS_CACHE_S = 20;

/**
 * Issue 19: small files over the wide-area link, `gvfs mount` against sshfs
 * through the same emulated link (one relay each, the same profile):
 * create/stat/remove of N files (one python loop, the same calls on both)
 * and `tar -x` of a tree of small files. gvfs: a session mount of a proxy
 * server exporting the directory, with a disk cache and its defaults
 * (write-back, ttl consistency), and the same with --write-through;
 * sshfs: default options to OpenSSH.
 */
export async function smallWanSuite(ctx: BenchContext, profileName = 'wan'): Promise<SuiteResult> {
  const profile = PROFILES[profileName];
  if (!profile) throw new Error(`unknown link profile ${profileName}`);
  const check = await checkLink(profile, linkTolerance(ctx), 3, !ctx.quick);
  const nMeta = ctx.quick ? 20 : 100;
  const nTar = ctx.quick ? 20 : 100;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-smallwan-'));
  const exp = path.join(dir, 'export');
  await fs.mkdir(exp);
  const tarFile = await packSmallFileTree(dir, nTar);
  const keyFile = path.join(dir, 'session.key');
  await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
  const links: Link[] = [];
  let ps: GvfsProcess | undefined;
  let gm: Awaited<ReturnType<typeof spawnMount>> | undefined;
  let gw: Awaited<ReturnType<typeof spawnMount>> | undefined;
  let g20: Awaited<ReturnType<typeof spawnMount>> | undefined;
  let sshd: Sshd | undefined;
  const gvfsMnt = path.join(dir, 'gvfs');
  const wtMnt = path.join(dir, 'gvfs-wt');
  const mnt20 = path.join(dir, 'gvfs-20s');
  const sshfsMnt = path.join(dir, 'sshfs');
  try {
    ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, 'ps')]);
    const psLink = await startLink(profile, { host: '127.0.0.1', port: ps.port });
    links.push(psLink);
    await fs.mkdir(gvfsMnt);
    gm = await spawnMount(['--server', `127.0.0.1:${psLink.port}`, '--key', keyFile, '--cache-dir', path.join(dir, 'cache'), gvfsMnt]);
    await fs.mkdir(wtMnt);
    gw = await spawnMount(['--server', `127.0.0.1:${psLink.port}`, '--key', keyFile, '--cache-dir', path.join(dir, 'cache-wt'), '--write-through', wtMnt]);
    await fs.mkdir(mnt20);
    g20 = await spawnMount(['--server', `127.0.0.1:${psLink.port}`, '--key', keyFile, '--cache-dir', path.join(dir, 'cache-20s'), '--attr-timeout', String(SSHFS_CACHE_S), mnt20]);
    sshd = await startSshd(path.join(dir, 'sshd'));
    const sshLink = await startLink(profile, { host: '127.0.0.1', port: sshd.port });
    links.push(sshLink);
    await fs.mkdir(sshfsMnt);
    await run('sshfs', ['-p', String(sshLink.port), '-o', `IdentityFile=${sshd.userKey},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null`, `root@127.0.0.1:${exp}`, sshfsMnt]);
    const root: Record<string, string> = { gvfs: gvfsMnt, 'gvfs-wt': wtMnt, 'gvfs-20s': mnt20, sshfs: sshfsMnt };
    let n = 0;
    const res = await ctx.compare(`smallwan-${profile.name}`, ['gvfs', 'gvfs-wt', 'gvfs-20s', 'sshfs'], [
      {
        name: `create/stat/remove ${nMeta} files`,
        unit: 'files/s',
        run: async (s) => {
          const d = path.join(root[s], `meta-${n++}`);
          await fs.mkdir(d);
          // Timed inside the loop: python's own start (0.34 s on this machine) is no file operation, and
          // added to both sides it moved the ratio toward 1 (3.4 ms a file at 100 files).
          const script = `import os,sys,time\nd=sys.argv[1]\nt=time.perf_counter()\nfor i in range(int(sys.argv[2])):\n  a=f'{d}/f{i}'\n  os.close(os.open(a,os.O_CREAT|os.O_EXCL|os.O_WRONLY,0o644)); os.stat(a); os.unlink(a)\nprint(time.perf_counter()-t)`;
          const t = Number((await run('python3', ['-c', script, d, String(nMeta)])).stdout.trim());
          if (!(t > 0)) throw new Error(`create/stat/remove: no time from the loop`);
          await fs.rmdir(d);
          return nMeta / t;
        },
      },
      {
        name: `tar -x ${nTar} small files in 50 directories`,
        unit: 'files/s',
        run: async (s) => {
          const d = path.join(root[s], `tar-${n++}`);
          await fs.mkdir(d);
          const t = await secs(() => run('tar', ['-C', d, '-xf', tarFile]));
          await run('rm', ['-rf', d]);
          return nTar / t;
        },
      },
    ]);
    if (check.warning) res.notes.push(`WARNING: ${check.warning}`);
    res.notes.push(
      `link ${profile.name}: ${profile.rttMs} ms RTT, ${profile.bitsPerSec / 1e6} Mbit/s per direction (measured ${check.rttMs.toFixed(2)} ms, ${check.mbitPerSec.toFixed(1)} Mbit/s); one relay for the proxy server, one for sshd`,
      `gvfs: gvfs mount --cache-dir (write-back, ttl consistency: the defaults) of a proxy server exporting the directory, session key: the timed part ends when the program exits, and write-back data may still be on its way; gvfs-wt: the same with --write-through (every write on the server before it returns, as sshfs); gvfs-20s: the defaults with --attr-timeout ${SSHFS_CACHE_S} (sshfs's own default dcache_timeout: names and attributes trusted as long as sshfs trusts them; gvfs's default is 1 s); sshfs: default options`,
      `create/stat/remove: one python loop (open O_CREAT|O_EXCL + close, stat, unlink) per file, timed inside the program (not python's start); tar: GNU tar -x of ${nTar} files of 200 B to 16 KiB`,
    );
    return res;
  } finally {
    await run('fusermount', ['-u', '-z', sshfsMnt]).catch(() => undefined);
    await gm?.stop();
    await gw?.stop();
    await g20?.stop();
    await ps?.stop();
    await sshd?.stop();
    for (const l of links) await l.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
