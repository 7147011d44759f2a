import type { VmManifest } from './manifest.js';

/**
 * The one place a manifest becomes a QEMU command line, so the source and
 * every destination of a migration describe the same machine.
 *
 * Memory is a `memory-backend-file` named by the manifest's backend id and
 * used as the machine's RAM (`-machine memory-backend=`):
 * - publishing: `share=on` on the golden RAM file, so the guest's memory
 *   *is* the file, and with the `x-ignore-shared` capability the migration
 *   stream leaves it out;
 * - cloning and resuming: `share=off` on the golden RAM file (through the
 *   mount): a private copy-on-write mapping, so only the pages the guest
 *   touches are read and nothing is ever written back. QEMU still opens the
 *   file read-write (`readonly=on` would make the guest hang), so the mount
 *   must allow O_RDWR on it; it is never written.
 * No defaults (`-nodefaults`): no NIC, no VGA, no option ROMs beyond the
 * kernel loader, so the device state stays small.
 */
export interface Placement {
  /** Absolute paths of the manifest's files as this QEMU sees them. */
  ramFile: string;
  share: boolean;
  /**
   * The kernel for `-kernel`. A resuming QEMU (incoming) never runs it again
   * (the guest's memory holds the running kernel); it reads the file only to
   * build the same machine: the same linuxboot option ROM (whose contents
   * travel in the migration stream) and fw_cfg entries (whose contents do
   * not). So clones get the golden VM's kernel *stub*: the boot header and
   * setup code (manifest boot.resumeKernel), a few KiB instead of megabytes.
   */
  kernel: string;
  initrd?: string;
  /** Disk id → image path (an overlay for clones). */
  disks: Record<string, string>;
  consoleLog: string;
  qmpSocket: string;
  /** Wait for `migrate-incoming` instead of booting. */
  incoming?: boolean;
  /** Guest name shown by QEMU (process title, QMP). */
  name: string;
}

export function qemuArgs(m: VmManifest, p: Placement): string[] {
  const a: string[] = [
    '-name', `${p.name},process=gvfs-vm-${p.name}`,
    '-machine', `${m.machine.type},memory-backend=${m.memory.backendId}`,
    '-accel', m.machine.accel,
    '-cpu', m.machine.cpu,
    '-smp', String(m.machine.cpus),
    '-m', `${m.memory.bytes / 2 ** 20}M`,
    '-object', `memory-backend-file,id=${m.memory.backendId},size=${m.memory.bytes},mem-path=${optValue(p.ramFile)},share=${p.share ? 'on' : 'off'}`,
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-kernel', p.kernel,
    '-append', m.boot.append,
  ];
  // A resuming QEMU needs no initrd: it is read through fw_cfg only while booting (see Placement.kernel).
  if (p.initrd) a.push('-initrd', p.initrd);
  for (const d of m.disks) {
    const file = p.disks[d.id];
    if (!file) throw new Error(`no image placed for disk ${d.id}`);
    a.push('-drive', `file=${optValue(file)},if=none,id=${d.id},format=${d.format},cache=writeback`);
    a.push('-device', `${d.device},drive=${d.id},id=${d.id}-dev`);
  }
  a.push('-chardev', `file,id=${m.serial.id},path=${optValue(p.consoleLog)}`);
  a.push('-device', `${m.serial.device},chardev=${m.serial.id}`);
  a.push('-chardev', `socket,id=qmp,path=${optValue(p.qmpSocket)},server=on,wait=off`);
  a.push('-mon', 'chardev=qmp,mode=control');
  if (p.incoming) a.push('-incoming', 'defer');
  return a;
}

/** A value inside a QEMU option list: commas are doubled. */
export function optValue(v: string): string {
  return v.replace(/,/g, ',,');
}

/** Quote for /bin/sh (QEMU's exec: migration URIs run through it). */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
