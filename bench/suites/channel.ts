import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { makeSelfSignedCert } from '../../src/channel/tls.js';
import { spawnGvfs, type GvfsProcess } from '../../test/helpers/gvfs-proc.js';
import { startSshd } from '../../test/helpers/sshd.js';
import { nfsbench } from '../lib/libnfs-client.js';
import type { BenchContext, SuiteResult } from '../lib/report.js';
import { peakRssMiB } from '../lib/stats.js';
import { randomFile } from '../lib/files.js';

const run = promisify(execFile);
const MiB = 1 << 20;

/**
 * Issue 6: the proxy chain over plain TCP, TLS 1.3 and an SSH tunnel through
 * OpenSSH, beside scp and sshfs through the same sshd, in one run. Client:
 * nfsbench against the proxy client; the proxy server exports a local
 * directory (`--export`), so the channel is what differs.
 */
export async function channelSuite(ctx: BenchContext): Promise<SuiteResult> {
  const size = ctx.quick ? 64 * MiB : 1024 * MiB;
  const files = ctx.quick ? 200 : 2000;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-chan-'));
  const exp = path.join(dir, 'export');
  await fs.mkdir(exp);
  await randomFile(path.join(exp, 'read.bin'), size);
  const keyFile = path.join(dir, 'session.key');
  await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
  const cert = await makeSelfSignedCert(path.join(dir, 'tls'));
  const sshd = await startSshd(path.join(dir, 'sshd'));
  const procs: GvfsProcess[] = [];
  const sp = async (args: string[]) => {
    const p = await spawnGvfs(args);
    procs.push(p);
    return p;
  };
  const common = ['--export', exp, '--key', keyFile];
  const plainPs = await sp(['proxy-server', '--listen', '127.0.0.1:0', ...common, '--state-dir', path.join(dir, 'ps1')]);
  const tlsPs = await sp(['proxy-server', '--listen', '127.0.0.1:0', ...common, '--tls-cert', cert.cert, '--tls-key', cert.key, '--state-dir', path.join(dir, 'ps2')]);
  const pcs: Record<string, GvfsProcess> = {
    plain: await sp(['proxy-client', '--server', `127.0.0.1:${plainPs.port}`, '--key', keyFile]),
    tls: await sp(['proxy-client', '--server', `127.0.0.1:${tlsPs.port}`, '--key', keyFile, '--tls-fingerprint', cert.fingerprint]),
    ssh: await sp([
      'proxy-client', '--server', `127.0.0.1:${plainPs.port}`, '--key', keyFile,
      '--via', `ssh://root@127.0.0.1:${sshd.port}`, '--ssh-key', sshd.userKey, '--known-hosts', sshd.knownHosts,
    ]),
  };
  const sshOpts = ['-i', sshd.userKey, '-o', `UserKnownHostsFile=${sshd.knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes'];
  const mnt = path.join(dir, 'sshfs');
  await fs.mkdir(mnt);
  await run('sshfs', ['-p', String(sshd.port), '-o', `IdentityFile=${sshd.userKey},UserKnownHostsFile=${sshd.knownHosts},StrictHostKeyChecking=yes`, `root@127.0.0.1:${exp}`, mnt]);
  const secs = async (f: () => Promise<unknown>) => {
    const t0 = performance.now();
    await f();
    return (performance.now() - t0) / 1000;
  };
  const dd = (args: string[]) => run('dd', [...args, 'bs=1M', 'status=none'], { maxBuffer: 1 << 20 });
  const NA = async () => NaN;
  const nb = (s: string, a: Omit<Parameters<typeof nfsbench>[0], 'nfsPort' | 'mountPort' | 'exportPath'>) => nfsbench({ nfsPort: pcs[s].port, mountPort: pcs[s].port, exportPath: '/', ...a });
  const out = path.join(dir, 'out.bin');
  const systems = ['plain', 'tls', 'ssh', 'sshfs', 'scp'];
  try {
    const res = await ctx.compare('channel', systems, [
      {
        name: `seq read ${size / MiB} MiB`,
        unit: 'MiB/s',
        run: async (s) => {
          if (pcs[s]) return (await nb(s, { op: 'seqread', file: 'read.bin', size, xfer: MiB, depth: 4 })).mib_per_s!;
          if (s === 'sshfs') return size / MiB / (await secs(() => dd([`if=${mnt}/read.bin`, 'of=/dev/null'])));
          return size / MiB / (await secs(() => run('scp', ['-q', '-P', String(sshd.port), ...sshOpts, `root@127.0.0.1:${exp}/read.bin`, out])));
        },
      },
      {
        name: `seq write ${size / MiB} MiB`,
        unit: 'MiB/s',
        run: async (s) => {
          if (pcs[s]) return (await nb(s, { op: 'seqwrite', file: `w-${s}.bin`, size, xfer: MiB, depth: 4 })).mib_per_s!;
          if (s === 'sshfs') return size / MiB / (await secs(() => dd(['if=' + path.join(exp, 'read.bin'), `of=${mnt}/w-sshfs.bin`, 'conv=fsync'])));
          return size / MiB / (await secs(() => run('scp', ['-q', '-P', String(sshd.port), ...sshOpts, path.join(exp, 'read.bin'), `root@127.0.0.1:${exp}/w-scp.bin`])));
        },
      },
      {
        // Files per second, not calls: nfsbench makes 4 NFS calls per file (CREATE, LOOKUP, GETATTR, REMOVE), the
        // sshfs loop 3 system calls (create+close, stat, unlink); per file both do one create, one stat, one remove.
        name: `create/stat/remove ${files} files`,
        unit: 'files/s',
        run: async (s) => {
          if (pcs[s]) {
            const r = await nb(s, { op: 'meta', dir: `m-${s}`, files });
            return files / r.seconds;
          }
          if (s !== 'sshfs') return NA();
          const d = path.join(mnt, 'm-sshfs');
          await fs.mkdir(d);
          const t = await secs(async () => {
            for (let i = 0; i < files; i++) await (await fs.open(path.join(d, `f${i}`), 'wx')).close();
            for (let i = 0; i < files; i++) await fs.stat(path.join(d, `f${i}`));
            for (let i = 0; i < files; i++) await fs.unlink(path.join(d, `f${i}`));
          });
          await fs.rmdir(d);
          return files / t;
        },
      },
    ]);
    res.notes.push(`sshd: OpenSSH on loopback (ed25519 keys); proxy server exports a local directory with a session key; nfsbench 1 MiB x4 for reads/writes; sshfs via dd bs=1M (write with conv=fsync), scp of the same file; small files: files/s for every system, each file created, stat'ed and removed (nfsbench: CREATE, LOOKUP + GETATTR, REMOVE; sshfs: open(O_CREAT|O_EXCL)+close, stat, unlink from Node), so every system does the same per file`);
    res.memory = Object.fromEntries(await Promise.all(procs.map(async (p, i) => [`gvfs#${i}PeakRssMiB`, await peakRssMiB(p.pid)] as const)));
    return res;
  } finally {
    await run('fusermount', ['-u', mnt]).catch(() => run('umount', ['-l', mnt]).catch(() => undefined));
    for (const p of procs.reverse()) await p.stop();
    await sshd.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
