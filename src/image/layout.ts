import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { Codec, pack, unpack } from '../meta/compress.js';

// zstd-napi's binding: frame headers, read before anything is decompressed.
const zstd = createRequire(import.meta.url)('zstd-napi/binding.js') as { getFrameContentSize(b: Uint8Array): number | null; findFrameCompressedSize(b: Uint8Array): number };

/** Sum of the content sizes the zstd frames declare (null: a frame does not say, or the data is not zstd). */
function declaredSize(data: Buffer): number | null {
  let total = 0;
  let rest: Buffer = data;
  try {
    while (rest.length > 0) {
      const n = zstd.getFrameContentSize(rest);
      if (n === null) return null;
      total += n;
      rest = rest.subarray(zstd.findFrameCompressedSize(rest));
    }
  } catch {
    return null;
  }
  return total;
}

/**
 * Keys in a store (under its root):
 *   images/NAME        signed manifest envelope (signature.ts)
 *   chunks/SHA256HEX   one chunk: codec byte (0 raw, 1 zstd) + payload
 *   pending/ID         a push in progress (lease; see gc.ts)
 *   locks/gc           a gc in progress
 */
export const imageKey = (name: string) => `images/${name}`;
export const chunkKey = (hash: string) => `chunks/${hash}`;
export const IMAGES = 'images/';
export const CHUNKS = 'chunks/';
export const PENDING = 'pending/';
export const GC_LOCK = 'locks/gc';

export class ChunkError extends Error {
  override name = 'ChunkError';
}

export function encodeChunk(raw: Buffer, level = 3): Buffer {
  const p = pack(raw, Codec.ZSTD, level);
  return Buffer.concat([Buffer.from([p.codec]), p.data]);
}

/** Decode a stored chunk and check it is the chunk asked for: `len` bytes whose SHA-256 is `hash`. */
export function decodeChunk(stored: Buffer, hash: string, len: number): Buffer {
  if (stored.length < 1) throw new ChunkError(`chunk ${hash}: empty object`);
  const codec = stored[0];
  if (codec !== Codec.NONE && codec !== Codec.ZSTD) throw new ChunkError(`chunk ${hash}: unknown codec ${codec}`);
  // The decompressor allocates what the frames declare: a forged chunk could ask for gigabytes. Only `len` is acceptable.
  if (codec === Codec.ZSTD && declaredSize(stored.subarray(1)) !== len) throw new ChunkError(`chunk ${hash}: compressed frames do not declare ${len} bytes`);
  let raw: Buffer;
  try {
    raw = unpack(stored.subarray(1), codec, len);
  } catch (e) {
    throw new ChunkError(`chunk ${hash}: ${(e as Error).message}`);
  }
  if (createHash('sha256').update(raw).digest('hex') !== hash) throw new ChunkError(`chunk ${hash}: content does not match its hash (altered in the store)`);
  return raw;
}
