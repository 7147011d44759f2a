import fs from 'node:fs/promises';

/**
 * A memory-state-like file: blocks of `blockSize`, a fraction of them all
 * zero (free pages), the rest compressible about 2:1 as real memory is —
 * half of each block's 64-byte lines random, the other half repeats of
 * lines seen shortly before (pointers, headers, structures of one kind).
 * Deterministic for a seed; written in 1 MiB pieces, never held whole.
 */
export async function writeMemoryImage(file: string, o: { size: number; blockSize?: number; zeroFraction?: number; seed?: number }): Promise<{ zeroBlocks: number; blocks: number }> {
  const bs = o.blockSize ?? 64 << 10;
  const zf = o.zeroFraction ?? 0.5;
  let x = (o.seed ?? 1) >>> 0 || 1;
  const rnd = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const h = await fs.open(file, 'w');
  let zeroBlocks = 0;
  const blocks = Math.ceil(o.size / bs);
  try {
    const piece = Math.max(bs, 1 << 20);
    const buf = Buffer.alloc(piece);
    let pos = 0;
    for (let b = 0; b < blocks; ) {
      let used = 0;
      for (; b < blocks && used + bs <= piece; b++, used += bs) {
        const blk = buf.subarray(used, used + bs);
        if (rnd() / 0x1_0000_0000 < zf) {
          blk.fill(0);
          zeroBlocks++;
          continue;
        }
        for (let l = 0; l < bs; l += 64) {
          const line = blk.subarray(l, l + 64);
          if (l >= 64 * 8 && rnd() & 1) {
            const from = l - 64 * (1 + (rnd() % 8));
            blk.copy(line, 0, from, from + 64);
          } else {
            for (let k = 0; k < 64; k += 4) line.writeUInt32LE(rnd(), k);
          }
        }
      }
      const len = Math.min(used, o.size - pos);
      await h.write(buf, 0, len, pos);
      pos += len;
    }
  } finally {
    await h.close();
  }
  return { zeroBlocks, blocks };
}
