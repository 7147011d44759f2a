import type { Backend } from '../backend/backend.js';
import { isFsError } from '../backend/errors.js';
import { ChunkStatus, GET_CHUNK, getChunkArgs, getChunkRes } from '../ext/chunks-codec.js';
import type { ExtLink } from '../ext/meta-client.js';
import { chunkKey } from '../image/layout.js';
import { Nfs3Status } from '../nfs3/constants.js';
import { AuthFlavor, RpcError, type Credentials } from '../rpc/types.js';
import { isStoreError, type ObjectStore } from '../store/store.js';

/**
 * Where a site tier fetches a chunk it does not hold (the contract the
 * cache server relies on):
 *   - resolves with the chunk's stored form (codec byte + payload, not yet
 *     verified: the tier verifies it before keeping or serving it);
 *   - resolves undefined when upstream has no such chunk for this request
 *     (not in the store; or, through a proxy server, not a chunk of the
 *     file named, a file the tier's session may not read, or no file
 *     named): the host asks its own proxy server, the tier stays in use;
 *   - rejects when upstream cannot be reached or fails (the host skips the
 *     tier for a while).
 */
export interface ChunkUpstream {
  /** For logs and the daemon registry. */
  readonly name: string;
  /** Misses need the file the chunk belongs to (image and path): a proxy server serves chunks by file. */
  readonly needsFile: boolean;
  get(hash: string, len: number, file?: ChunkFile): Promise<Buffer | undefined>;
  close(): Promise<void>;
}

/** A file of a store image, as STORE_FILE names it: the image's name and the file's path in the image. */
export interface ChunkFile {
  image: string;
  path: string;
}

/** The object store itself, where the site may read it. */
export class StoreUpstream implements ChunkUpstream {
  readonly needsFile = false;
  constructor(private readonly store: ObjectStore) {}
  get name(): string {
    return this.store.url;
  }
  async get(hash: string): Promise<Buffer | undefined> {
    try {
      return await this.store.get(chunkKey(hash));
    } catch (e) {
      if (isStoreError(e, 'NOT_FOUND')) return undefined;
      throw e;
    }
  }
  close(): Promise<void> {
    return this.store.close();
  }
}

/** The link a proxy-server upstream needs: the NFS calls to find a file, and GET_CHUNK. */
export type ProxyLink = Pick<Backend, 'mount' | 'lookup' | 'close'> & ExtLink;

export interface ProxyUpstreamOptions {
  /** Over the tier's ONE session (its own session key): the tier can fetch only what that session may read. */
  link: ProxyLink;
  name: string;
  /** The store export's path on the proxy server (MOUNT's dirpath); its root lists the images. */
  exportPath?: string;
  /** The identity claimed in calls (the proxy server maps the session's user whatever it says). */
  cred?: Credentials;
  /** File handles remembered (image/path → handle), oldest forgotten first. */
  maxHandles?: number;
}

/**
 * A store-backed proxy server (gvfs proxy-server --store) as the tier's
 * upstream. A chunk is asked for by GET_CHUNK on the file the host named,
 * looked up by name in the tier's own session: the proxy server answers
 * only when that session may read the file and (hash, length) is one of
 * its extents, so the tier never obtains a chunk its session could not.
 */
export class ProxyUpstream implements ChunkUpstream {
  readonly needsFile = true;
  private root?: Promise<Buffer>;
  private readonly handles = new Map<string, Promise<Buffer | undefined>>();
  private readonly cred: Credentials;
  readonly stats = { lookups: 0, getChunks: 0, denied: 0 };

  constructor(private readonly o: ProxyUpstreamOptions) {
    this.cred = o.cred ?? { flavor: AuthFlavor.AUTH_SYS, uid: process.getuid?.() ?? 65534, gid: process.getgid?.() ?? 65534, gids: [] };
  }

  get name(): string {
    return this.o.name;
  }

  async get(hash: string, len: number, file?: ChunkFile): Promise<Buffer | undefined> {
    if (!file) return undefined;
    // A remembered handle may be of an older version of the image (STALE): looked up once more.
    for (let attempt = 0; attempt < 2; attempt++) {
      const fh = await this.handle(file);
      if (!fh) return undefined;
      this.stats.getChunks++;
      const r = await this.o.link.ext(GET_CHUNK, (w) => getChunkArgs.enc(w, { fh, hash: Buffer.from(hash, 'hex'), len }), getChunkRes.dec, this.cred);
      if (r.status === ChunkStatus.OK) return r.data;
      if (r.status === ChunkStatus.NFSERR && r.nfsstat === Nfs3Status.STALE && attempt === 0) {
        this.handles.delete(fileKey(file));
        continue;
      }
      // DENIED (not a chunk of that file), NFSERR (no permission ...), TOOBIG (the host reads it over NFS), NOTSUPP: not through the tier.
      this.stats.denied++;
      if (r.status === ChunkStatus.NFSERR) this.handles.delete(fileKey(file));
      return undefined;
    }
    return undefined;
  }

  close(): Promise<void> {
    return this.o.link.close();
  }

  /** The file's handle in the tier's session; undefined: no such file, or not visible to the session. Link failures reject. */
  private handle(file: ChunkFile): Promise<Buffer | undefined> {
    const k = fileKey(file);
    let p = this.handles.get(k);
    if (!p) {
      p = this.lookupFile(file);
      this.handles.set(k, p);
      if (this.handles.size > (this.o.maxHandles ?? 10_000)) this.handles.delete(this.handles.keys().next().value!);
      // Only an answer is remembered; a link failure is asked again next time.
      p.catch(() => this.handles.delete(k));
    }
    return p;
  }

  private async lookupFile(file: ChunkFile): Promise<Buffer | undefined> {
    const names = [file.image, ...file.path.split('/').filter((n) => n !== '')];
    // Names come from hosts: nothing that walks up or sideways.
    if (names.some((n) => n === '.' || n === '..' || n.includes('\0')) || names.length > 256) return undefined;
    if (!this.root) {
      this.root = this.o.link.mount(this.o.exportPath ?? '/', this.cred).then((m) => m.fh);
      this.root.catch(() => (this.root = undefined));
    }
    let fh = await this.root;
    try {
      for (const n of names) {
        this.stats.lookups++;
        fh = (await this.o.link.lookup(this.cred, fh, n)).fh;
      }
    } catch (e) {
      // An NFS answer (no such name, no permission, stale) is final for this file; a link failure is not.
      if (isFsError(e) && !((e as Error).cause instanceof RpcError)) return undefined;
      throw e;
    }
    return fh;
  }
}

const fileKey = (f: ChunkFile) => `${f.image}\0${f.path}`;
