import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { generateMeta } from '../meta/generate.js';
import type { TransferHint } from '../meta/format.js';
import { readConsole, waitConsoleLine } from './console.js';
import { qemuArgs } from './machine.js';
import { describeFile, writeManifest, type VmFile, type VmManifest, MANIFEST_FORMAT, MANIFEST_VERSION } from './manifest.js';
import { saveState, STATE_CAPABILITIES } from './migration.js';
import { launchQemu, QemuError, type Qemu } from './qemu.js';

const run = promisify(execFile);

/**
 * `gvfs vm publish`, on the state server: boot a VM from a kernel, an
 * initrd and a disk, let it run until its console shows it is ready, then
 * freeze it into a golden VM in `<dir>/<name>/`:
 *
 *   disk.qcow2   the disk (converted to a standalone qcow2 first; the VM ran on it)
 *   ram          the guest's memory, a plain file (memory-backend-file, share=on)
 *   state        the device state (migration stream with x-ignore-shared: no RAM)
 *   kernel, initrd
 *   manifest.json  machine, memory, devices, file names, sizes, SHA-256
 *   plus the meta-data of each file (writeMetaFor).
 *
 * The directory is built under a temporary name and renamed into place
 * only once complete, so a clone never sees half a VM.
 */
export interface PublishOptions {
  /** The state server's VM directory (e.g. the exported directory). */
  dir: string;
  name: string;
  kernel: string;
  initrd?: string;
  append: string;
  /** Any image qemu-img reads; converted to qcow2. */
  disk: string;
  memoryBytes: number;
  cpus?: number;
  machine?: string;
  cpu?: string;
  /** Publish once the console prints a line matching this (default: at once after boot starts + runSeconds). */
  ready?: RegExp;
  readyTimeoutMs?: number;
  /** Keep running this long after ready before the state is saved. */
  runMs?: number;
  /** Replace an existing VM of that name. */
  force?: boolean;
  /** The directory the proxy server exports (meta-data lives in its .gvfs-meta/); default: the nearest ancestor of `dir` with a .gvfs-meta/, else `dir`. */
  metaRoot?: string;
  log?: (s: string) => void;
}

export interface PublishResult {
  dir: string;
  manifest: VmManifest;
  consoleLog: string;
  /** Meta-data status per file (see writeMetaFor). */
  meta: MetaResult;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkVmName(name: string): string {
  if (!NAME_RE.test(name)) throw new Error(`bad VM name "${name}": letters, digits, . _ - (up to 64), not starting with . _ -`);
  return name;
}

/** The versioned machine type QEMU resolves an alias (pc, q35) to, so clones get the same machine. */
async function resolveMachine(alias: string): Promise<string> {
  const { stdout } = await run(process.env.GVFS_QEMU ?? 'qemu-system-x86_64', ['-machine', 'help']);
  for (const line of stdout.split('\n')) {
    const m = /^(\S+)\s+.*\(alias of (\S+)\)/.exec(line);
    if (m && m[1] === alias) return m[2];
  }
  return alias;
}

export async function publishVm(o: PublishOptions): Promise<PublishResult> {
  const log = o.log ?? (() => undefined);
  const name = checkVmName(o.name);
  const final = path.join(o.dir, name);
  const exists = await fs.stat(final).then(
    () => true,
    () => false,
  );
  if (exists && !o.force) throw new Error(`${final} exists (publish with --force to replace it)`);
  const work = path.join(o.dir, `.${name}.publishing-${process.pid}`);
  await fs.rm(work, { recursive: true, force: true });
  await fs.mkdir(work, { recursive: true });
  let qemu: Qemu | undefined;
  try {
    log(`copying kernel, initrd and disk into ${final}`);
    await fs.copyFile(o.kernel, path.join(work, 'kernel'));
    if (o.initrd) await fs.copyFile(o.initrd, path.join(work, 'initrd'));
    await run('qemu-img', ['convert', '-q', '-O', 'qcow2', o.disk, path.join(work, 'disk.qcow2')]);
    const machine = await resolveMachine(o.machine ?? 'pc');
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', path.join(work, 'disk.qcow2')])).stdout) as { 'virtual-size': number };
    const m: VmManifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      kind: 'golden',
      name,
      created: new Date().toISOString(),
      qemu: { version: '' },
      machine: { type: machine, accel: 'tcg', cpus: o.cpus ?? 1, cpu: o.cpu ?? 'qemu64' },
      memory: { bytes: o.memoryBytes, backendId: 'ram0', file: 'ram' },
      boot: { kernel: 'kernel', initrd: o.initrd ? 'initrd' : undefined, append: o.append },
      disks: [{ id: 'disk0', file: 'disk.qcow2', format: 'qcow2', device: 'virtio-blk-pci', virtualSize: info['virtual-size'] }],
      serial: { device: 'isa-serial', id: 'console' },
      deviceState: { file: 'state', capabilities: STATE_CAPABILITIES, includesMemory: false },
      files: [],
    };
    // Sockets and logs of the publishing QEMU stay out of the VM's directory.
    const run0 = path.join(o.dir, `.${name}.run-${process.pid}`);
    await fs.mkdir(run0, { recursive: true });
    const consoleLog = path.join(run0, 'console.log');
    qemu = await launchQemu({
      args: qemuArgs(m, {
        name,
        ramFile: path.join(work, 'ram'),
        share: true,
        kernel: path.join(work, 'kernel'),
        initrd: o.initrd ? path.join(work, 'initrd') : undefined,
        disks: { disk0: path.join(work, 'disk.qcow2') },
        consoleLog,
        qmpSocket: path.join(run0, 'qmp.sock'),
      }),
      qmpSocket: path.join(run0, 'qmp.sock'),
      logFile: path.join(run0, 'qemu.log'),
    });
    m.qemu.version = qemu.qmp.version ?? '';
    log(`booting ${name} (QEMU ${m.qemu.version}, pid ${qemu.pid}, ${machine}, ${o.memoryBytes >> 20} MiB)`);
    if (o.ready) {
      const r = await waitConsoleLine(consoleLog, o.ready, { timeoutMs: o.readyTimeoutMs ?? 300_000, gone: qemu.exited }).catch(async (e) => {
        const tail = await fs.readFile(path.join(run0, 'qemu.log'), 'utf8').catch(() => '');
        throw new QemuError((e as Error).message, tail);
      });
      log(`ready: ${r.line.trim()}`);
    }
    if (o.runMs) await new Promise((r) => setTimeout(r, o.runMs));
    const saved = await saveState(qemu.qmp, path.join(work, 'state'));
    const lines = (await readConsole(consoleLog)).trim().split('\n');
    m.lastConsoleLine = lines[lines.length - 1];
    log(`saved: device state ${saved.ram?.transferred ?? 0} bytes; last console line: ${m.lastConsoleLine}`);
    await qemu.stop();
    qemu = undefined;
    await fs.copyFile(consoleLog, path.join(work, 'console.log'));
    await fs.rm(run0, { recursive: true, force: true });

    const files: Array<[string, VmFile['role']]> = [
      ['disk.qcow2', 'disk'],
      ['ram', 'memory'],
      ['state', 'device-state'],
      ['kernel', 'kernel'],
    ];
    if (o.initrd) files.push(['initrd', 'initrd']);
    if (await writeKernelStub(path.join(work, 'kernel'), path.join(work, 'kernel.resume'))) {
      m.boot.resumeKernel = 'kernel.resume';
      files.push(['kernel.resume', 'resume-kernel']);
    }
    for (const [f, role] of files) m.files.push(await describeFile(work, f, role));
    // Into place without its manifest (a directory without one is no VM yet), then meta-data
    // (which names each file's inode and path in the export), then the manifest, last.
    if (exists) await fs.rm(final, { recursive: true, force: true });
    await fs.rename(work, final);
    const meta = await writeMetaFor(
      m.files.map((f) => ({ file: path.join(final, f.name), role: f.role })),
      o.metaRoot ?? (await nearestMetaRoot(o.dir)),
    ).catch((e: Error): MetaResult => ({ status: 'failed', files: {}, note: e.message }));
    for (const f of m.files) {
      const mp = meta.files[path.join(final, f.name)];
      if (mp) f.meta = mp;
    }
    await writeManifest(final, m);
    return { dir: final, manifest: m, consoleLog: path.join(final, 'console.log'), meta };
  } catch (e) {
    await qemu?.stop().catch(() => undefined);
    await fs.rm(work, { recursive: true, force: true });
    throw e;
  }
}

