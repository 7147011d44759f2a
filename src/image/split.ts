import { open } from 'node:fs/promises';
import { nextCut, type ChunkingParams } from './chunker.js';

/** Zero runs are found on this grid (file offsets): a block of only zero bytes is never stored. */
export const ZERO_BLOCK = 4096;
const READ_SIZE = 4 << 20;

export type Piece = { off: number; len: number; data: Buffer } | { off: number; len: number; zero: true };

function allZero(b: Buffer, s: number, e: number): boolean {
  // Compare 8 bytes at a time where aligned; the rest byte by byte.
  let i = s;
  for (; i + 8 <= e; i += 8) if (b.readBigUInt64LE(i) !== 0n) return false;
  for (; i < e; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Split a file into zero runs (4 KiB-aligned blocks of zeros, merged) and
 * chunks of the data between them, cut by `p`. Reads sequentially with a
 * bounded buffer (a few MiB whatever the file size). Yields pieces in
 * offset order that exactly cover [0, size). `size` is the size the caller
 * stat'ed; a file that changes length while read is an error.
 */
export async function* splitFile(file: string, size: number, p: ChunkingParams): AsyncGenerator<Piece> {
  const fh = await open(file, 'r');
  try {
    // `pend` holds data not yet cut, starting at file offset `pendOff`.
    let pend = Buffer.alloc(Math.max(2 * p.max, READ_SIZE) + READ_SIZE);
    let pendLen = 0;
    let pendOff = 0;
    let zeroOff = -1;
    const cut = function* (final: boolean): Generator<Piece> {
      let s = 0;
      while (s < pendLen && (final || pendLen - s >= p.max)) {
        const n = nextCut(p, pend, s, pendLen);
        yield { off: pendOff + s, len: n, data: Buffer.from(pend.subarray(s, s + n)) };
        s += n;
      }
      pend.copy(pend, 0, s, pendLen);
      pendLen -= s;
      pendOff += s;
    };
    const buf = Buffer.alloc(READ_SIZE);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(READ_SIZE, size - off), off);
      if (bytesRead === 0) throw new Error(`${file}: shorter than ${size} bytes (changed while pushed?)`);
      for (let b = 0; b < bytesRead; b += ZERO_BLOCK) {
        const e = Math.min(b + ZERO_BLOCK, bytesRead);
        if (allZero(buf, b, e)) {
          if (zeroOff < 0) {
            yield* cut(true);
            zeroOff = off + b;
          }
        } else {
          if (zeroOff >= 0) {
            yield { off: zeroOff, len: off + b - zeroOff, zero: true };
            zeroOff = -1;
            pendOff = off + b;
          }
          if (pendLen + (e - b) > pend.length) {
            const bigger = Buffer.alloc(pend.length * 2);
            pend.copy(bigger, 0, 0, pendLen);
            pend = bigger;
          }
          buf.copy(pend, pendLen, b, e);
          pendLen += e - b;
        }
      }
      off += bytesRead;
      if (pendLen >= 2 * p.max) yield* cut(false);
    }
    if (zeroOff >= 0) yield { off: zeroOff, len: size - zeroOff, zero: true };
    else yield* cut(true);
  } finally {
    await fh.close();
  }
}
