import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { controlRequest, controlSocketOf } from '../wrappers/cache/control-socket.js';
import { listSessions } from '../wrappers/cache/session-dir.js';
import type { FlushReport } from '../wrappers/cache/write-back.js';
import { qemuArgs } from './machine.js';
import { readManifest, writeManifest, MANIFEST_FORMAT, MANIFEST_VERSION, type VmFile, type VmManifest } from './manifest.js';
import { loadState, saveState, STATE_CAPABILITIES } from './migration.js';
import { launchQemu, pidAlive, qemus, stopPid, type Qemu } from './qemu.js';
import { QmpClient } from './qmp.js';
import { checkVmName } from './publish.js';

const run = promisify(execFile);

/**
 * The compute server's side: clones of golden VMs that live on a state
 * server, seen through a GVFS session mount (`<mnt>/<vm root>/<NAME>/`).
 *
 * A clone is an unmodified QEMU with
 * - a local qcow2 overlay whose backing file is the golden disk on the
 *   mount (QEMU opens backing files read-only: the golden image is never
 *   written);
 * - its RAM mapped copy-on-write (share=off) from the golden RAM file on the
 *   mount, so only pages the guest touches are read, through the session's
 *   disk cache that every clone on the host shares;
 * - the device state loaded from the golden `state` file (-incoming defer,
 *   x-ignore-shared, migrate-incoming, cont).
 *
 * Each clone has a local directory (`<state root>/<CLONE>/`) with
 * `clone.json` (what runs where: QEMU's PID, QMP socket, console, overlay,
 * the mount), the overlay and QEMU's logs. The QEMU outlives the command
 * that started it; `gvfs vm stop` ends it by PID.
 *
 * Suspend saves the clone back to the state server through the mount (with
 * a write-back cache, then flushed): `<vm root>/<CLONE>/` with the overlay
 * (its backing file named relative to it, `../<golden>/disk.qcow2`), a
 * migration stream with the device state and memory, and a manifest of
 * kind 'suspended' whose base is the golden VM. Resume reverses it, on this
 * host or another.
 */

export interface MountRef {
  /** Where the session is mounted. */
  mnt: string;
  /** The mount's cache directory (to flush it after a suspend), when it has one. */
  cacheDir?: string;
  /** PID of the `gvfs mount` process, when a `gvfs vm` command started it. */
  pid?: number;
  /** Started by `gvfs vm clone --server ...`: unmounted when its last clone stops. */
  owned?: boolean;
}

export interface CloneRecord {
  name: string;
  /** The golden VM it was cloned from. */
  golden: string;
  /** Directory of VMs on the mount (holds <golden>/ and suspended clones). */
  vmRoot: string;
  mount: MountRef;
  dir: string;
  status: 'running' | 'suspended';
  pid?: number;
  qmpSocket: string;
  console: string;
  overlay: string;
  qemuLog: string;
  startedAt: string;
  /** How it came to run: cloned from the golden VM, or resumed from a suspended state. */
  from: 'clone' | 'resume';
  /** Where a suspended clone's state is. */
  suspendedTo?: string;
  manifest: VmManifest;
}

export function defaultStateRoot(): string {
  if (process.env.GVFS_VM_STATE) return process.env.GVFS_VM_STATE;
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'gvfs', 'vms');
}

const RECORD = 'clone.json';

