import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * libfuse 3's low-level API as the native addon exposes it (native/src/fuse_ll.c;
 * why it is ours is said there). One request at a time reaches `handler` on
 * the JS thread; it is answered later, exactly once, by one of the reply
 * functions with its `req`. Node ids and file handles are ours (small
 * integers); offsets and sizes beyond 2^53 are refused (EFBIG) in C.
 */

/** What stat(2) shows; times in nanoseconds since the epoch. */
export interface LlAttr {
  ino: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blocks: number;
  blksize: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** A name → node answer; timeouts in seconds (0: ask again each time). */
export interface LlEntry {
  nodeid: number;
  attr?: LlAttr;
  attrTimeout: number;
  entryTimeout: number;
}

export interface LlOpen {
  fh: number;
  keepCache?: boolean;
  directIo?: boolean;
  /** No FLUSH at this open's close (FOPEN_NOFLUSH): nothing written through it can fail there. */
  noFlush?: boolean;
  /**
   * Pass the open through to this backing file (backingOpen): the kernel
   * reads and maps it itself, no READ comes here; with `directIo` too, reads
   * and writes still come here and only mmap goes to the file. keepCache is
   * then meaningless (the page cache is the backing file's).
   */
  backingId?: number;
}

export interface LlDirEntry extends Partial<LlEntry> {
  name: string;
  /** The cookie of the entry after this one. */
  off: number;
  /** Plain readdir: st_ino and the type bits. */
  ino?: bigint;
  mode?: number;
}

export interface LlStatfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

export type LlOpName =
  | 'lookup' | 'forget' | 'getattr' | 'setattr' | 'readlink' | 'mknod' | 'mkdir' | 'unlink' | 'rmdir' | 'symlink'
  | 'rename' | 'link' | 'open' | 'read' | 'write' | 'flush' | 'release' | 'fsync' | 'opendir' | 'readdir'
  | 'releasedir' | 'fsyncdir' | 'statfs' | 'access' | 'create' | 'fallocate' | 'readdirplus' | 'exited';

/** One request as the handler receives it (fields by op; see fuse_ll.c call_js). */
export interface LlRequest {
  op: LlOpName;
  /** Absent for forget and exited (nothing to answer). */
  req?: bigint;
  uid: number;
  gid: number;
  pid: number;
  umask: number;
  ino: number;
  fh?: number;
  flags?: number;
  name?: string;
  name2?: string;
  target?: string;
  ino2?: number;
  renameFlags?: number;
  nlookup?: number;
  mode?: number;
  rdev?: number;
  off?: number;
  size?: number;
  data?: Buffer;
  datasync?: number;
  toSet?: number;
  uid2?: number;
  gid2?: number;
  atimeNs?: bigint;
  mtimeNs?: bigint;
}

export type LlSession = { readonly __session: unique symbol };

interface FuseAddon {
  /** `passthrough`: ask the kernel for FUSE passthrough in INIT (see passthrough()). */
  mount(mountpoint: string, options: string, maxWrite: number, maxRead: number, maxReadahead: number, handler: (r: LlRequest) => void, debug: boolean, passthrough?: boolean): LlSession;
  /** Whether the kernel agreed to passthrough (Linux 6.9+ built with it; false until INIT was answered, or if not asked). */
  passthrough(s: LlSession): boolean;
  /**
   * Register open file `fd` as a backing file: its id (> 0) for replyOpen,
   * or -errno (-EPERM without CAP_SYS_ADMIN or without passthrough). The
   * kernel holds its own reference; keep the id registered until every open
   * answered with it has been released (the kernel looks the id up only
   * once the opener runs again, after the answer was written; and all opens
   * of one inode in passthrough must share one backing).
   */
  backingOpen(s: LlSession, fd: number): number;
  /** Unregister a backing id: 0 or -errno. */
  backingClose(s: LlSession, id: number): number;
  unmount(s: LlSession): Promise<number>;
  destroy(s: LlSession): void;
  /**
   * The kernel's cached attributes of `ino` are stale (never its pages: see
   * native/src/fuse_ll.c). Its next use fetches them, and if size or mtime
   * differ, the kernel drops its pages itself. 0 or -errno (-ENOENT: not cached).
   */
  invalInode(s: LlSession, ino: number): Promise<number>;
  replyErr(req: bigint, errno: number): number;
  replyEntry(req: bigint, e: LlEntry): number;
  replyCreate(req: bigint, e: LlEntry, o: LlOpen): number;
  replyAttr(req: bigint, a: LlAttr, timeout: number): number;
  replyOpen(req: bigint, o: LlOpen): number;
  replyBuf(req: bigint, b: Buffer | undefined): number;
  /**
   * A READ's answer from local files, never through JS memory (spliced on a
   * thread of the mount's, see fuse_ll.c): 0 answered; -errno the answer
   * could not be written (the request is gone all the same); errno > 0 a
   * file could not be read, nothing was sent and `req` still needs an
   * answer. The descriptors must stay open until the promise settles.
   */
  replyFds(req: bigint, extents: Array<{ fd: number; pos: number; len: number }>): Promise<number>;
  replyWrite(req: bigint, n: number): number;
  replyReadlink(req: bigint, target: string): number;
  replyStatfs(req: bigint, s: LlStatfs): number;
  replyDir(req: bigint, size: number, plus: boolean, entries: LlDirEntry[]): number;
  FUSE_SET_ATTR_MODE: number;
  FUSE_SET_ATTR_UID: number;
  FUSE_SET_ATTR_GID: number;
  FUSE_SET_ATTR_SIZE: number;
  FUSE_SET_ATTR_ATIME: number;
  FUSE_SET_ATTR_MTIME: number;
  FUSE_SET_ATTR_ATIME_NOW: number;
  FUSE_SET_ATTR_MTIME_NOW: number;
  FUSE_SET_ATTR_CTIME: number;
}

const ADDON_PATH = fileURLToPath(new URL('../../../native/build/Release/gvfs_native.node', import.meta.url));
let fuse: FuseAddon | undefined;

/** The binding, loaded on first use; an addon built without it fails loudly with what to run. */
export function fuseLl(): FuseAddon {
  if (!fuse) {
    let m: { fuse?: FuseAddon };
    try {
      m = createRequire(import.meta.url)(ADDON_PATH) as { fuse?: FuseAddon };
    } catch (e) {
      throw new Error(`gvfs native addon not loadable (${ADDON_PATH}): run scripts/setup.sh: ${(e as Error).message}`);
    }
    if (!m.fuse) throw new Error('the native addon was built without the libfuse 3 binding: run scripts/build-native.sh (needs libfuse3-dev)');
    fuse = m.fuse;
  }
  return fuse;
}
