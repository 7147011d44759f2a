import type { Backend } from '../backend/backend.js';
import { storedFilesOf } from '../backend/capabilities.js';
import { FsError, isFsError } from '../backend/errors.js';
import { ChunkStatus, MAX_CHUNK_REPLY, MAX_MANIFEST_PAGE, type GetChunkArgs, type GetChunkRes, type StoreFileArgs, type StoreFileRes } from '../ext/chunks-codec.js';
import { ACCESS3_READ } from '../nfs3/constants.js';
import { STATUS_OF } from '../nfs3/status.js';
import type { Credentials } from '../rpc/types.js';
import { logger } from '../util/log.js';

const log = logger('chunks');

export interface ChunkServerOptions {
  /** The session-facing stack: the READ permission check goes through it (same answer as NFS ACCESS). */
  top: Backend;
  /** Proxy handle → export index and that export's handle (refuses a handle not issued to the caller's session). */
  unwrap: (fh: Buffer, c: Credentials) => { ex: number; ufh: Buffer };
  /** Each export's own backend, by export index (its handles are `ufh`). */
  exports: Backend[];
}

/**
 * The proxy server's side of STORE_FILE and GET_CHUNK (ext/chunks-codec.ts).
 * Exports whose backend has the StoredFiles capability answer; others say
 * NOTSUPP. A caller gets a manifest only for a file it may read, and a
 * chunk only if it is an extent of a file it may read.
 */
export class ChunkServer {
  readonly c = { storeFiles: 0, chunks: 0, chunkBytes: 0, denied: 0 };

  constructor(private readonly o: ChunkServerOptions) {}

  async storeFile(cred: Credentials, a: StoreFileArgs): Promise<StoreFileRes> {
    this.c.storeFiles++;
    const none = { image: '', path: '', digest: Buffer.alloc(0), total: 0, data: Buffer.alloc(0) };
    try {
      const s = this.source(cred, a.fh);
      if (!s) return { status: ChunkStatus.NOTSUPP, nfsstat: 0, ...none };
      await this.readable(cred, a.fh);
      const f = await s.files.storedFile(s.ufh);
      if (!f) return { status: ChunkStatus.NOTSUPP, nfsstat: 0, ...none };
      const from = Math.min(a.offset, f.envelope.length);
      const data = f.envelope.subarray(from, from + Math.min(a.count, MAX_MANIFEST_PAGE));
      return { status: ChunkStatus.OK, nfsstat: 0, image: f.image, path: f.path, digest: f.digest, total: f.envelope.length, data };
    } catch (e) {
      if (isFsError(e)) return { status: ChunkStatus.NFSERR, nfsstat: STATUS_OF[e.code], ...none };
      throw e;
    }
  }

  async getChunk(cred: Credentials, a: GetChunkArgs): Promise<GetChunkRes> {
    const empty = Buffer.alloc(0);
    try {
      const s = this.source(cred, a.fh);
      if (!s) return { status: ChunkStatus.NOTSUPP, nfsstat: 0, data: empty };
      await this.readable(cred, a.fh);
      const hash = a.hash.toString('hex');
      const data = await s.files.fileChunk(s.ufh, hash, a.len);
      if (!data) {
        this.c.denied++;
        log.warn({ session: cred.session, hash, len: a.len }, 'GET_CHUNK refused: not a chunk of that file');
        return { status: ChunkStatus.DENIED, nfsstat: 0, data: empty };
      }
      if (data.length > MAX_CHUNK_REPLY) return { status: ChunkStatus.TOOBIG, nfsstat: 0, data: empty };
      this.c.chunks++;
      this.c.chunkBytes += data.length;
      return { status: ChunkStatus.OK, nfsstat: 0, data };
    } catch (e) {
      if (isFsError(e)) return { status: ChunkStatus.NFSERR, nfsstat: STATUS_OF[e.code], data: empty };
      throw e;
    }
  }

  private source(cred: Credentials, fh: Buffer) {
    const { ex, ufh } = this.o.unwrap(fh, cred);
    const files = storedFilesOf(this.o.exports[ex]);
    return files ? { files, ufh } : undefined;
  }

  private async readable(cred: Credentials, fh: Buffer): Promise<void> {
    const r = await this.o.top.access(cred, fh, ACCESS3_READ);
    if (!(r.access & ACCESS3_READ)) throw new FsError('ACCES', 'no read access');
  }
}