export interface MetaResult {
  /** generated: every file has meta-data; failed: see note. */
  status: 'generated' | 'failed';
  /** file → its meta-data file (as `gvfs meta gen` wrote it) */
  files: Record<string, string>;
  note?: string;
}

async function nearestMetaRoot(dir: string): Promise<string> {
  let d = path.resolve(dir);
  for (;;) {
    if (await fs.stat(path.join(d, '.gvfs-meta')).then((s) => s.isDirectory(), () => false)) return d;
    const up = path.dirname(d);
    if (up === d) return path.resolve(dir);
    d = up;
  }
}

/** How each file should move to a compute server (the meta-data's transfer hint). */
/**
 * The boot header and setup code of an x86 bzImage (plus one page), which
 * is all a resuming QEMU needs of the kernel (machine.ts, Placement.kernel).
 * False (no stub) for anything that is not a bzImage: clones then read the
 * whole kernel.
 */
async function writeKernelStub(kernel: string, out: string): Promise<boolean> {
  const fh = await fs.open(kernel, 'r');
  try {
    const head = Buffer.alloc(1024);
    await fh.read(head, 0, 1024, 0);
    if (head.toString('latin1', 0x202, 0x206) !== 'HdrS') return false;
    const setup = ((head[0x1f1] || 4) + 1) * 512;
    const size = (await fh.stat()).size;
    const len = Math.min(size, setup + 4096);
    if (len >= size) return false;
    const b = Buffer.alloc(len);
    await fh.read(b, 0, len, 0);
    await fs.writeFile(out, b);
    return true;
  } finally {
    await fh.close();
  }
}

const HINT: Record<VmFile['role'], TransferHint> = {
  // The guest touches a fraction of its memory and disk: on demand, zero blocks answered locally.
  memory: 'ondemand',
  disk: 'ondemand',
  // Read in full at every clone: one compressed bulk transfer.
  'device-state': 'whole',
  kernel: 'whole',
  initrd: 'whole',
  'resume-kernel': 'whole',
};

/**
 * THE meta-data call site of `gvfs vm publish`: meta-data (zero map, block
 * hashes, transfer hint) for each file of a golden VM, written by the
 * meta-data layer (src/meta, the library behind `gvfs meta gen`). No
 * meta-data format of its own here.
 */
export async function writeMetaFor(files: Array<{ file: string; role: VmFile['role'] }>, root: string): Promise<MetaResult> {
  const out: Record<string, string> = {};
  for (const f of files) out[f.file] = path.relative(root, (await generateMeta(f.file, { root, hint: HINT[f.role] })).metaPath);
  return { status: 'generated', files: out };
}
