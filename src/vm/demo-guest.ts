import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * The demo guest scripts/guest/build.sh makes from Debian parts (cloud
 * kernel, busybox-static initramfs, ext4 disk), in build/guest of the
 * repository or $GVFS_GUEST_DIR. Its console prints
 * `gvfs-guest: counter N md5 SUM` every second.
 */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const COUNTER_RE = /gvfs-guest: counter (\d+) md5 ([0-9a-f]{32})/;
export const READY_RE = /gvfs-guest: counter \d+ /;

export interface DemoGuest {
  dir: string;
  kernel: string;
  initrd: string;
  append: string;
  /** The 64 MiB disk; diskOfSize() makes others. */
  disk: string;
  data: string;
  dataMd5: string;
  kernelPackage: string;
  kernelVersion: string;
}

export function guestDir(): string {
  return process.env.GVFS_GUEST_DIR ?? path.join(REPO, 'build', 'guest');
}

/** The demo guest, built first (scripts/guest/build.sh, a minute at most) when missing or its recipe changed. */
export async function demoGuest(): Promise<DemoGuest> {
  const dir = guestDir();
  const script = path.join(REPO, 'scripts', 'guest', 'build.sh');
  if (!existsSync(script)) throw new Error(`${script} is missing: the demo guest is built from the repository`);
  try {
    await run('bash', [script, dir], { maxBuffer: 16 << 20 });
  } catch (e) {
    throw new Error(`building the demo guest failed: ${((e as { stderr?: string }).stderr ?? (e as Error).message).trim()}`);
  }
  const j = JSON.parse(await fs.readFile(path.join(dir, 'guest.json'), 'utf8')) as { append: string; dataMd5: string; kernelPackage: string; kernelVersion: string };
  return {
    dir,
    kernel: path.join(dir, 'vmlinuz'),
    initrd: path.join(dir, 'initrd.img'),
    append: j.append,
    disk: path.join(dir, 'disk.qcow2'),
    data: path.join(dir, 'data.bin'),
    dataMd5: j.dataMd5,
    kernelPackage: j.kernelPackage,
    kernelVersion: j.kernelVersion,
  };
}

/** A disk of `mib` MiB with the same data file (cached next to the guest). */
export async function diskOfSize(g: DemoGuest, mib: number): Promise<string> {
  if (mib === 64) return g.disk;
  const out = path.join(g.dir, `disk-${mib}M.qcow2`);
  // Made from this build's data file (a rebuilt guest has a new one).
  const [o, d] = await Promise.all([fs.stat(out).catch(() => undefined), fs.stat(g.data)]);
  if (o && o.mtimeMs >= d.mtimeMs) return out;
  await run('bash', [path.join(REPO, 'scripts', 'guest', 'mkdisk.sh'), out, String(mib), g.data]);
  return out;
}
