import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';

const MiB = 1 << 20;

/** A file of random bytes, written in 8 MiB pieces (never whole in memory). */
export async function randomFile(file: string, size: number): Promise<void> {
  const fh = await fs.open(file, 'w');
  try {
    for (let off = 0; off < size; off += 8 * MiB) await fh.write(randomBytes(Math.min(8 * MiB, size - off)));
  } finally {
    await fh.close();
  }
}

/**
 * A memory-state-like file: `zeroFraction` of its 64 KiB blocks all zero
 * (scattered, as free guest pages are), the rest compressible about 2:1 like
 * real memory (half random bytes, half repeated patterns).
 */
export async function memoryStateFile(file: string, size: number, zeroFraction = 0.5, seed = 1): Promise<void> {
  const block = 64 * 1024;
  let x = seed >>> 0;
  const rnd = () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const fh = await fs.open(file, 'w');
  try {
    const buf = Buffer.alloc(8 * MiB);
    for (let off = 0; off < size; off += buf.length) {
      const n = Math.min(buf.length, size - off);
      for (let b = 0; b < n; b += block) {
        const blk = buf.subarray(b, b + block);
        if (rnd() < zeroFraction) blk.fill(0);
        else {
          randomBytes(block / 2).copy(blk, 0);
          blk.fill(Math.floor(rnd() * 256), block / 2);
        }
      }
      await fh.write(buf.subarray(0, n));
    }
  } finally {
    await fh.close();
  }
}
