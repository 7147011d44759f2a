import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { newSessionKey, writeKeyFile } from '../channel/session-key.js';
import { makeSelfSignedCert } from '../channel/tls.js';
import { setLogLevel } from '../util/log.js';
import { cloneVm, listVms, stopVm } from '../vm/clone.js';
import { COUNTER_RE, demoGuest } from '../vm/demo-guest.js';
import { verifyFiles } from '../vm/manifest.js';
import { publishVm } from '../vm/publish.js';
import { ensureSessionMount } from '../vm/session-mount.js';
import { parseSize } from './util.js';
import { gvfsArgv } from './self.js';

const run = promisify(execFile);
const MiB = 2 ** 20;

/**
 * `gvfs demo vm`: the reason GVFS exists, on loopback. A state server
 * publishes the demo VM (Debian cloud kernel, busybox initramfs, built from
 * Debian packages by scripts/guest/build.sh) and serves it with a proxy
 * server (session key, TLS 1.3); the compute server clones it twice at
 * once through one GVFS session mount (disk cache, meta-data), and the
 * guests' counters go on from where the golden VM stopped while only part
 * of its memory crosses the network.
 */
export function demoVmCommand(): Command {
  return new Command('vm')
    .description('Publish the demo VM on a local state server and clone two copies through a GVFS session (QEMU, TCG)')
    .option('--memory <size>', 'guest memory', parseSize, 256 * MiB)
    .option('--keep', 'leave the demo directory (and the clones stopped) in place')
    .action(async (o: { memory: number; keep?: boolean }) => {
      if (!process.env.GVFS_LOG_LEVEL) setLogLevel('error');
      const say = (s: string) => console.log(s);
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-demo-vm-'));
      const exp = path.join(dir, 'state-server', 'export');
      const vms = path.join(exp, 'vms');
      await fs.mkdir(vms, { recursive: true });
      const stateRoot = path.join(dir, 'compute-server', 'vms');
      let ps: { proc: ChildProcess; port: number; close(): Promise<void> } | undefined;
      const cleanup = async () => {
        for (const { record } of await listVms(stateRoot).catch(() => [])) await stopVm({ name: record.name, stateRoot }).catch(() => undefined);
        await ps?.close().catch(() => undefined);
        if (!o.keep) await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
      };
      const onSignal = () => void cleanup().then(() => process.exit(130));
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        say('building the demo guest if needed (scripts/guest/build.sh: Debian cloud kernel + busybox-static initramfs) ...');
        const g = await demoGuest();
        say(`guest: ${g.kernelPackage} ${g.kernelVersion}, its disk holds data.bin (md5 ${g.dataMd5})\n`);

        say(`state server: gvfs vm publish demo --demo --memory ${o.memory / MiB}M --dir ${vms}`);
        const pub = await publishVm({
          dir: vms,
          metaRoot: exp,
          name: 'demo',
          kernel: g.kernel,
          initrd: g.initrd,
          append: g.append,
          disk: g.disk,
          memoryBytes: o.memory,
          ready: COUNTER_RE,
          log: (s) => say(`  ${s}`),
        });
        for (const f of pub.manifest.files) say(`  ${f.name.padEnd(11)} ${(f.size / MiB).toFixed(1).padStart(7)} MiB  sha256 ${f.sha256.slice(0, 16)}...`);
        say(`  meta-data: ${pub.meta.status}${pub.meta.note ? ` (${pub.meta.note})` : ''}`);
        const goldenN = Number(COUNTER_RE.exec(pub.manifest.lastConsoleLine ?? '')?.[1]);
        say(`  the golden VM was saved right after printing: ${pub.manifest.lastConsoleLine}\n`);

        const key = newSessionKey('/O=Grid/CN=alice', 3600, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, gids: [] });
        const keyFile = path.join(dir, 'compute-server', 'alice.key');
        await fs.mkdir(path.dirname(keyFile), { recursive: true });
        await writeKeyFile(keyFile, key);
        const cert = await makeSelfSignedCert(path.join(dir, 'state-server', 'tls'));
        // The proxy server in a process of its own, as on a real state server: this process reads
        // through the mount, and a server sharing its thread pool with those reads could starve.
        ps = await startProxyServer(['--listen', '127.0.0.1:0', '--export', `${exp}=/vm:ro`, '--key', keyFile, '--tls-cert', cert.cert, '--tls-key', cert.key, '--state-dir', path.join(dir, 'state-server', 'gvfs')]);
        say(`state server: gvfs proxy-server on 127.0.0.1:${ps.port} (TLS 1.3, session ${key.id} for ${key.user}, pid ${ps.proc.pid})`);
        const addr = { port: ps.port };
        const cacheDir = path.join(dir, 'compute-server', 'cache');
        const mountArgs = ['--server', `127.0.0.1:${addr.port}`, '--key', keyFile, '--tls-fingerprint', cert.fingerprint, '--cache-dir', cacheDir];
        const mount = await ensureSessionMount(stateRoot, mountArgs, cacheDir);
        say(`compute server: gvfs mount ${mountArgs.join(' ').replace(cert.fingerprint, cert.fingerprint.slice(0, 11) + '...')} ${mount.mnt}\n`);

        say('compute server: gvfs vm clone demo --as a   and   gvfs vm clone demo --as b   (at once)');
        const t0 = performance.now();
        const clones = await Promise.all(['a', 'b'].map((as) => cloneVm({ name: 'demo', as, mount, vmPath: 'vms', stateRoot })));
        for (const c of clones) say(`  ${c.record.name}: QEMU pid ${c.record.pid}, running again after ${(c.times.runningMs / 1000).toFixed(2)} s (overlay ${c.record.overlay})`);
        let ok = true;
        for (const c of clones) {
          const lines = await waitLines(c.record.console, 3);
          say(`  ${c.record.name} console (${((performance.now() - t0) / 1000).toFixed(1)} s after the clone command):`);
          for (const l of lines) say(`    ${l.line}`);
          const first = lines[0].n;
          const good = first > goldenN && lines.every((l) => l.md5 === g.dataMd5);
          ok &&= good;
          say(`    -> ${good ? `the counter went on from ${goldenN} (memory came along) and the checksum matches data.bin (disk came along)` : 'UNEXPECTED: the counter or checksum is wrong'}`);
        }
        const cs = JSON.parse((await run(process.execPath, gvfsArgv(['cache', 'stats', '--cache-dir', cacheDir, '--json']))).stdout);
        const ms = JSON.parse((await run(process.execPath, gvfsArgv(['meta', 'stats', '--cache-dir', cacheDir, '--json']))).stdout);
        const fetched = cs.sessions.reduce((s: number, x: { stats: { channelReadBytes?: number } }) => s + (x.stats.channelReadBytes ?? 0), 0);
        const golden = pub.manifest.files.reduce((s, f) => s + f.size, 0);
        say(`\nnetwork: ${((fetched + ms.bulkWireBytes) / MiB).toFixed(1)} MiB crossed for both clones (${(fetched / MiB).toFixed(1)} MiB of blocks fetched on demand, ${(ms.bulkWireBytes / MiB).toFixed(1)} MiB of compressed bulk transfers carrying ${(ms.bulkRawBytes / MiB).toFixed(1)} MiB)`);
        say(`         ${(ms.zeroBytes / MiB).toFixed(1)} MiB of zero blocks answered on the compute server; the golden VM is ${(golden / MiB).toFixed(1)} MiB (RAM file ${(o.memory / MiB).toFixed(0)} MiB), and copy-then-run would have moved all of it`);
        const changed = await verifyFiles(pub.dir, pub.manifest);
        say(`golden files on the state server: ${changed.length ? `CHANGED: ${changed.join(', ')}` : 'unchanged (every SHA-256 as published): the clones wrote only to their local overlays and private memory'}`);
        if (!ok || changed.length) process.exitCode = 1;
        say('\nstopping the clones (gvfs vm stop a b) and the session');
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await cleanup();
      }
    });
}

