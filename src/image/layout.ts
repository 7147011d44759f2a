import { createHash } from 'node:crypto';
import { Codec, pack, unpack } from '../meta/compress.js';

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
  let raw: Buffer;
  try {
    raw = unpack(stored.subarray(1), codec, len);
  } catch (e) {
    throw new ChunkError(`chunk ${hash}: ${(e as Error).message}`);
  }
  if (createHash('sha256').update(raw).digest('hex') !== hash) throw new ChunkError(`chunk ${hash}: content does not match its hash (altered in the store)`);
  return raw;
}
