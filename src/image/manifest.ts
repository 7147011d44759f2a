import { createHash } from 'node:crypto';
import { HASH_LEN, MAX_BLOCK, MIN_BLOCK } from '../meta/format.js';
import { checkChunking, MAX_CHUNK, type ChunkingParams } from './chunker.js';

/**
 * An image manifest: everything a reader needs to serve an image's files
 * from content-addressed chunks. JSON, signed as bytes (signature.ts), so
 * the exact bytes that were signed are the bytes that are parsed.
 *
 * Entries are sorted by path; every parent directory of an entry is an entry
 * itself (the root, '', is implicit). A file's `extents` cover [0, size) in
 * order: [offset, length, sha256 hex] for a stored chunk or
 * [offset, length, null] for a zero run (never stored; reads of it are
 * answered without the store). `hint` and `order` carry the meta-data layer's
 * transfer hint and recorded prefetch order (extent indexes, first read first).
 * `blocks` carries the meta-data layer's per-block hashes (meta/format.ts:
 * HASH_LEN bytes per block of `size` bytes, all zero for an all-zero block),
 * stored as one chunk named by its SHA-256 (so the signature covers them),
 * for a store-backed server to answer GET_META as a local export would.
 */
export const MANIFEST_FORMAT = 'gvfs-image/1';
/** A reader refuses larger manifests before parsing them. */
export const MAX_MANIFEST_BYTES = 64 << 20;

export type Extent = [off: number, len: number, hash: string | null];
export type Hint = 'ondemand' | 'whole' | 'prefetch';

export type Entry =
  | { path: string; type: 'dir'; mode: number; mtime: number }
  | { path: string; type: 'file'; mode: number; mtime: number; size: number; extents: Extent[]; hint?: Hint; order?: number[]; blocks?: BlockHashes }
  | { path: string; type: 'symlink'; mode: number; mtime: number; target: string };

/** A file's meta-data block hashes: block size and the chunk (sha256 hex) holding HASH_LEN bytes per block. */
export interface BlockHashes {
  size: number;
  hashes: string;
}

/** Bytes of a file's block-hash chunk. */
export function blockHashesLen(fileSize: number, blockSize: number): number {
  return Math.ceil(fileSize / blockSize) * HASH_LEN;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  name: string;
  /** ISO time of the push. */
  created: string;
  chunking: ChunkingParams;
  entries: Entry[];
}

export class ManifestError extends Error {
  override name = 'ManifestError';
}

export const IMAGE_NAME = /^[A-Za-z0-9._-]{1,128}$/;
const HEX64 = /^[0-9a-f]{64}$/;

export function sha256hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function isSafePath(p: string): boolean {
  if (p === '' || p.length > 4096 || p.startsWith('/') || p.endsWith('/') || p.includes('\0')) return false;
  return p.split('/').every((s) => s !== '' && s !== '.' && s !== '..' && Buffer.byteLength(s) <= 255);
}

function isNat(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/**
 * Parse and check a manifest's bytes. Everything a server later relies on
 * is checked here once: safe, unique, sorted paths with their parents
 * present; extents contiguous over the file's size; chunk lengths bounded.
 */
export function parseManifest(bytes: Buffer): Manifest {
  if (bytes.length > MAX_MANIFEST_BYTES) throw new ManifestError(`manifest of ${bytes.length} bytes exceeds ${MAX_MANIFEST_BYTES}`);
  let m: Manifest;
  try {
    m = JSON.parse(bytes.toString('utf8')) as Manifest;
  } catch (e) {
    throw new ManifestError(`manifest is not JSON: ${(e as Error).message}`);
  }
  const bad = (why: string): never => {
    throw new ManifestError(`bad manifest: ${why}`);
  };
  if (typeof m !== 'object' || m === null || m.format !== MANIFEST_FORMAT) bad(`format is not ${MANIFEST_FORMAT}`);
  if (typeof m.name !== 'string' || !IMAGE_NAME.test(m.name)) bad('name');
  if (typeof m.created !== 'string') bad('created');
  try {
    checkChunking(m.chunking);
  } catch (e) {
    bad((e as Error).message);
  }
  if (!Array.isArray(m.entries)) bad('entries');
  const dirs = new Set<string>(['']);
  let prev = '';
  for (const e of m.entries) {
    if (typeof e !== 'object' || e === null || typeof e.path !== 'string' || !isSafePath(e.path)) bad(`path ${JSON.stringify((e as Entry)?.path)}`);
    if (prev !== '' && !(prev < e.path)) bad(`entries not sorted/unique at ${e.path}`);
    prev = e.path;
    const parent = e.path.includes('/') ? e.path.slice(0, e.path.lastIndexOf('/')) : '';
    if (!dirs.has(parent)) bad(`${e.path}: parent directory not listed before it`);
    if (!isNat(e.mode) || e.mode > 0o7777 || typeof e.mtime !== 'number' || !Number.isFinite(e.mtime)) bad(`${e.path}: mode/mtime`);
    if (e.type === 'dir') dirs.add(e.path);
    else if (e.type === 'symlink') {
      if (typeof e.target !== 'string' || e.target.length === 0 || e.target.length > 4096) bad(`${e.path}: target`);
    } else if (e.type === 'file') {
      if (!isNat(e.size) || !Array.isArray(e.extents)) bad(`${e.path}: size/extents`);
      let at = 0;
      for (const x of e.extents) {
        if (!Array.isArray(x) || x.length !== 3 || x[0] !== at || !isNat(x[1]) || x[1] === 0) bad(`${e.path}: extent at ${at}`);
        if (x[2] !== null && (typeof x[2] !== 'string' || !HEX64.test(x[2]) || x[1] > MAX_CHUNK)) bad(`${e.path}: chunk at ${at}`);
        at += x[1];
      }
      if (at !== e.size) bad(`${e.path}: extents cover ${at} of ${e.size} bytes`);
      if (e.hint !== undefined && e.hint !== 'ondemand' && e.hint !== 'whole' && e.hint !== 'prefetch') bad(`${e.path}: hint`);
      if (e.order !== undefined && (!Array.isArray(e.order) || e.order.some((i) => !isNat(i) || i >= e.extents.length))) bad(`${e.path}: order`);
      if (e.blocks !== undefined) {
        const b = e.blocks;
        if (typeof b !== 'object' || b === null || !isNat(b.size) || b.size < MIN_BLOCK || b.size > MAX_BLOCK || b.size % MIN_BLOCK !== 0) bad(`${e.path}: block size`);
        if (typeof b.hashes !== 'string' || !HEX64.test(b.hashes) || blockHashesLen(e.size, b.size) > MAX_CHUNK || e.size === 0) bad(`${e.path}: block hashes`);
      }
    } else bad(`${(e as Entry).path}: type`);
  }
  return m;
}

/** Canonical bytes of a manifest we build (the signer signs exactly these). */
export function manifestBytes(m: Manifest): Buffer {
  return Buffer.from(JSON.stringify(m));
}

/** Every chunk hash a manifest names. */
export function chunksOf(m: Manifest): Set<string> {
  const s = new Set<string>();
  for (const e of m.entries) {
    if (e.type !== 'file') continue;
    for (const x of e.extents) if (x[2]) s.add(x[2]);
    if (e.blocks) s.add(e.blocks.hashes);
  }
  return s;
}
