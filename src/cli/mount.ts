import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Command, InvalidArgumentError } from 'commander';
import { RemoteNfs } from '../backends/remote-nfs/remote-nfs.js';
import { LowLevelFrontend } from '../frontends/fuse/lowlevel-frontend.js';
import { processCredentials, type CallerPolicy } from '../frontends/fuse/lowlevel-callers.js';
import { watchUnmount } from '../frontends/fuse/mountpoint.js';
import { checkLink, stackClient } from '../proxy/proxy-client.js';
import type { Backend } from '../backend/backend.js';
import type { DataCounters } from '../util/counters.js';
import { parseNfsUrl } from '../proxy/upstream-url.js';
import { AuthFlavor, type Credentials } from '../rpc/types.js';
import { addLinkOptions, linkOptions } from './proxy-client.js';
import { createPrivateFile, openAppendNoFollow, privateDir, tailOf } from '../util/private-dir.js';
import { DRAIN_MS, parseIntArg, untilSignal } from './util.js';
import { flushLogs, logger } from '../util/log.js';

const log = logger('mount');
// The closing summary is for the operator (and tests read it): kept at info even when GVFS_LOG_LEVEL is quieter.
const statsLog = logger('mount-stats');
if (statsLog.levelVal > 30 && statsLog.level !== 'silent') statsLog.level = 'info';
import { cacheChecks, nfsReachable } from '../metrics/health.js';
import { EXIT, ExitStatusError } from './exit-codes.js';
import { addMetricsOptions, metricsAddress, startMetrics } from './metrics-options.js';
import { gvfsArgv } from './self.js';
import type { ClientStack } from '../proxy/proxy-client.js';
import { registerDaemon } from '../util/runtime-state.js';
import { notifySystemd } from './sd-notify.js';

const DRAIN_TIMEOUT_EXIT = EXIT.DRAIN_TIMEOUT;

function parseIds(v: string): { uid: number; gid: number; gids: number[] } {
  const m = /^(\d+):(\d+)(?::(\d+(?:,\d+)*))?$/.exec(v);
  if (!m) throw new InvalidArgumentError(`expected UID:GID[:G1,G2...], got "${v}"`);
  return { uid: Number(m[1]), gid: Number(m[2]), gids: m[3] ? m[3].split(',').map(Number).slice(0, 16) : [] };
}

function parseSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`expected seconds (>= 0), got "${v}"`);
  return n;
}

interface MountOpts extends Record<string, any> {
  server: string;
  as?: { uid: number; gid: number; gids: number[] };
  user?: string;
  export?: string;
  attrTimeout: number;
  commitDelay: number;
  connections: number;
  timeout: number;
  foreground?: boolean;
  log?: string;
  json?: boolean;
  allowOther?: boolean;
  defaultPermissions: boolean;
  readOnly?: boolean;
  passthrough: boolean;
}

export function mountCommand(): Command {
  // The proxy-server link options (--server, --key, --tls-fingerprint, --via, --user, --connections, --timeout ...) are proxy-client's.
  return addLinkOptions(
    addMetricsOptions(new Command('mount')).description(
      'Mount what a GVFS proxy server serves as a local directory, through FUSE, for unmodified programs; --server nfs://HOST[:PORT]/PATH[?mountport=N] mounts a plain NFSv3 server instead',
    ),
  )
    .argument('<mountpoint>', 'an existing directory to mount on')
    .option('--export <path>', 'the export to mount on the proxy server (default: its only export)')
    .option('--as <uid:gid[:g1,g2...]>', "AUTH_SYS identity of every call (default: this process's); a proxy server maps the session's identity instead", parseIds)
    .option('--attr-timeout <seconds>', 'longest a change made elsewhere takes to show through the mount (attributes and names); 0: always ask the server', parseSeconds, 1)
    .option('--commit-delay <ms>', '0: every close waits for COMMIT (data durable on the server when close returns, as with NFS); N > 0: close returns once the server has the data, COMMIT follows N ms later in the background (fsync still commits at once)', parseIntArg, 0)
    .option('--allow-other', 'let other local users use the mount (FUSE allow_other; default: on when root, as each caller is checked as itself)')
    .option('--no-allow-other', 'only the mounting user may use the mount')
    .option('--no-default-permissions', 'leave permission checks to the server (ACCESS per open and access(2)) instead of the kernel checking mode bits for every caller (default_permissions)')
    .option('--read-only', 'mount read-only (every change refused with EROFS); then a file the disk cache holds whole is handed to the kernel to read itself (FUSE passthrough, Linux 6.9+, as root), at the local disk\'s speed')
    .option('--no-passthrough', 'with --read-only: every read through the mount, none handed to the kernel')
    .option('--foreground', 'stay in the foreground until SIGINT/SIGTERM (default: detach once mounted)')
    .option('--log <file>', 'log file of a detached mount, appended to (not a symbolic link); default: a new mount-PID.log in a private directory (/run/gvfs for root, else $XDG_RUNTIME_DIR/gvfs or ~/.local/state/gvfs/run)')
    .option('--json', 'print the mount as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  gvfs mount --server 10.0.0.5:7000 --key alice.key --tls-fingerprint SHA256 /mnt/session\n  gvfs mount --server 127.0.0.1:7000 --user alice --insecure /mnt/session\n  gvfs mount --server nfs://127.0.0.1:2049/export --foreground /mnt/nfs\n  gvfs umount /mnt/session',
    )
    .action(async (mountpoint: string, o: MountOpts) => {
      // Checked in the parent too: a refused address fails before anything is mounted.
      const metricsAt = await metricsAddress({ metrics: o.metrics, metricsPublic: o.metricsPublic });
      if (!o.foreground) return detach(o);
      o.metricsAt = metricsAt;
      await serveMount(mountpoint, o);
    });
}

