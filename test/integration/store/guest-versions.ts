import { createHash } from 'node:crypto';
import { copyFile, lstat, mkdir, open, readdir, readFile, writeFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The demo guest (scripts build it into build/guest). */
export const GUEST = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'build', 'guest');

/** Deterministic bytes (so measurements repeat). */
export function seeded(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  let s = createHash('sha256').update(seed).digest();
  for (let i = 0; i < n; i += 32) {
    s.copy(out, i, 0, Math.min(32, n - i));
    s = createHash('sha256').update(s).digest();
  }
  return out;
}

/**
 * A second version of the demo guest, changed the way a guest update
 * changes an image: a few clusters of the disk rewritten in place, a few
 * hundred bytes inserted into the initrd (a regenerated archive whose
 * members mostly stay the same) and into the data file, the config edited;
 * the kernel unchanged.
 */
export async function makeGuestV2(dir: string): Promise<void> {
  await copyGuest(dir);
  const disk = await open(path.join(dir, 'disk.qcow2'), 'r+');
  for (const off of [196_608, 655_360, 1_310_720]) await disk.write(seeded(4096, `disk-${off}`), 0, 4096, off);
  await disk.close();
  const insert = async (name: string, at: number, n: number) => {
    const f = path.join(dir, name);
    const b = await readFile(f);
    await writeFile(f, Buffer.concat([b.subarray(0, at), seeded(n, `${name}-${at}`), b.subarray(at)]));
  };
  await insert('initrd.img', 400_000, 300);
  await insert('data.bin', 300_000, 17);
  const j = path.join(dir, 'guest.json');
  await writeFile(j, (await readFile(j, 'utf8')).replace('panic=-1 quiet', 'panic=-1 quiet loglevel=3'));
}

/**
 * A private copy of the demo guest's files. build/guest is a symbolic link
 * into the main checkout, shared by everyone: fs.cp would copy the link
 * itself, and writing "into the copy" would change the shared guest. Copy
 * file by file into a real directory, and check it is one.
 */
export async function copyGuest(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  if (!(await lstat(dir)).isDirectory()) throw new Error(`${dir}: not a real directory`);
  for (const n of await readdir(GUEST)) await copyFile(path.join(GUEST, n), path.join(dir, n));
}

/** Sum of the sizes of the regular files in a directory (not recursive: the guest is flat). */
export async function plainSize(dir: string, names: string[]): Promise<number> {
  let s = 0;
  for (const n of names) s += (await stat(path.join(dir, n))).size;
  return s;
}
