import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * The manifest of a VM kept on a state server: a directory holding the
 * manifest (`manifest.json`) and the files it names.
 *
 * - A *golden* VM (`gvfs vm publish`): its disk as a qcow2 image, its
 *   memory as a plain RAM file (QEMU `memory-backend-file`; a clone maps it
 *   copy-on-write), its device state (a QEMU migration stream without the
 *   RAM, thanks to the `x-ignore-shared` capability), and the kernel and
 *   initrd of a direct kernel boot (the destination QEMU needs the same
 *   option ROMs as the source).
 * - A *suspended* clone (`gvfs vm suspend`): its qcow2 overlay (whose
 *   backing file is the golden disk, named relative to the overlay) and a
 *   migration stream with its device state and all its memory; `base`
 *   names the golden VM, whose RAM file still backs the resumed clone.
 *
 * The machine (type, CPUs, memory size and backend id, devices) must be
 * the same on both sides of a migration; the manifest is where it is
 * written down, and `qemuArgs` (machine.ts) the one place that turns it
 * into a command line. Versioned: a reader refuses a format or version it
 * does not know instead of guessing.
 */

export const MANIFEST_FORMAT = 'gvfs-vm';
export const MANIFEST_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';

export type FileRole = 'disk' | 'memory' | 'device-state' | 'kernel' | 'initrd' | 'resume-kernel';

export interface VmFile {
  /** Name inside the VM's directory. */
  name: string;
  role: FileRole;
  size: number;
  sha256: string;
  /** The meta-data file written for it (gvfs meta gen), when there is one. */
  meta?: string;
}

export interface VmDisk {
  /** QEMU drive and device id (`disk0`). */
  id: string;
  file: string;
  format: 'qcow2';
  device: 'virtio-blk-pci';
  /** Guest-visible size in bytes (an overlay is created with it, without opening the golden disk). */
  virtualSize?: number;
}

export interface VmManifest {
  format: typeof MANIFEST_FORMAT;
  version: typeof MANIFEST_VERSION;
  kind: 'golden' | 'suspended';
  name: string;
  /** For a suspended clone: the golden VM whose RAM file and disk it builds on. */
  base?: string;
  created: string;
  qemu: { version: string };
  machine: {
    /** A versioned machine type (pc-i440fx-7.2), never an alias that moves with the QEMU version. */
    type: string;
    accel: 'tcg' | 'kvm';
    cpus: number;
    cpu: string;
  };
  memory: {
    bytes: number;
    /** The memory backend's object id: the RAM block's name in the migration stream. */
    backendId: string;
    /** The golden RAM file (in the base VM's directory for a suspended clone). */
    file: string;
  };
  /** resumeKernel: the kernel's boot header and setup code, what a resuming QEMU reads (machine.ts, Placement.kernel). */
  boot: { kernel: string; initrd?: string; append: string; resumeKernel?: string };
  disks: VmDisk[];
  /** The guest's serial console (an isa-serial device on a chardev). */
  serial: { device: 'isa-serial'; id: string };
  deviceState: {
    file: string;
    /** Migration capabilities the stream was written with; the loading side sets the same. */
    capabilities: string[];
    /** Whether the stream carries the guest's memory (suspended clones) or not (golden: the RAM file does). */
    includesMemory: boolean;
  };
  files: VmFile[];
  /** The guest's last console line before the state was saved (informational). */
  lastConsoleLine?: string;
}

export class ManifestError extends Error {
  constructor(file: string, why: string) {
    super(`${file}: ${why}`);
    this.name = 'ManifestError';
  }
}

export async function readManifest(dir: string): Promise<VmManifest> {
  const file = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ManifestError(file, 'no such VM (no manifest)');
    throw e;
  }
  let m: VmManifest;
  try {
    m = JSON.parse(text) as VmManifest;
  } catch (e) {
    throw new ManifestError(file, `not JSON: ${(e as Error).message}`);
  }
  if (m.format !== MANIFEST_FORMAT) throw new ManifestError(file, `not a GVFS VM manifest (format ${JSON.stringify(m.format)})`);
  if (m.version !== MANIFEST_VERSION) throw new ManifestError(file, `manifest version ${m.version}; this gvfs reads version ${MANIFEST_VERSION}`);
  for (const k of ['machine', 'memory', 'boot', 'disks', 'serial', 'deviceState', 'files'] as const) {
    if (!m[k]) throw new ManifestError(file, `missing "${k}"`);
  }
  if (m.kind === 'suspended' && !m.base) throw new ManifestError(file, 'a suspended VM must name its base');
  return m;
}

/** Write atomically (temp file, fsync, rename). */
export async function writeManifest(dir: string, m: VmManifest): Promise<void> {
  const file = path.join(dir, MANIFEST_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await fs.open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(JSON.stringify(m, null, 2) + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, file);
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

export async function describeFile(dir: string, name: string, role: FileRole): Promise<VmFile> {
  const p = path.join(dir, name);
  const st = await fs.stat(p);
  return { name, role, size: st.size, sha256: await sha256File(p) };
}

/** Check every file the manifest names against its size and hash; returns the names that differ. */
export async function verifyFiles(dir: string, m: VmManifest): Promise<string[]> {
  const bad: string[] = [];
  for (const f of m.files) {
    const st = await fs.stat(path.join(dir, f.name)).catch(() => undefined);
    if (!st || st.size !== f.size || (await sha256File(path.join(dir, f.name))) !== f.sha256) bad.push(f.name);
  }
  return bad;
}