/** Re-run this command in the foreground in a new session, wait until it has mounted, print, leave it running. */
async function detach(o: MountOpts): Promise<void> {
  // Never a predictable name in a shared directory: a planted symlink there would take our appends (and show its tail).
  const { path: logFile, handle: log } = o.log ? { path: o.log, handle: await openAppendNoFollow(o.log) } : await createPrivateFile(await privateDir(), 'mount');
  const args = gvfsArgv([...process.argv.slice(2), '--foreground', '--json']);
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'pipe', log.fd] });
  let line: string;
  try {
    line = await new Promise<string>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout! });
      rl.once('line', resolve);
      child.once('exit', (code) => {
        void tailOf(log, 5)
          .catch(() => '')
          .then((text) => reject(new ExitStatusError(`mount failed (exit ${code}); ${logFile}:\n${text}`, code ?? EXIT.FAILED)));
      });
    });
  } finally {
    await log.close(); // the child has its own copy
  }
  child.stdout!.destroy();
  child.removeAllListeners('exit');
  child.unref();
  const info = { ...JSON.parse(line), log: logFile };
  if (o.json) console.log(JSON.stringify(info));
  else console.log(`gvfs mount: ${info.server}${info.export} on ${info.mounted} (pid ${info.pid}, log ${logFile}); gvfs umount ${info.mounted} to stop`);
}

/**
 * The backend the mount serves: for a proxy server, the proxy client's own
 * stack (the link, with the session's disk cache over it when --cache-dir
 * is given), as `gvfs proxy-client` builds it; for nfs://, a plain NFSv3
 * client.
 */
async function openBackend(o: MountOpts): Promise<{ backend: Backend; server: string; exportPath?: string; counters?: DataCounters; stack?: ClientStack; channel?: string; remote: RemoteNfs; sessionDir?: string; session?: string; close(): Promise<void> }> {
  if (o.server.startsWith('nfs://')) {
    const u = parseNfsUrl(o.server);
    if (o.export) throw new Error('give the export in the nfs:// URL, not --export');
    if (o.cacheDir) throw new Error('--cache-dir needs a proxy server (HOST:PORT), not an nfs:// URL');
    const remote = new RemoteNfs({ host: u.host, port: u.port, mountPort: u.mountPort, connections: o.connections, timeoutMs: o.timeout, maxInFlight: 64 });
    return { backend: remote, server: `nfs://${u.host}:${u.port}`, exportPath: u.path, remote, close: () => remote.close() };
  }
  const link = await linkOptions(o);
  const stack = stackClient(link);
  const { backend, cache, tunnel, remote, counters } = stack;
  // Closing the top of the stack closes what it wraps.
  const close = async () => {
    await backend.close();
    tunnel?.close();
  };
  try {
    await cache?.ready;
    // A refused key or TLS pin fails the mount with the reason (the detached parent prints it and exits non-zero).
    await checkLink(remote);
  } catch (e) {
    await close().catch(() => undefined);
    throw e;
  }
  const channel = link.ssh ? 'ssh' : link.tlsFingerprint ? 'tls' : 'tcp';
  return { backend, server: `${link.host}:${link.port}`, exportPath: o.export, counters, stack, channel, remote, sessionDir: cache?.sessionDir, session: link.key?.id, close };
}

