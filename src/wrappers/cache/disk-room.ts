import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * The cache and the disk it is on. A cache may not be promised more than
 * the disk can hold, and it leaves some of the disk free at all times
 * (headroom): on a full disk the cache could not write the small records
 * that retire delivered writes, nor could other programs on that disk go on
 * (removing a file through the mount included). The block store shrinks to
 * keep the headroom when something else fills the disk.
 */
export class CacheSizeError extends Error {
  override name = 'CacheSizeError';
}

const MiB = 1 << 20;

/** Disk left free beside the cache: 2 % of the file system, at least 1 MiB, at most 256 MiB. */
export function headroomOf(fsBytes: number): number {
  return Math.min(256 * MiB, Math.max(MiB, Math.floor(fsBytes * 0.02)));
}

/** Free space (for unprivileged users), size and headroom of the file system holding `dir`. */
export async function diskRoom(dir: string): Promise<{ free: number; size: number; headroom: number }> {
  const st = await fs.statfs(dir);
  const size = st.blocks * st.bsize;
  return { free: st.bavail * st.bsize, size, headroom: headroomOf(size) };
}

/** Disk bytes allocated to the files under `dir` (what the cache already holds there: reusable space). */
export async function bytesUnder(dir: string): Promise<number> {
  let n = 0;
  const walk = async (d: string): Promise<void> => {
    let names: string[];
    try {
      names = await fs.readdir(d);
    } catch {
      return;
    }
    for (const name of names) {
      const p = path.join(d, name);
      const st = await fs.lstat(p).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory()) await walk(p);
      else n += st.blocks * 512;
    }
  };
  await walk(dir);
  return n;
}

const fmt = (b: number) => (b >= 1024 ** 3 ? `${(b / 1024 ** 3).toFixed(1)} GiB` : `${(b / MiB).toFixed(1)} MiB`);

/**
 * The capacity a cache in `dir` may have: what the disk can give it (its
 * free space plus what the cache already holds there, less the headroom).
 * A larger `capacity` is refused with CacheSizeError when it was asked for
 * (`explicit`), or shrunk to fit (never below `minimum`) when it is only
 * the default.
 */
export async function fitCapacity(dir: string, capacity: number, explicit: boolean, minimum: number): Promise<{ capacity: number; shrunk: boolean; room: number }> {
  const [disk, held] = await Promise.all([diskRoom(dir), bytesUnder(dir)]);
  const room = disk.free + held - disk.headroom;
  if (capacity <= room) return { capacity, shrunk: false, room };
  const where = `${dir} (${fmt(disk.free)} free of ${fmt(disk.size)}, ${fmt(held)} held by the cache, ${fmt(disk.headroom)} kept free)`;
  if (explicit) {
    throw new CacheSizeError(`cache size ${fmt(capacity)} is larger than its disk can hold: at most ${fmt(Math.max(0, room))} in ${where}; give a smaller --cache-size or another --cache-dir`);
  }
  // A default on a disk smaller than the smallest cache: the smallest cache; the full-disk paths (writes
  // around the journal, blocks given back to the headroom) take over when the disk runs out.
  return { capacity: Math.max(room, minimum), shrunk: true, room };
}
