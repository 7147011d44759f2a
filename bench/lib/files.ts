import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

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
 * (scattered, as free guest pages are), the rest compressible about 2:1 as
 * real memory is: half of each block's 64-byte lines random, the other half
 * repeats of lines seen shortly before (pointers, headers, structures of one
 * kind), so a compressor has to find the matches. Deterministic for a seed;
 * written in 1 MiB pieces, never held whole.
 */
export async function memoryStateFile(file: string, size: number, zeroFraction = 0.5, seed = 1): Promise<{ zeroBlocks: number; blocks: number }> {
  const bs = 64 * 1024;
  let x = seed >>> 0 || 1;
  const rnd = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const blocks = Math.ceil(size / bs);
  let zeroBlocks = 0;
  const fh = await fs.open(file, 'w');
  try {
    const buf = Buffer.alloc(MiB);
    let pos = 0;
    for (let b = 0; b < blocks; ) {
      let used = 0;
      for (; b < blocks && used + bs <= buf.length; b++, used += bs) {
        const blk = buf.subarray(used, used + bs);
        if (rnd() / 2 ** 32 < zeroFraction) {
          blk.fill(0);
          zeroBlocks++;
          continue;
        }
        for (let l = 0; l < bs; l += 64) {
          const line = blk.subarray(l, l + 64);
          if (l >= 64 * 8 && rnd() & 1) {
            const from = l - 64 * (1 + (rnd() % 8));
            blk.copy(line, 0, from, from + 64);
          } else for (let k = 0; k < 64; k += 4) line.writeUInt32LE(rnd(), k);
        }
      }
      const len = Math.min(used, size - pos);
      await fh.write(buf, 0, len, pos);
      pos += len;
    }
  } finally {
    await fh.close();
  }
  return { zeroBlocks, blocks };
}

/**
 * The mount benchmarks' small-file tree (a typical source tree): DIR/tree with
 * 50 directories and `nFiles` files of 200 B – 16 KiB (sizes from a fixed
 * seed), packed once into DIR/tree.tar; the tree itself is removed. Returns
 * the tar's path.
 */
export async function packSmallFileTree(dir: string, nFiles: number): Promise<string> {
  const tree = path.join(dir, 'tree');
  let seed = 1;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < nFiles; i++) {
    const d = path.join(tree, `dir${String(i % 50).padStart(2, '0')}`);
    if (i < 50) await fs.mkdir(d, { recursive: true });
    await fs.writeFile(path.join(d, `file${i}.txt`), randomBytes(200 + Math.floor(rnd() * 16 * 1024)));
  }
  const tarFile = path.join(dir, 'tree.tar');
  await promisify(execFile)('tar', ['-C', dir, '-cf', tarFile, 'tree']);
  await fs.rm(tree, { recursive: true });
  return tarFile;
}