export async function readClone(stateRoot: string, name: string): Promise<CloneRecord | undefined> {
  const text = await fs.readFile(path.join(stateRoot, checkVmName(name), RECORD), 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  return text ? (JSON.parse(text) as CloneRecord) : undefined;
}

async function writeClone(r: CloneRecord): Promise<void> {
  const file = path.join(r.dir, RECORD);
  await fs.writeFile(`${file}.tmp`, JSON.stringify(r, null, 2) + '\n');
  await fs.rename(`${file}.tmp`, file);
}

/** A clone's QEMU is alive (checked by PID and its QMP socket path on its command line). */
export async function cloneRunning(r: CloneRecord): Promise<boolean> {
  return r.status === 'running' && !!r.pid && (await pidAlive(r.pid, r.qmpSocket));
}

export interface CloneOptions {
  /** The golden VM. */
  name: string;
  /** The clone's name (default NAME-<n>, the first free one). */
  as?: string;
  mount: MountRef;
  /** VM directory inside the mount ('' = the mount's root). */
  vmPath?: string;
  stateRoot?: string;
  log?: (s: string) => void;
}

export interface StartTimes {
  /** ms from the call to QEMU answering QMP. */
  launchedMs: number;
  /** ms from the call to the guest running again. */
  runningMs: number;
}

async function freeName(stateRoot: string, base: string): Promise<string> {
  for (let i = 1; ; i++) {
    const n = `${base}-${i}`;
    if (!(await fs.stat(path.join(stateRoot, n)).then(() => true, () => false))) return n;
  }
}

/**
 * Start reading, in parallel, what QEMU will read one after another: the
 * kernel, initrd and device state whole (through the mount they land in
 * the session's cache and the page cache), the head of the golden disk
 * (qcow2 header and tables), and the first page of the RAM file (with a
 * recorded prefetch order, that first read starts the meta-data layer's
 * background transfer). Over a wide-area link this overlaps round trips
 * QEMU would wait for in turn. Failures are ignored: QEMU reads again and
 * reports its own errors.
 */
function warmUp(files: Array<{ file: string; bytes?: number }>): Promise<void> {
  return Promise.all(
    files.map(async ({ file, bytes }) => {
      const fh = await fs.open(file, 'r');
      try {
        const b = Buffer.allocUnsafe(1 << 20);
        let off = 0;
        for (;;) {
          const n = (await fh.read(b, 0, Math.min(b.length, (bytes ?? Infinity) - off), off)).bytesRead;
          off += n;
          if (n === 0 || (bytes !== undefined && off >= bytes)) break;
        }
      } finally {
        await fh.close();
      }
    }),
  ).then(
    () => undefined,
    () => undefined,
  );
}

/** What a resuming QEMU reads for -kernel / -initrd (machine.ts, Placement.kernel). */
function resumeBoot(goldenDir: string, m: VmManifest): { kernel: string; initrd?: string } {
  if (m.boot.resumeKernel) return { kernel: path.join(goldenDir, m.boot.resumeKernel) };
  return { kernel: path.join(goldenDir, m.boot.kernel), initrd: m.boot.initrd ? path.join(goldenDir, m.boot.initrd) : undefined };
}

function warmUpGolden(goldenDir: string, m: VmManifest, stateFile: string): Promise<void> {
  const at = (f: string) => path.join(goldenDir, f);
  const boot = resumeBoot(goldenDir, m);
  return warmUp([
    { file: boot.kernel },
    ...(boot.initrd ? [{ file: boot.initrd }] : []),
    { file: stateFile },
    { file: at(m.disks[0].file), bytes: 1 << 20 },
    { file: at(m.memory.file), bytes: 4096 },
  ]);
}

async function startFromState(o: {
  r: Omit<CloneRecord, 'pid' | 'startedAt'>;
  goldenDir: string;
  stateFile: string;
  caps: string[];
  t0: number;
}): Promise<{ record: CloneRecord; times: StartTimes }> {
  const { r, goldenDir } = o;
  const m = r.manifest;
  let qemu: Qemu | undefined;
  try {
    qemu = await launchQemu({
      args: qemuArgs(m, {
        name: r.name,
        ramFile: path.join(goldenDir, m.memory.file),
        share: false,
        ...resumeBoot(goldenDir, m),
        disks: { [m.disks[0].id]: r.overlay },
        consoleLog: r.console,
        qmpSocket: r.qmpSocket,
        incoming: true,
      }),
      qmpSocket: r.qmpSocket,
      logFile: r.qemuLog,
    });
    const launchedMs = performance.now() - o.t0;
    await loadState(qemu.qmp, o.stateFile, o.caps);
    const runningMs = performance.now() - o.t0;
    const record: CloneRecord = { ...r, pid: qemu.pid, startedAt: new Date().toISOString() };
    await writeClone(record);
    qemu.qmp.close();
    // From here on the QEMU belongs to the clone's record, not to this process.
    qemus.release(qemu.pid);
    return { record, times: { launchedMs, runningMs } };
  } catch (e) {
    await qemu?.stop(2_000).catch(() => undefined);
    throw e;
  }
}

/** Clone a golden VM through a mount; resolves once the guest runs. */
export async function cloneVm(o: CloneOptions): Promise<{ record: CloneRecord; times: StartTimes }> {
  const t0 = performance.now();
  const stateRoot = o.stateRoot ?? defaultStateRoot();
  const golden = checkVmName(o.name);
  const vmRoot = path.join(o.mount.mnt, o.vmPath ?? '');
  const goldenDir = path.join(vmRoot, golden);
  const m = await readManifest(goldenDir);
  if (m.kind !== 'golden') throw new Error(`${golden} is a suspended clone, not a golden VM: gvfs vm resume ${golden}`);
  await fs.mkdir(stateRoot, { recursive: true, mode: 0o700 });
  const name = checkVmName(o.as ?? (await freeName(stateRoot, golden)));
  const dir = path.join(stateRoot, name);
  const old = await readClone(stateRoot, name);
  if (old && (await cloneRunning(old))) throw new Error(`clone ${name} is running (pid ${old.pid}); gvfs vm stop ${name} first`);
  if (old?.status === 'suspended') throw new Error(`clone ${name} is suspended; gvfs vm resume ${name}, or stop it to reuse the name`);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const overlay = path.join(dir, 'disk.qcow2');
  const disk = m.disks[0];
  const warm = warmUpGolden(goldenDir, m, path.join(goldenDir, m.deviceState.file));
  // With the size known, qemu-img need not open the golden disk (-u): QEMU does, a moment later.
  const size = disk.virtualSize ? ['-u', overlay, String(disk.virtualSize)] : [overlay];
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', path.join(goldenDir, disk.file), '-F', disk.format, ...size]);
  o.log?.(`clone ${name} of ${golden}: overlay ${overlay} over ${path.join(goldenDir, disk.file)}, memory copy-on-write from ${path.join(goldenDir, m.memory.file)}`);
  try {
    const res = await startFromState({
      r: { name, golden, vmRoot, mount: o.mount, dir, status: 'running', qmpSocket: path.join(dir, 'qmp.sock'), console: path.join(dir, 'console.log'), overlay, qemuLog: path.join(dir, 'qemu.log'), from: 'clone', manifest: m },
      goldenDir,
      stateFile: path.join(goldenDir, m.deviceState.file),
      caps: m.deviceState.capabilities,
      t0,
    });
    await warm;
    return res;
  } catch (e) {
    // Nothing of a clone that never ran stays behind (QEMU's complaint is in the error).
    await warm;
    await fs.rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Deliver what a mount's write-back cache holds to the server (every live session of its cache directory). */
export async function flushMount(mount: MountRef, timeoutMs = 600_000): Promise<FlushReport[]> {
  if (!mount.cacheDir) return [];
  const reports: FlushReport[] = [];
  for (const s of await listSessions(mount.cacheDir)) {
    const c = await controlSocketOf(path.join(mount.cacheDir, 'sessions', s));
    if (!c || !(await pidAlive(c.pid))) continue;
    const r = await controlRequest(c.socket, { op: 'flush', discard: false }, timeoutMs);
    if (!r.ok) throw new Error(`flushing session ${s} of ${mount.cacheDir}: ${r.error}`);
    const rep = r.report as FlushReport;
    if (rep.failed?.length) throw new Error(`flushing session ${s}: ${rep.failed.map((f) => `${f.code}: ${f.message}`).join('; ')}`);
    reports.push(rep);
  }
  return reports;
}

async function copyHashed(from: string, to: string): Promise<{ size: number; sha256: string }> {
  const h = createHash('sha256');
  const out = await fs.open(`${to}.tmp`, 'w', 0o644);
  let size = 0;
  try {
    for await (const chunk of createReadStream(from, { highWaterMark: 1 << 20 })) {
      const b = chunk as Buffer;
      h.update(b);
      let off = 0;
      while (off < b.length) off += (await out.write(b, off, b.length - off)).bytesWritten;
      size += b.length;
    }
    await out.sync();
  } finally {
    await out.close();
  }
  await fs.rename(`${to}.tmp`, to);
  return { size, sha256: h.digest('hex') };
}

export interface SuspendResult {
  record: CloneRecord;
  to: string;
  stateBytes: number;
  overlayBytes: number;
  flushed: FlushReport[];
}

/**
 * Suspend a running clone to the state server: stop it, save its state
 * (device state and memory) and overlay into `<vm root>/<CLONE>/` on the
 * mount, flush the mount's write-back cache, end the QEMU.
 */
export async function suspendVm(o: { name: string; stateRoot?: string; log?: (s: string) => void }): Promise<SuspendResult> {
  const stateRoot = o.stateRoot ?? defaultStateRoot();
  const r = await readClone(stateRoot, o.name);
  if (!r) throw new Error(`no clone ${o.name} on this host (gvfs vm list)`);
  if (!(await cloneRunning(r))) throw new Error(`clone ${o.name} is not running`);
  const qmp = await QmpClient.connect(r.qmpSocket);
  const local = path.join(r.dir, 'suspend.state');
  try {
    await saveState(qmp, local, STATE_CAPABILITIES);
  } catch (e) {
    // Leave the VM as it was.
    await qmp.execute('cont').catch(() => undefined);
    qmp.close();
    throw e;
  }
  await qmp.execute('quit').catch(() => undefined);
  qmp.close();
  await stopPid(r.pid!, { marker: r.qmpSocket, graceMs: 5_000 });
  const to = path.join(r.vmRoot, r.name);
  const existing = await readManifest(to).catch(() => undefined);
  if (existing?.kind === 'golden') throw new Error(`${to} holds a golden VM; a clone cannot be suspended over it`);
  await fs.mkdir(to, { recursive: true });
  // The overlay names its backing file relative to itself on the server, wherever the mount is.
  const ov = path.join(r.dir, 'suspend.qcow2');
  await fs.copyFile(r.overlay, ov);
  await run('qemu-img', ['rebase', '-u', '-b', path.join('..', r.golden, r.manifest.disks[0].file), '-F', r.manifest.disks[0].format, ov]);
  o.log?.(`suspend ${r.name}: writing state and overlay to ${to}`);
  const st = await copyHashed(local, path.join(to, 'state'));
  const dk = await copyHashed(ov, path.join(to, 'disk.qcow2'));
  const base = r.manifest;
  const m: VmManifest = {
    ...base,
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    kind: 'suspended',
    name: r.name,
    base: r.golden,
    created: new Date().toISOString(),
    memory: { ...base.memory, file: path.join('..', r.golden, base.memory.file) },
    boot: {
      ...base.boot,
      kernel: path.join('..', r.golden, base.boot.kernel),
      initrd: base.boot.initrd && path.join('..', r.golden, base.boot.initrd),
      resumeKernel: base.boot.resumeKernel && path.join('..', r.golden, base.boot.resumeKernel),
    },
    disks: [{ ...base.disks[0], file: 'disk.qcow2' }],
    deviceState: { file: 'state', capabilities: STATE_CAPABILITIES, includesMemory: true },
    files: [
      { name: 'disk.qcow2', role: 'disk', ...dk } as VmFile,
      { name: 'state', role: 'device-state', ...st } as VmFile,
    ],
    lastConsoleLine: (await fs.readFile(r.console, 'utf8').catch(() => '')).trim().split('\n').pop(),
  };
  await writeManifest(to, m);
  const flushed = await flushMount(r.mount);
  const record: CloneRecord = { ...r, status: 'suspended', pid: undefined, suspendedTo: to };
  await writeClone(record);
  await fs.rm(local, { force: true });
  await fs.rm(ov, { force: true });
  await fs.rm(r.overlay, { force: true });
  await releaseMount(r.mount, stateRoot);
  return { record, to, stateBytes: st.size, overlayBytes: dk.size, flushed };
}

/** Resume a suspended clone through a mount (on this host or another). */
export async function resumeVm(o: { name: string; mount: MountRef; vmPath?: string; stateRoot?: string; log?: (s: string) => void }): Promise<{ record: CloneRecord; times: StartTimes }> {
  const t0 = performance.now();
  const stateRoot = o.stateRoot ?? defaultStateRoot();
  const name = checkVmName(o.name);
  const old = await readClone(stateRoot, name);
  if (old && (await cloneRunning(old))) throw new Error(`clone ${name} is running (pid ${old.pid})`);
  const vmRoot = path.join(o.mount.mnt, o.vmPath ?? '');
  const from = path.join(vmRoot, name);
  const sm = await readManifest(from);
  if (sm.kind !== 'suspended') throw new Error(`${name} is a golden VM: gvfs vm clone ${name}`);
  const goldenDir = path.join(vmRoot, sm.base!);
  const gm = await readManifest(goldenDir);
  const dir = path.join(stateRoot, name);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const overlay = path.join(dir, 'disk.qcow2');
  const warm = warmUpGolden(goldenDir, gm, path.join(from, sm.deviceState.file));
  await fs.copyFile(path.join(from, 'disk.qcow2'), overlay);
  await run('qemu-img', ['rebase', '-u', '-b', path.join(goldenDir, gm.disks[0].file), '-F', gm.disks[0].format, overlay]);
  o.log?.(`resume ${name} from ${from} (base ${sm.base})`);
  const res = await startFromState({
    r: { name, golden: sm.base!, vmRoot, mount: o.mount, dir, status: 'running', qmpSocket: path.join(dir, 'qmp.sock'), console: path.join(dir, 'console.log'), overlay, qemuLog: path.join(dir, 'qemu.log'), from: 'resume', manifest: gm },
    goldenDir,
    stateFile: path.join(from, sm.deviceState.file),
    caps: sm.deviceState.capabilities,
    t0,
  });
  await warm;
  return res;
}

/** Stop a clone (its QEMU by PID) and forget it locally; a suspended clone's state on the server stays. */
export async function stopVm(o: { name: string; stateRoot?: string }): Promise<{ record: CloneRecord; wasRunning: boolean; unmounted?: string }> {
  const stateRoot = o.stateRoot ?? defaultStateRoot();
  const r = await readClone(stateRoot, o.name);
  if (!r) throw new Error(`no clone ${o.name} on this host (gvfs vm list)`);
  const wasRunning = await cloneRunning(r);
  if (wasRunning) await stopPid(r.pid!, { qmpSocket: r.qmpSocket, marker: r.qmpSocket, graceMs: 5_000 });
  await fs.rm(r.dir, { recursive: true, force: true });
  return { record: r, wasRunning, unmounted: await releaseMount(r.mount, stateRoot) };
}

/** End a session mount `gvfs vm` started once no running clone uses it; returns its mountpoint if it ended. */
async function releaseMount(mount: MountRef, stateRoot: string): Promise<string | undefined> {
  if (!mount.owned || !mount.pid) return undefined;
  const others = (await listVms(stateRoot)).filter((c) => c.record.mount.mnt === mount.mnt && c.running);
  // The PID is checked against its command line (the mountpoint), so a reused PID is never signalled.
  if (others.length || !(await pidAlive(mount.pid, mount.mnt))) return undefined;
  // The mount process flushes and unmounts on SIGTERM.
  process.kill(mount.pid, 'SIGTERM');
  const end = Date.now() + 120_000;
  while (Date.now() < end && (await pidAlive(mount.pid, mount.mnt))) await new Promise((res) => setTimeout(res, 100));
  return mount.mnt;
}

export async function listVms(stateRoot = defaultStateRoot()): Promise<Array<{ record: CloneRecord; running: boolean }>> {
  const out: Array<{ record: CloneRecord; running: boolean }> = [];
  for (const n of (await fs.readdir(stateRoot).catch(() => [] as string[])).sort()) {
    const r = await readClone(stateRoot, n).catch(() => undefined);
    if (r) out.push({ record: r, running: await cloneRunning(r) });
  }
  return out;
}