async function serveMount(mountpoint: string, o: MountOpts): Promise<void> {
  const cred: Credentials = o.as ? { flavor: AuthFlavor.AUTH_SYS, ...o.as } : processCredentials();
  const { backend, server, close, counters, stack, channel, remote, sessionDir, session, ...rest } = await openBackend(o);
  let exportPath = rest.exportPath;
  if (!exportPath) {
    const ex = await backend.exports().catch(async (e) => {
      await close();
      throw e;
    });
    if (ex.length !== 1) {
      await close();
      throw new Error(`the proxy server has ${ex.length} exports (${ex.map((e) => e.path).join(', ')}); choose one with --export`);
    }
    exportPath = ex[0].path;
  }
  let frontend: LowLevelFrontend;
  try {
    const root = (await backend.mount(exportPath, cred)).fh;
    const ms = Math.round(o.attrTimeout * 1000);
    const allowOther = o.allowOther ?? process.getuid?.() === 0;
    // nfs:// without --as: each caller as itself; --as: that identity for all; a proxy session: its account for its owner (and root).
    const callers: CallerPolicy = o.server.startsWith('nfs://')
      ? o.as
        ? { kind: 'fixed', cred }
        : { kind: 'each' }
      : { kind: 'session', cred, ownerUid: process.getuid?.() ?? 0, allowRoot: true };
    frontend = new LowLevelFrontend(backend, root, {
      attrTimeoutMs: ms,
      callers,
      background: cred,
      fsname: `gvfs:${server.replace(/^nfs:\/\//, '')}${exportPath}`,
      opTimeoutMs: Math.max(120_000, 3 * o.timeout),
      deferCommitMs: o.commitDelay,
      allowOther,
      defaultPermissions: o.defaultPermissions,
      readOnly: !!o.readOnly,
      passthrough: o.passthrough,
      // A write-back cache journals a SETATTR before it answers: owing it in this process would lose that.
      oweSetattrs: !stack?.cache?.opts.writeBack,
      counters,
    });
    await frontend.mount(mountpoint);
  } catch (e) {
    await close();
    throw e;
  }
  const mnt = frontend.mountpoint!;
  let metrics: Awaited<ReturnType<typeof startMetrics>>;
  try {
    metrics = await startMetrics(o.metricsAt, 'mount', async (r, h) => {
      const { observeClientStack } = await import('../metrics/client.js'); // prom-client only with --metrics
      if (stack) observeClientStack(r, stack, channel ?? 'tcp');
      h.add('upstream', nfsReachable(remote));
      if (stack?.cache) for (const [name, check] of Object.entries(cacheChecks(stack.cache))) h.add(name, check);
    });
  } catch (e) {
    await frontend.unmount().catch(() => undefined);
    await close();
    throw e;
  }
  // Caught before the ready line: a signal sent the moment it is read must not meet Node's default action.
  const stopped = untilSignal();
  const info = { mounted: mnt, server, export: exportPath, user: o.user ?? null, pid: process.pid, attrTimeout: o.attrTimeout, cacheDir: o.cacheDir ?? null, consistency: o.consistency ?? 'ttl', metrics: metrics?.address };
  await registerDaemon({ role: 'mount', mountpoint: mnt, server, session, user: o.user, cacheDir: o.cacheDir, sessionDir, info: { export: exportPath, metrics: metrics?.address } });
  if (o.json) console.log(JSON.stringify(info));
  else console.log(`gvfs mount: ${server}${exportPath} on ${mnt} (attribute timeout ${o.attrTimeout} s); Ctrl-C or gvfs umount ${mnt} to stop`);
  notifySystemd('mount', 'READY=1\nSTATUS=mounted');

  let stopWatch = () => {};
  const why = await new Promise<string>((resolve) => {
    void stopped.then(resolve);
    // The session ended by itself: unmounted from outside (the watch below may not have seen it yet), or
    // aborted or failed with our mount still at the path, where the watch would wait for ever.
    void frontend.ended.then(async () => {
      const ours = await frontend.oursAt(mnt).catch(() => false);
      resolve(ours ? 'the FUSE session ended (aborted from outside, or /dev/fuse failed)' : 'unmounted from outside');
    });
    stopWatch = watchUnmount(mnt, 1000, () => resolve('unmounted from outside'), frontend.mountDev);
  });
  stopWatch();
  log.info({ mountpoint: mnt, why }, `gvfs mount: ${why}, unmounting ${mnt}`);
  notifySystemd('mount', `STOPPING=1\nSTATUS=${why}, unmounting`);
  // Bounded like every daemon's drain: with the server down, commits and the cache's flush could wait a call deadline each.
  // What is not delivered stays in the cache journal (write-back) for the next mount of the session.
  const again = () => {
    log.warn('gvfs mount: second signal, exiting now');
    flushLogs();
    process.exit(DRAIN_TIMEOUT_EXIT);
  };
  process.once('SIGINT', again);
  process.once('SIGTERM', again);
  const timer = setTimeout(() => {
    log.warn({ mountpoint: mnt, drainMs: DRAIN_MS }, `gvfs mount: unmount and close not finished within ${DRAIN_MS} ms, exiting anyway`);
    statsLog.info({ stats: frontend.stats }, 'gvfs mount: stats');
    flushLogs();
    process.exit(DRAIN_TIMEOUT_EXIT);
  }, DRAIN_MS);
  let code = 0;
  await metrics?.close();
  try {
    await frontend.unmount();
  } catch (e) {
    log.error({ mountpoint: mnt, err: e }, `gvfs mount: ${(e as Error).message}`);
    code = 1;
  }
  await close().catch((e) => {
    log.error({ mountpoint: mnt, err: e }, `gvfs mount: ${(e as Error).message}`);
    code = 1;
  });
  clearTimeout(timer);
  statsLog.info({ stats: frontend.stats }, 'gvfs mount: stats');
  flushLogs();
  // The native FUSE binding may keep the event loop alive; leave explicitly.
  process.exit(code);
}
