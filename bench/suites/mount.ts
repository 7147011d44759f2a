import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { NODE_FLAGS } from '../../src/cli/self.js';
import { spawnGvfs, type GvfsProcess } from '../../test/helpers/gvfs-proc.js';
import { startSshd, type Sshd } from '../../test/helpers/sshd.js';
import { packSmallFileTree, randomFile } from '../lib/files.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';
import { peakRssMiB } from '../lib/stats.js';

const run = promisify(execFile);
const MiB = 1 << 20;
const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

/** Drop the page cache (all of it: client and server side are one kernel here); false if not allowed. */
export async function dropCaches(): Promise<boolean> {
  try {
    await run('sync');
    await fs.writeFile('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

export async function secs(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return (performance.now() - t0) / 1000;
}

/**
 * Another build's CLI (dist/src/cli/main.js) to mount with beside this one, as system `gvfs-before`: a
 * front end compared with its predecessor in one run (bench/results/issue18-mount/).
 */
const BEFORE_CLI = process.env.GVFS_BENCH_BEFORE_CLI;

/** `gvfs mount --foreground --json` in its own process (so its RSS is its own). */
export async function spawnMount(args: string[], cli = CLI): Promise<{ proc: ChildProcess; mnt: string; stop(): Promise<void> }> {
  const proc = spawn(process.execPath, [...NODE_FLAGS, cli, 'mount', ...args, '--foreground', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve);
    proc.once('exit', (c) => reject(new Error(`gvfs mount exited with ${c}`)));
  });
  return {
    proc,
    mnt: JSON.parse(line).mounted,
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}

/**
 * Issue 4: unmodified programs (dd, tar, cat) on three directories in one
 * run: local disk, sshfs to a local OpenSSH server, and `gvfs mount` of a
 * proxy server that exports the same directory (session key, loopback).
 * Sequential read of one large file, and a small-file workload: unpack a tar
 * of ~5,000 files, then read them all back.
 */
export async function mountSuite(ctx: BenchContext): Promise<SuiteResult> {
  // GVFS_BENCH_MOUNT_MIB / GVFS_BENCH_MOUNT_FILES: other sizes (a loaded machine, many interleaved runs).
  const size = Number(process.env.GVFS_BENCH_MOUNT_MIB ?? (ctx.quick ? 64 : 1024)) * MiB;
  const nFiles = Number(process.env.GVFS_BENCH_MOUNT_FILES ?? (ctx.quick ? 500 : 5000));
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-mount-'));
  const exp = path.join(dir, 'export');
  await fs.mkdir(exp);
  await randomFile(path.join(exp, 'read.bin'), size);

  const tarFile = await packSmallFileTree(dir, nFiles);
  const tarBytes = (await fs.stat(tarFile)).size;

  const keyFile = path.join(dir, 'session.key');
  await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
  let ps: GvfsProcess | undefined;
  let gm: Awaited<ReturnType<typeof spawnMount>> | undefined;
  let gd: Awaited<ReturnType<typeof spawnMount>> | undefined;
  let gb: Awaited<ReturnType<typeof spawnMount>> | undefined;
  const beforeMnt = path.join(dir, 'gvfs-before');
  let sshd: Sshd | undefined;
  const sshfsMnt = path.join(dir, 'sshfs');
  const gvfsMnt = path.join(dir, 'gvfs');
  const deferMnt = path.join(dir, 'gvfs-deferred');
  const canDrop = await dropCaches();
  try {
    ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, 'ps')]);
    await fs.mkdir(gvfsMnt);
    gm = await spawnMount(['--server', `127.0.0.1:${ps.port}`, '--key', keyFile, gvfsMnt]);
    await fs.mkdir(deferMnt);
    gd = await spawnMount(['--server', `127.0.0.1:${ps.port}`, '--key', keyFile, '--commit-delay', '1000', deferMnt]);
    if (BEFORE_CLI) {
      await fs.mkdir(beforeMnt);
      gb = await spawnMount(['--server', `127.0.0.1:${ps.port}`, '--key', keyFile, beforeMnt], BEFORE_CLI);
    }
    sshd = await startSshd(path.join(dir, 'sshd'));
    await fs.mkdir(sshfsMnt);
    await run('sshfs', ['-p', String(sshd.port), '-o', `IdentityFile=${sshd.userKey},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null`, `root@127.0.0.1:${exp}`, sshfsMnt]);

    const root: Record<string, string> = { local: exp, sshfs: sshfsMnt, gvfs: gvfsMnt, 'gvfs-deferred': deferMnt, 'gvfs-before': beforeMnt };
    // sshfs last: the table's ratios are then each system / sshfs (the issue's yardstick).
    const systems = ['local', ...(BEFORE_CLI ? ['gvfs-before'] : []), 'gvfs', 'gvfs-deferred', 'sshfs'];
    const nMeta = ctx.quick ? 200 : 1000;
    let n = 0;
    const res = await ctx.compare('mount', systems, [
      {
        name: `seq read ${size / MiB} MiB (dd bs=1M)`,
        unit: 'MiB/s',
        run: async (s) => {
          await dropCaches();
          return size / MiB / (await secs(() => run('dd', [`if=${root[s]}/read.bin`, 'of=/dev/null', 'bs=1M', 'status=none'])));
        },
      },
      {
        name: `seq write ${size / MiB} MiB (dd bs=1M conv=fsync)`,
        unit: 'MiB/s',
        run: async (s) => {
          const out = `${root[s]}/write-${n++}.bin`;
          const r = size / MiB / (await secs(() => run('dd', ['if=/dev/zero', `of=${out}`, 'bs=1M', `count=${size / MiB}`, 'conv=fsync', 'status=none'])));
          await fs.rm(out);
          return r;
        },
      },
      {
        name: `metadata loop: ${nMeta} × (create, stat, chmod, rename, stat, unlink)`,
        unit: 'loops/s',
        run: async (s) => {
          const d = path.join(root[s], `meta-${n++}`);
          await fs.mkdir(d);
          const script = `import os,sys\nd=sys.argv[1]\nfor i in range(int(sys.argv[2])):\n  a=f'{d}/f{i}'; b=f'{d}/g{i}'\n  os.close(os.open(a,os.O_CREAT|os.O_WRONLY,0o644)); os.stat(a); os.chmod(a,0o600); os.rename(a,b); os.stat(b); os.unlink(b)`;
          const t = await secs(() => run('python3', ['-c', script, d, String(nMeta)]));
          await fs.rmdir(d);
          return nMeta / t;
        },
      },
      {
        name: `small files: tar -x ${nFiles} then read all back`,
        unit: 'files/s',
        run: async (s) => {
          const d = path.join(root[s], `small-${n++}`);
          await fs.mkdir(d);
          const tx = await secs(() => run('tar', ['-C', d, '-xf', tarFile]));
          await dropCaches();
          // tar to a pipe reads every file (tar -cf /dev/null would skip the contents).
          const tr = await secs(() => run('sh', ['-c', `tar -C '${d}' -cf - tree | cat > /dev/null`]));
          await run('rm', ['-rf', d]);
          return (2 * nFiles) / (tx + tr);
        },
      },
    ]);
    res.notes.push(
      `file ${size / MiB} MiB of random bytes; small-file tar ${nFiles} files in 50 directories (${(tarBytes / MiB).toFixed(1)} MiB), rate = 2 × files / (unpack + read-back seconds)`,
      `gvfs: gvfs mount (FUSE, attribute timeout 1 s, COMMIT at every close)${BEFORE_CLI ? `; gvfs-before: the same mounted by ${BEFORE_CLI}` : ''}; gvfs-deferred: the same with --commit-delay 1000 (close returns once the server has the data, COMMIT 1 s later) → proxy server (--export of the same directory, session key, loopback TCP); sshfs ${(await run('sshfs', ['--version'])).stdout.split('\n')[0].trim()} to OpenSSH sshd on loopback with default options`,
      canDrop ? 'page cache dropped (echo 3 > /proc/sys/vm/drop_caches) before every read: client and server share this kernel, so reads come from disk for every system' : 'page cache NOT dropped (no permission): reads may be served from memory',
    );
    res.memory = { proxyServerPeakRssMiB: await peakRssMiB(ps.pid), mountPeakRssMiB: await peakRssMiB(gm.proc.pid!), mountDeferredPeakRssMiB: await peakRssMiB(gd.proc.pid!) };
    return res;
  } finally {
    await run('fusermount', ['-u', '-z', sshfsMnt]).catch(() => undefined);
    await gm?.stop();
    await gd?.stop();
    await gb?.stop();
    await ps?.stop();
    await sshd?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
