import type { XdrReader, XdrWriter } from '../xdr/index.js';

/**
 * Chunk procedures of the GVFS extension program (v1): a compute host reads
 * a store-backed file (an image of an object store, see image/) by chunk
 * hash, verifying everything itself against the publisher keys it trusts.
 *
 *   STORE_FILE(fh, offset, count) → (status, nfsstat, image, path, digest, total, data)
 *     The file's image: its name, the file's path in it, the SHA-256 of the
 *     manifest's bytes (`digest`, the image version), and `count` bytes from
 *     `offset` of the signed manifest envelope (image/signature.ts; `total`
 *     bytes in all). `count` 0 asks for the header alone (a caller that has
 *     verified this digest already). The caller verifies the whole envelope
 *     against its own trusted keys and checks its digest: the proxy server
 *     cannot alter a chunk list.
 *
 *   GET_CHUNK(fh, hash, len) → (status, nfsstat, data)
 *     One chunk of file `fh` as stored (codec byte + payload, image/layout.ts),
 *     `len` bytes once decoded. Served only when (hash, len) is an extent of
 *     that file and the caller may read the file: a session learns a hash
 *     only from a manifest of its export and can fetch only those.
 *
 * Status: OK; NOTSUPP (fh is not a stored file: the export is not a store,
 * or a directory); NFSERR (`nfsstat`: BADHANDLE, STALE, ACCES ...);
 * DENIED (GET_CHUNK: the hash is not one of this file's chunks);
 * TOOBIG (GET_CHUNK: the stored chunk does not fit one reply: read the
 * extent with NFS READ and verify it).
 */
export const STORE_FILE = 10;
export const GET_CHUNK = 11;

export const enum ChunkStatus {
  OK = 0,
  NOTSUPP = 1,
  NFSERR = 2,
  DENIED = 3,
  TOOBIG = 4,
}

/** Largest manifest page one STORE_FILE reply carries. */
export const MAX_MANIFEST_PAGE = 512 << 10;
/** Largest stored chunk one GET_CHUNK reply carries (fits the 1 MiB + 64 KiB record every GVFS peer accepts). */
export const MAX_CHUNK_REPLY = 1 << 20;
const MAX_NAME = 255;
const MAX_PATH = 4096;

export interface StoreFileArgs {
  fh: Buffer;
  offset: number;
  count: number;
}

export interface StoreFileRes {
  status: ChunkStatus;
  nfsstat: number;
  image: string;
  path: string;
  /** 32 bytes (empty unless OK). */
  digest: Buffer;
  total: number;
  data: Buffer;
}

export interface GetChunkArgs {
  fh: Buffer;
  /** SHA-256 of the decoded chunk (32 bytes). */
  hash: Buffer;
  len: number;
}

export interface GetChunkRes {
  status: ChunkStatus;
  nfsstat: number;
  data: Buffer;
}

export const storeFileArgs = {
  enc: (w: XdrWriter, v: StoreFileArgs) => void w.opaque(v.fh).u32(v.offset).u32(v.count),
  dec: (r: XdrReader): StoreFileArgs => ({ fh: Buffer.from(r.opaque(64)), offset: r.u32(), count: r.u32() }),
};

export const storeFileRes = {
  enc: (w: XdrWriter, v: StoreFileRes) => void w.u32(v.status).u32(v.nfsstat).string(v.image).string(v.path).opaque(v.digest).u32(v.total).opaque(v.data),
  dec: (r: XdrReader): StoreFileRes => ({
    status: r.u32() as ChunkStatus,
    nfsstat: r.u32(),
    image: r.string(MAX_NAME),
    path: r.string(MAX_PATH),
    digest: Buffer.from(r.opaque(32)),
    total: r.u32(),
    data: Buffer.from(r.opaque(MAX_MANIFEST_PAGE)),
  }),
};

export const getChunkArgs = {
  enc: (w: XdrWriter, v: GetChunkArgs) => {
    if (v.hash.length !== 32) throw new RangeError(`GET_CHUNK: a hash is 32 bytes, got ${v.hash.length}`);
    w.opaque(v.fh).fixedOpaque(v.hash).u32(v.len);
  },
  dec: (r: XdrReader): GetChunkArgs => ({ fh: Buffer.from(r.opaque(64)), hash: Buffer.from(r.fixedOpaque(32)), len: r.u32() }),
};

export const getChunkRes = {
  enc: (w: XdrWriter, v: GetChunkRes) => void w.u32(v.status).u32(v.nfsstat).opaque(v.data),
  dec: (r: XdrReader): GetChunkRes => ({ status: r.u32() as ChunkStatus, nfsstat: r.u32(), data: Buffer.from(r.opaque(MAX_CHUNK_REPLY)) }),
};
