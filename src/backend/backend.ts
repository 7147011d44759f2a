import type { Credentials } from '../rpc/types.js';
import type { StableHow } from '../nfs3/constants.js';
import type {
  CreateHow,
  DirEntry,
  DirEntryPlus,
  Fattr3,
  FsInfo,
  FsStat,
  MknodType,
  NewObject,
  NfsTime,
  PathConf,
  ReadResult,
  Sattr3,
  WccData,
  WriteResult,
} from '../nfs3/types.js';
import type { ReadSources } from '../util/counters.js';

/**
 * A READ's answer, with where its bytes came from when a layer knows
 * (util/counters.ts): a wrapper that answers from local data says so; a
 * wrapper that passes the call down passes this on; absent, the bytes came
 * from below every wrapper (the link).
 */
export type SourcedRead = ReadResult & {
  from?: ReadSources;
  /**
   * `data` is a view of a buffer lent by the layer that read it (a pooled
   * reply record, RemoteNfs): whoever ends up holding the result calls this
   * once nothing refers to `data` any more (the NFS front end, when the
   * reply has left). A layer that keeps `data` (a cache storing it) must
   * not pass `release` on with it; dropping it is always safe (the buffer
   * is then collected, not reused).
   */
  release?: () => void;
};

/**
 * THE backend interface: NFSv3 semantics on opaque file handles.
 *
 * Every layer of GVFS implements it — the local export, the remote NFS
 * client, the wrappers (identity map, cache, meta-data) — and the front
 * ends (NFSv3 server, FUSE) serve any implementation of it.
 *
 * Contract:
 * - Handles are opaque Buffers of at most 64 bytes, issued by the backend
 *   (`mount`, `lookup`, `create`, `readdirplus` ...). A backend must refuse a
 *   handle it did not issue with FsError BADHANDLE (malformed / forged) or
 *   STALE (was valid, object is gone).
 * - Every method settles: with the result, or with an FsError whose optional
 *   body carries the post-op attributes / wcc data that NFSv3 failure
 *   replies have room for. Anything else thrown is a bug (front ends turn it
 *   into SERVERFAULT / EIO and log it loudly).
 * - `cred` is the caller as the session sees it (after identity mapping);
 *   backends enforce permissions for it.
 * - Buffers passed in (`write` data) belong to the caller until the promise
 *   settles; Buffers returned (`read` data) belong to the caller afterwards.
 * - Attributes in results are optional where NFSv3 makes them optional; a
 *   backend returns them whenever it has them cheaply.
 */
export interface Backend {
  /** Resolve an export path (MOUNT's dirpath) to its root handle. */
  mount(path: string, cred: Credentials): Promise<{ fh: Buffer; authFlavors: number[] }>;
  /** The exports this backend offers (MOUNT EXPORT). */
  exports(): Promise<ExportInfo[]>;

  getattr(cred: Credentials, fh: Buffer): Promise<Fattr3>;
  /** `guard`: only set if the object's ctime equals it (else NOT_SYNC). */
  setattr(cred: Credentials, fh: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<WccData>;
  lookup(cred: Credentials, dir: Buffer, name: string): Promise<{ fh: Buffer; attr?: Fattr3; dirAttr?: Fattr3 }>;
  access(cred: Credentials, fh: Buffer, mask: number): Promise<{ access: number; attr?: Fattr3 }>;
  readlink(cred: Credentials, fh: Buffer): Promise<{ path: string; attr?: Fattr3 }>;
  read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead>;
  write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult>;
  create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject>;
  mkdir(cred: Credentials, dir: Buffer, name: string, attrs: Sattr3): Promise<NewObject>;
  symlink(cred: Credentials, dir: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject>;
  mknod(cred: Credentials, dir: Buffer, name: string, what: MknodType): Promise<NewObject>;
  remove(cred: Credentials, dir: Buffer, name: string): Promise<WccData>;
  rmdir(cred: Credentials, dir: Buffer, name: string): Promise<WccData>;
  rename(cred: Credentials, fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<{ fromWcc: WccData; toWcc: WccData }>;
  link(cred: Credentials, fh: Buffer, dir: Buffer, name: string): Promise<{ attr?: Fattr3; dirWcc: WccData }>;
  /** Entries after `cookie`, as many as fit in `count` bytes of a READDIR reply. */
  readdir(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, count: number): Promise<DirPage<DirEntry>>;
  /** As readdir, with attributes and handles; `dircount` bounds the names, `maxcount` the whole reply. */
  readdirplus(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>>;
  fsstat(cred: Credentials, fh: Buffer): Promise<FsStat>;
  fsinfo(cred: Credentials, fh: Buffer): Promise<FsInfo>;
  pathconf(cred: Credentials, fh: Buffer): Promise<PathConf>;
  commit(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<{ wcc: WccData; verf: Buffer }>;

  /** Release resources (open files, connections). */
  close(): Promise<void>;
}

export interface DirPage<E> {
  dirAttr?: Fattr3;
  verf: Buffer;
  entries: E[];
  eof: boolean;
}

export interface ExportInfo {
  path: string;
  groups: string[];
}
