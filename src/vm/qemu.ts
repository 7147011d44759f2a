import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmpClient } from './qmp.js';

/**
 * Launching QEMU and stopping it again.
 *
 * Every QEMU this process starts is tracked by PID (`QemuTracker`) until it
 * exits or is handed over with `release()` (a `gvfs vm clone` leaves its VM
 * running and records the PID in the clone's state file); whatever is still
 * tracked when the process exits is killed, so a failed command or test
 * never leaves a QEMU behind. A QEMU is spawned in a process group of its
 * own (detached), so a Ctrl-C aimed at the command does not reach it.
 *
 * Errors: a QEMU that exits before its QMP socket answers rejects with
 * `QemuError` carrying the tail of its stderr (QEMU explains itself there:
 * a bad option, a file it cannot open); QMP failures are `QmpError`s.
 */

export const QEMU_BINARY = process.env.GVFS_QEMU ?? 'qemu-system-x86_64';

export class QemuError extends Error {
  constructor(
    message: string,
    readonly stderr = '',
  ) {
    super(stderr.trim() ? `${message}:\n${stderr.trim().split('\n').slice(-8).join('\n')}` : message);
    this.name = 'QemuError';
  }
}

export class QemuTracker {
  private readonly pids = new Set<number>();
  private hooked = false;

  track(pid: number): void {
    this.pids.add(pid);
    if (!this.hooked) {
      this.hooked = true;
      process.on('exit', () => this.killAllSync());
    }
  }

  /** The caller takes over this QEMU (it must outlive this process). */
  release(pid: number): void {
    this.pids.delete(pid);
  }

  get tracked(): number[] {
    return [...this.pids];
  }

  killAllSync(): void {
    for (const pid of this.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    this.pids.clear();
  }
}

/** The QEMUs of this process. */
export const qemus = new QemuTracker();

export interface LaunchOptions {
  args: string[];
  qmpSocket: string;
  /** QEMU's stderr goes here (read back for errors). */
  logFile: string;
  /** How long QEMU may take to open its QMP socket. */
  timeoutMs?: number;
  tracker?: QemuTracker;
}

export interface Qemu {
  pid: number;
  qmp: QmpClient;
  qmpSocket: string;
  logFile: string;
  /** Resolves with QEMU's exit code (or signal) when it exits. */
  exited: Promise<number | string>;
  /** quit over QMP, then SIGTERM, then SIGKILL; resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
}

export async function readTail(file: string, bytes = 8192): Promise<string> {
  const fh = await fs.open(file, 'r').catch(() => undefined);
  if (!fh) return '';
  try {
    const { size } = await fh.stat();
    const n = Math.min(size, bytes);
    const b = Buffer.alloc(n);
    await fh.read(b, 0, n, size - n);
    return b.toString('utf8');
  } finally {
    await fh.close();
  }
}

export async function launchQemu(o: LaunchOptions): Promise<Qemu> {
  const tracker = o.tracker ?? qemus;
  await fs.rm(o.qmpSocket, { force: true });
  const log = await fs.open(o.logFile, 'a');
  let child: ChildProcess;
  let spawnedP: Promise<Error | undefined>;
  try {
    child = spawn(QEMU_BINARY, o.args, { stdio: ['ignore', log.fd, log.fd], detached: true });
    // Listen before anything is awaited: 'spawn' comes on the next tick.
    spawnedP = new Promise<Error | undefined>((resolve) => {
      child.once('spawn', () => resolve(undefined));
      child.once('error', resolve);
    });
  } finally {
    await log.close();
  }
  const spawned = await spawnedP;
  if (spawned) throw new QemuError(`cannot start ${QEMU_BINARY}: ${spawned.message}`);
  const pid = child.pid!;
  tracker.track(pid);
  child.unref();
  let exitInfo: number | string | undefined;
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, sig) => {
      exitInfo = code ?? sig ?? 'unknown';
      tracker.release(pid);
      resolve(exitInfo);
    }),
  );
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  let qmp: QmpClient | undefined;
  while (!qmp) {
    if (exitInfo !== undefined) throw new QemuError(`QEMU exited (${exitInfo}) while starting`, await readTail(o.logFile));
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      throw new QemuError(`QEMU did not open its QMP socket ${o.qmpSocket} within ${o.timeoutMs ?? 30_000} ms`, await readTail(o.logFile));
    }
    try {
      qmp = await QmpClient.connect(o.qmpSocket, 5_000);
    } catch {
      await sleep(25);
    }
  }
  const q: Qemu = {
    pid,
    qmp,
    qmpSocket: o.qmpSocket,
    logFile: o.logFile,
    exited,
    async stop(graceMs = 5_000) {
      if (exitInfo !== undefined) return;
      await stopPid(pid, { qmp, graceMs, exited });
    },
  };
  return q;
}

/** Whether `pid` is alive and (when given) its command line contains `marker` (guards against PID reuse). */
export async function pidAlive(pid: number, marker?: string): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const st = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (/\) Z /.test(st)) return false; // a zombie waiting for its parent
  if (marker === undefined) return true;
  const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmd.split('\0').some((a) => a.includes(marker));
}

/**
 * Stop a QEMU by PID: `quit` over QMP (given a client or a socket path),
 * SIGTERM after `graceMs`, SIGKILL after as long again.
 */
export async function stopPid(pid: number, o: { qmp?: QmpClient; qmpSocket?: string; marker?: string; graceMs?: number; exited?: Promise<unknown> } = {}): Promise<void> {
  const grace = o.graceMs ?? 5_000;
  // Our own child: its exit event is the truth. Another process's QEMU: poll /proc.
  const gone = async (ms: number): Promise<boolean> => {
    if (o.exited) return Promise.race([o.exited.then(() => true), sleep(ms).then(() => false)]);
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (!(await pidAlive(pid, o.marker))) return true;
      await sleep(50);
    }
    return !(await pidAlive(pid, o.marker));
  };
  if (!o.exited && !(await pidAlive(pid, o.marker))) return;
  let qmp = o.qmp;
  let own = false;
  if (!qmp && o.qmpSocket) {
    qmp = await QmpClient.connect(o.qmpSocket, 2_000).catch(() => undefined);
    own = !!qmp;
  }
  if (qmp && !qmp.isClosed) await qmp.execute('quit').catch(() => undefined);
  if (own) qmp!.close();
  if (await gone(grace)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await gone(grace)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await gone(grace);
}
