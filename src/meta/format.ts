import { createHash } from 'node:crypto';
import { XdrReader, XdrWriter } from '../xdr/index.js';

/**
 * Application-driven meta-data of one file (docs/meta-data.md): how its
 * data should move. Stored on the state server in the export root's
 * `.gvfs-meta/` directory as `<fileid>.gvmeta`, XDR-encoded (the same codec
 * family as the wire; the GET_META procedure carries these bytes as they are):
 *
 *   magic "GVMD" | version (1) | fileid u64 | size u64 | mtime, ctime (sec, nsec)
 *   | block size | hint | hash algorithm | zero map (bit i: block i is all zero)
 *   | hashes (HASH_LEN bytes per block; zero blocks all-zero) | prefetch order
 *   | created (ms) | source name
 *
 * The meta-data names one version of the file (fileid, size, mtime, ctime):
 * any change to the file — a write, truncate, chmod or rename moves its
 * ctime — makes it stale, and stale meta-data is never used.
 */
export const META_MAGIC = 0x47564d44; // "GVMD"
export const META_VERSION = 1;
export const META_DIR = '.gvfs-meta';
export const META_SUFFIX = '.gvmeta';
/** SHA-256 cut to 128 bits: strong enough to tell a block from any other, half the size. */
export const HASH_ALG = 'sha256-128';
export const HASH_LEN = 16;
export const MIN_BLOCK = 4096;
export const MAX_BLOCK = 16 << 20;
export const DEFAULT_BLOCK = 64 << 10;

export type TransferHint = 'ondemand' | 'whole' | 'prefetch';
export const HINTS: TransferHint[] = ['ondemand', 'whole', 'prefetch'];

export interface Time {
  sec: number;
  nsec: number;
}

/** The file version meta-data describes (NFS attributes, Fattr3, are one: compare them directly). */
export interface MetaVersion {
  fileid: bigint;
  size: number;
  mtime: Time;
  ctime: Time;
}

export interface FileMeta extends MetaVersion {
  blockSize: number;
  hint: TransferHint;
  /** Bit i set: block i is all zero bytes. */
  zeroMap: Buffer;
  /** HASH_LEN bytes per block. */
  hashes: Buffer;
  /** Block indexes in the order a recorded workload first read them. */
  order: number[];
  created: number;
  source: string;
}

export function blockCount(m: Pick<FileMeta, 'size' | 'blockSize'>): number {
  return Math.ceil(m.size / m.blockSize);
}

export function isZero(m: Pick<FileMeta, 'zeroMap'>, i: number): boolean {
  return (m.zeroMap[i >> 3] & (1 << (i & 7))) !== 0;
}

export function blockHash(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest().subarray(0, HASH_LEN);
}

export function hashOf(m: Pick<FileMeta, 'hashes'>, i: number): Buffer {
  return m.hashes.subarray(i * HASH_LEN, (i + 1) * HASH_LEN);
}

export function zeroBlocks(m: FileMeta): number {
  let n = 0;
  for (let i = 0, c = blockCount(m); i < c; i++) if (isZero(m, i)) n++;
  return n;
}

export function sameVersion(a: MetaVersion, b: MetaVersion): boolean {
  return a.fileid === b.fileid && a.size === b.size && a.mtime.sec === b.mtime.sec && a.mtime.nsec === b.mtime.nsec && a.ctime.sec === b.ctime.sec && a.ctime.nsec === b.ctime.nsec;
}

export function metaFileName(fileid: bigint): string {
  return `${fileid}${META_SUFFIX}`;
}

export class MetaFormatError extends Error {
  override name = 'MetaFormatError';
}

export function encodeMeta(m: FileMeta): Buffer {
  const w = new XdrWriter(64 + m.zeroMap.length + m.hashes.length + m.order.length * 4);
  w.u32(META_MAGIC).u32(META_VERSION).u64big(m.fileid).u64(m.size);
  w.u32(m.mtime.sec).u32(m.mtime.nsec).u32(m.ctime.sec).u32(m.ctime.nsec);
  w.u32(m.blockSize).u32(HINTS.indexOf(m.hint)).string(HASH_ALG);
  w.opaque(m.zeroMap).opaque(m.hashes);
  w.u32(m.order.length);
  for (const i of m.order) w.u32(i);
  w.u64(m.created).string(cutUtf8(m.source, 255));
  return w.toBuffer();
}

/** Decode and check every field against the others; a malformed file is an error, never a guess. */
export function decodeMeta(buf: Buffer): FileMeta {
  try {
    const r = new XdrReader(buf);
    if (r.u32() !== META_MAGIC) throw new MetaFormatError('not a GVFS meta-data file');
    const v = r.u32();
    if (v !== META_VERSION) throw new MetaFormatError(`meta-data version ${v} is not supported (this GVFS reads ${META_VERSION})`);
    const fileid = r.u64big();
    const size = r.u64();
    const mtime = { sec: r.u32(), nsec: r.u32() };
    const ctime = { sec: r.u32(), nsec: r.u32() };
    const blockSize = r.u32();
    const hint = HINTS[r.u32()];
    const alg = r.string(32);
    if (!hint) throw new MetaFormatError('unknown transfer hint');
    if (alg !== HASH_ALG) throw new MetaFormatError(`unknown hash algorithm ${alg}`);
    if (blockSize < MIN_BLOCK || blockSize > MAX_BLOCK || blockSize % MIN_BLOCK) throw new MetaFormatError(`bad block size ${blockSize}`);
    const n = Math.ceil(size / blockSize);
    const zeroMap = Buffer.from(r.opaque(Math.ceil(n / 8)));
    const hashes = Buffer.from(r.opaque(n * HASH_LEN));
    if (zeroMap.length !== Math.ceil(n / 8) || hashes.length !== n * HASH_LEN) throw new MetaFormatError('zero map or hashes do not match the file size');
    const count = r.u32();
    if (count > n) throw new MetaFormatError('prefetch order longer than the file');
    const order: number[] = [];
    for (let i = 0; i < count; i++) {
      const b = r.u32();
      if (b >= n) throw new MetaFormatError(`prefetch order names block ${b} of ${n}`);
      order.push(b);
    }
    const created = r.u64();
    const source = r.string(255);
    r.end();
    return { fileid, size, mtime, ctime, blockSize, hint, zeroMap, hashes, order, created, source };
  } catch (e) {
    if (e instanceof MetaFormatError) throw e;
    throw new MetaFormatError(`malformed meta-data: ${(e as Error).message}`);
  }
}

/** At most `max` bytes of UTF-8, cut at a character boundary (the decoder's limit is in bytes). */
export function cutUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = '';
  let n = 0;
  for (const ch of s) {
    const b = Buffer.byteLength(ch);
    if (n + b > max) break;
    out += ch;
    n += b;
  }
  return out;
}