async function waitLines(consoleFile: string, count: number, timeoutMs = 120_000): Promise<Array<{ line: string; n: number; md5: string }>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const text = await fs.readFile(consoleFile, 'utf8').catch(() => '');
    const lines = text
      .split('\n')
      .map((line) => ({ line: line.trim(), m: COUNTER_RE.exec(line) }))
      .filter((x) => x.m)
      .map((x) => ({ line: x.line, n: Number(x.m![1]), md5: x.m![2] }));
    if (lines.length >= count) return lines.slice(0, count);
    if (Date.now() > end) throw new Error(`${consoleFile}: no ${count} counter lines within ${timeoutMs / 1000} s:\n${text.slice(-500)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `gvfs proxy-server ... --json` as a child process; resolves once it listens. */
async function startProxyServer(args: string[]): Promise<{ proc: ChildProcess; port: number; close(): Promise<void> }> {
  const proc = spawn(process.execPath, gvfsArgv(['proxy-server', ...args, '--json']), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GVFS_LOG_LEVEL: process.env.GVFS_LOG_LEVEL ?? 'error' } });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    proc.once('exit', (c) => reject(new Error(`gvfs proxy-server exited with ${c}: ${err.trim()}`)));
    createInterface({ input: proc.stdout! }).once('line', (l) => resolve(JSON.parse(l).listening.port));
  });
  proc.removeAllListeners('exit');
  return {
    proc,
    port,
    async close() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}
