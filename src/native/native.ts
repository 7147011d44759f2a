import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * The native system layer (native/, C, built by node-gyp from scripts/setup.sh):
 * the system calls Node lacks, each run on the addon's own worker threads
 * with the caller's fsuid, fsgid and supplementary groups, so the kernel
 * decides permissions, owners, set-ID bits, sticky directories, ACLs and
 * quotas. Why it is ours and how the identity switch works:
 * native/src/gvfs_native.h.
 *
 * Contract for every function here:
 *  - it returns a promise and never blocks the event loop;
 *  - `cred` is the caller after identity mapping and squashing; the process's
 *    own identity costs no switch. A process that is not root can act only
 *    as itself: any other `cred` rejects with EPERM (syscall "setfsuid");
 *  - failures reject with a Node-style error (`code` "EACCES", negative
 *    `errno`, `syscall`, `path` when there is one), which the callers map
 *    once (backends/local-export/errno.ts);
 *  - names are single components unless documented otherwise; descriptors
 *    returned are the caller's to close (close-on-exec).
 */
export interface NativeCreds {
  uid: number;
  gid: number;
  gids: readonly number[];
}

/** statx(2) result; times in nanoseconds since the epoch. */
export interface Statx {
  mask: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  ino: bigint;
  size: bigint;
  blocks: bigint;
  blksize: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  btimeNs: bigint;
  rdevMajor: number;
  rdevMinor: number;
  devMajor: number;
  devMinor: number;
}

export interface KernelHandle {
  type: number;
  mountId: number;
  handle: Buffer;
}

/** A directory as a one-trip job finds it: its path below the root and the handle's inode and birth time. */
export interface DirRef {
  rel: string;
  ino: bigint;
  gen: bigint;
}

/** What `inDir` does in the directory. */
export type InDirOp =
  | { op: 'create'; name: string; mode: number }
  | { op: 'mkdir'; name: string; mode: number }
  | { op: 'symlink'; name: string; target: string }
  | { op: 'mknod'; name: string; mode: number; major: number; minor: number }
  | { op: 'unlink'; name: string; flags: number };

/**
 * The result of a one-trip job: `fd` the new file's descriptor (create; else
 * 0), `obj` the new object (unlink, rename: what the name held before),
 * `dst` what rename's target name held before, `dir`/`dir2` the
 * directories afterwards. A failure rejects with an error that carries
 * `dir`/`dir2` when they could be read.
 */
export interface DirOpResult {
  fd: number;
  obj?: Statx;
  dst?: Statx;
  dir?: Statx;
  dir2?: Statx;
  /** pwriteAs with its permission check: the file before the write. */
  pre?: Statx;
}

/** A time for utimensat: explicit, the server's clock now, or left as it is. */
export type SetTime = { sec: number; nsec: number } | 'now' | 'omit';

interface Addon {
  openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number, cred: NativeCreds): Promise<number>;
  mknodat(dirfd: number, name: string, mode: number, major: number, minor: number, cred: NativeCreds): Promise<void>;
  mkdirat(dirfd: number, name: string, mode: number, cred: NativeCreds): Promise<void>;
  symlinkat(target: string, dirfd: number, name: string, cred: NativeCreds): Promise<void>;
  readlinkat(dirfd: number, name: string, cred: NativeCreds): Promise<string>;
  linkat(odir: number, oname: string, ndir: number, nname: string, flags: number, cred: NativeCreds): Promise<void>;
  unlinkat(dirfd: number, name: string, flags: number, cred: NativeCreds): Promise<void>;
  renameat2(odir: number, oname: string, ndir: number, nname: string, flags: number, cred: NativeCreds): Promise<void>;
  fchownat(dirfd: number, name: string, uid: number, gid: number, flags: number, cred: NativeCreds): Promise<void>;
  fchmodat(dirfd: number, name: string, mode: number, flags: number, cred: NativeCreds): Promise<void>;
  utimensat(dirfd: number, name: string, as: number, ans: number, ms: number, mns: number, flags: number, cred: NativeCreds): Promise<void>;
  statx(dirfd: number, name: string, flags: number, mask: number, cred: NativeCreds): Promise<Statx>;
  faccessat(dirfd: number, name: string, mode: number, flags: number, cred: NativeCreds): Promise<void>;
  accessMask(dirfd: number, name: string, flags: number, cred: NativeCreds): Promise<number>;
  nameToHandleAt(dirfd: number, name: string, flags: number, cred: NativeCreds): Promise<KernelHandle>;
  openByHandleAt(mountfd: number, type: number, handle: Buffer, flags: number, cred: NativeCreds): Promise<number>;
  fsync(fd: number, cred: NativeCreds): Promise<void>;
  fdatasync(fd: number, cred: NativeCreds): Promise<void>;
  close(fd: number, cred: NativeCreds): Promise<void>;
  inDir(
    rootfd: number,
    rel: string,
    ino: bigint,
    gen: bigint,
    kind: number,
    name: string,
    target: string,
    mode: number,
    major: number,
    minor: number,
    cred: NativeCreds,
  ): Promise<DirOpResult>;
  renameIn(
    rootfd: number,
    frel: string,
    fino: bigint,
    fgen: bigint,
    fname: string,
    trel: string,
    tino: bigint,
    tgen: bigint,
    tname: string,
    flags: number,
    cred: NativeCreds,
  ): Promise<DirOpResult>;
  syncIn(rootfd: number, rel: string, ino: bigint, gen: bigint, name: string, cred: NativeCreds): Promise<DirOpResult>;
  accessOf(rootfd: number, rel: string, ino: bigint, gen: bigint, cred: NativeCreds): Promise<DirOpResult>;
  setattrOf(
    rootfd: number,
    rel: string,
    ino: bigint,
    gen: bigint,
    what: number,
    uid: number,
    gid: number,
    mode: number,
    as: number,
    ans: number,
    ms: number,
    mns: number,
    cred: NativeCreds,
  ): Promise<DirOpResult>;
  statOf(rootfd: number, rel: string, ino: bigint, gen: bigint, check: number, cred: NativeCreds): Promise<DirOpResult>;
  lookupIn(rootfd: number, rel: string, ino: bigint, gen: bigint, name: string, cred: NativeCreds): Promise<DirOpResult>;
  readlinkOf(rootfd: number, rel: string, ino: bigint, gen: bigint, cred: NativeCreds): Promise<{ text: string; obj?: Statx }>;
  readdirOf(rootfd: number, rel: string, ino: bigint, gen: bigint, flags: number, cred: NativeCreds): Promise<{ names: string[]; inos: Buffer; dir?: Statx }>;
  statNames(rootfd: number, rel: string, ino: bigint, gen: bigint, names: string, cred: NativeCreds): Promise<{ list: Array<Statx | number>; dir?: Statx }>;
  pwriteAs(fd: number, data: Buffer, offset: number, sync: number, check: number, cred: NativeCreds): Promise<DirOpResult>;
  preadAs(fd: number, into: Buffer, offset: number, cred: NativeCreds): Promise<DirOpResult>;
  preadCached(fd: number, into: Buffer, offset: number, scratch: ArrayBuffer): number | undefined | false;
  setStatxScratch(scratch: ArrayBuffer, decode: () => Statx): void;
  ftruncateAs(fd: number, length: number, cred: NativeCreds): Promise<DirOpResult>;
  closeMany(fds: Buffer, cred: NativeCreds): Promise<number>;
  whoami(cred: NativeCreds): Promise<{ fsuid: number; fsgid: number; ngroups: number; group0: number }>;
  setWalkOnly(on: boolean): void;
  info(): { threads: number; openat2: boolean; privateUmask: boolean; jobs: number; closeJobs: number; inflight: number };
  whenIdle(): Promise<void>;
  self(): NativeCreds;
  sdNotify(socket: string, message: string): void;
  fanWatch(root: string, onBatch: (b: FanBatch) => void, maxPending: number): object;
  fanWatchStop(w: object): void;
  fanWatchPause(w: object, paused: boolean): void;
  constants: Record<string, number>;
}

const ADDON_PATH = fileURLToPath(new URL('../../../native/build/Release/gvfs_native.node', import.meta.url));

let addon: Addon | undefined;

/** One batch of the disk watcher (fanwatch.c): records of 5 (dir ino, dir birth ns, entry ino or 0, entry birth ns, flags). */
export interface FanBatch {
  ev: BigInt64Array;
  /** Each record's entry name ("" when the event named the directory itself). */
  names: string[];
  overflow: boolean;
  closed: boolean;
  own: number;
  outside: number;
}

/*
 * Where the addon writes a statx for this environment (binding.c
 * statx_to_scratch: the offsets are its), and the function it calls to turn
 * one into a Statx: an object literal made here is a fraction of the cost of
 * one made property by property through N-API.
 */
const sxScratch = new ArrayBuffer(96);
const sx32 = new Uint32Array(sxScratch, 0, 10);
const sxU64 = new BigUint64Array(sxScratch, 40, 3);
const sxI64 = new BigInt64Array(sxScratch, 64, 4);
function statxFromScratch(): Statx {
  return {
    mask: sx32[0]!,
    mode: sx32[1]!,
    nlink: sx32[2]!,
    uid: sx32[3]!,
    gid: sx32[4]!,
    ino: sxU64[0]!,
    size: sxU64[1]!,
    blocks: sxU64[2]!,
    blksize: sx32[5]!,
    atimeNs: sxI64[0]!,
    mtimeNs: sxI64[1]!,
    ctimeNs: sxI64[2]!,
    btimeNs: sxI64[3]!,
    rdevMajor: sx32[6]!,
    rdevMinor: sx32[7]!,
    devMajor: sx32[8]!,
    devMinor: sx32[9]!,
  };
}

/** The addon, loaded on first use; a missing build fails loudly with what to run. */
export function lib(): Addon {
  if (!addon) {
    let a: Addon;
    try {
      a = createRequire(import.meta.url)(ADDON_PATH) as Addon;
    } catch (e) {
      throw new Error(`gvfs native addon not loadable (${ADDON_PATH}): run scripts/setup.sh (node-gyp build in native/): ${(e as Error).message}`);
    }
    a.setStatxScratch(sxScratch, statxFromScratch);
    addon = a;
  }
  return addon;
}

/** The kernel's constants as the addon was compiled with them. */
export const K = new Proxy({} as Record<string, number>, { get: (_t, k: string) => lib().constants[k] });

/**
 * Threads in the pool; whether openat2 is in use (else the O_NOFOLLOW walk);
 * whether workers have umask 0; jobs queued since load (each is a trip to a
 * worker and back: what the local export's one-trip calls are measured by;
 * closeMany jobs, background work of no one call, are counted in closeJobs);
 * this thread's jobs not yet completed (inflight).
 */
export function info(): { threads: number; openat2: boolean; privateUmask: boolean; jobs: number; closeJobs: number; inflight: number } {
  return lib().info();
}

/**
 * Resolves once no job of this thread's is in flight (at once if none is):
 * jobs still queued open beneath the descriptors they were given, so those
 * may be closed only then.
 */
export function whenIdle(): Promise<void> {
  return lib().whenIdle();
}

/** Tests only: use the O_NOFOLLOW component walk even where openat2 exists. */
export function setWalkOnly(on: boolean): void {
  lib().setWalkOnly(on);
}

/**
 * sd_notify(3): one datagram to the AF_UNIX socket `socket` ($NOTIFY_SOCKET:
 * a path, or @name for the abstract namespace), sent from this process (so
 * a unit with NotifyAccess=main accepts it). Synchronous, non-blocking;
 * throws with the errno's code when nobody listens.
 */
export function sdNotify(socket: string, message: string): void {
  lib().sdNotify(socket, message);
}

let selfCreds: NativeCreds | undefined;

/**
 * The process's own identity exactly as the workers hold it (euid, egid,
 * getgroups() at load): calls made with it need no switch. For what the
 * server does for itself (opening beneath the root, by handle, closing).
 */
export function self(): NativeCreds {
  return (selfCreds ??= Object.freeze(lib().self()));
}

/**
 * openat2 confined to `dirfd`: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
 * always (plus `resolve`), so no path — "..", an absolute symlink, a
 * swapped-in symlink — gets out (EXDEV). Where the kernel lacks openat2 a
 * component walk that refuses every symlink (ELOOP) takes its place.
 * `path` may have several components (at most PATH_MAX bytes).
 */
export function openat2(dirfd: number, path: string, flags: number, mode: number, cred: NativeCreds, resolve = 0): Promise<number> {
  const l = lib();
  return l.openat2(dirfd, path, flags, mode, resolve | l.constants.RESOLVE_BENEATH | l.constants.RESOLVE_NO_MAGICLINKS, cred);
}

/** mknodat: `mode` carries the type (S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK); devices need CAP_MKNOD as the caller. */
export function mknodat(dirfd: number, name: string, mode: number, rdev: { major: number; minor: number }, cred: NativeCreds): Promise<void> {
  return lib().mknodat(dirfd, name, mode, rdev.major, rdev.minor, cred);
}

export function mkdirat(dirfd: number, name: string, mode: number, cred: NativeCreds): Promise<void> {
  return lib().mkdirat(dirfd, name, mode, cred);
}

export function symlinkat(target: string, dirfd: number, name: string, cred: NativeCreds): Promise<void> {
  return lib().symlinkat(target, dirfd, name, cred);
}

/** readlinkat; an empty name reads the symlink `dirfd` itself was opened on (O_PATH|O_NOFOLLOW). */
export function readlinkat(dirfd: number, name: string, cred: NativeCreds): Promise<string> {
  return lib().readlinkat(dirfd, name, cred);
}

export function linkat(odir: number, oname: string, ndir: number, nname: string, cred: NativeCreds, flags = 0): Promise<void> {
  return lib().linkat(odir, oname, ndir, nname, flags, cred);
}

/** unlinkat; `flags` AT_REMOVEDIR for a directory. */
export function unlinkat(dirfd: number, name: string, flags: number, cred: NativeCreds): Promise<void> {
  return lib().unlinkat(dirfd, name, flags, cred);
}

/** renameat2; `flags` RENAME_NOREPLACE (EEXIST instead of replacing) or RENAME_EXCHANGE. */
export function renameat2(odir: number, oname: string, ndir: number, nname: string, flags: number, cred: NativeCreds): Promise<void> {
  return lib().renameat2(odir, oname, ndir, nname, flags, cred);
}

/** fchownat; -1 leaves an id as it is. */
export function fchownat(dirfd: number, name: string, uid: number, gid: number, flags: number, cred: NativeCreds): Promise<void> {
  return lib().fchownat(dirfd, name, uid, gid, flags, cred);
}

/** fchmodat; AT_SYMLINK_NOFOLLOW or AT_EMPTY_PATH go through fchmodat2 (Linux 6.6), never /proc. */
export function fchmodat(dirfd: number, name: string, mode: number, flags: number, cred: NativeCreds): Promise<void> {
  return lib().fchmodat(dirfd, name, mode, flags, cred);
}

/** utimensat with nanoseconds; 'omit' leaves that time alone; an empty name means `dirfd` itself. */
export function utimensat(dirfd: number, name: string, atime: SetTime, mtime: SetTime, flags: number, cred: NativeCreds): Promise<void> {
  const l = lib();
  const t = (x: SetTime): [number, number] =>
    x === 'omit' ? [0, l.constants.UTIME_OMIT] : x === 'now' ? [0, l.constants.UTIME_NOW] : [x.sec, x.nsec];
  const [as, ans] = t(atime);
  const [ms, mns] = t(mtime);
  return l.utimensat(dirfd, name, as, ans, ms, mns, flags, cred);
}

/** statx; an empty name with AT_EMPTY_PATH describes `dirfd` itself. */
export function statx(dirfd: number, name: string, flags: number, cred: NativeCreds, mask?: number): Promise<Statx> {
  const l = lib();
  return l.statx(dirfd, name, flags, mask ?? l.constants.STATX_BASIC_STATS | l.constants.STATX_BTIME, cred);
}

/** faccessat2: with AT_EACCESS it checks the caller's (fs) ids, which is what the server wants. */
export function faccessat(dirfd: number, name: string, mode: number, flags: number, cred: NativeCreds): Promise<void> {
  return lib().faccessat(dirfd, name, mode, flags, cred);
}

/** R (4), W (2), X (1) as the caller has them (AT_EACCESS is the caller's to pass), in one trip to a worker. */
export function accessMask(dirfd: number, name: string, flags: number, cred: NativeCreds): Promise<number> {
  return lib().accessMask(dirfd, name, flags, cred);
}

/** name_to_handle_at: the kernel's persistent handle for an object (where the file system has one). */
export function nameToHandleAt(dirfd: number, name: string, flags: number, cred: NativeCreds): Promise<KernelHandle> {
  return lib().nameToHandleAt(dirfd, name, flags, cred);
}

/** open_by_handle_at: needs CAP_DAC_READ_SEARCH, so only the root server may (as itself); others get EPERM. */
export function openByHandleAt(mountfd: number, h: { type: number; handle: Buffer }, flags: number, cred: NativeCreds): Promise<number> {
  return lib().openByHandleAt(mountfd, h.type, h.handle, flags, cred);
}

export function fsync(fd: number, cred: NativeCreds = self()): Promise<void> {
  return lib().fsync(fd, cred);
}

export function fdatasync(fd: number, cred: NativeCreds = self()): Promise<void> {
  return lib().fdatasync(fd, cred);
}

export function close(fd: number, cred: NativeCreds = self()): Promise<void> {
  return lib().close(fd, cred);
}

/**
 * Close many descriptors in ONE job (the pool's trip, not one per
 * descriptor): each is closed whatever happens to the others; resolves to
 * how many close(2) calls failed.
 */
export function closeMany(fds: readonly number[]): Promise<number> {
  return lib().closeMany(Buffer.from(Int32Array.from(fds).buffer), self());
}

/** Tests: the fsuid, fsgid and groups a worker has while it runs a job for `cred`. */
export function whoami(cred: NativeCreds): Promise<{ fsuid: number; fsgid: number; ngroups: number; group0: number }> {
  return lib().whoami(cred);
}

/** gn_in_kind in native/src/gvfs_native.h. */
const IN_KIND = { create: 0, mkdir: 1, symlink: 2, mknod: 3, unlink: 4 } as const;

/**
 * One change in directory `d`, in ONE trip to a worker (native/src/dirops.c):
 * as the server, open `d.rel` beneath `rootfd` (RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS, O_PATH|O_DIRECTORY|O_NOFOLLOW) and check it is
 * (`d.ino`, `d.gen`) — else ESTALE; as `cred`, make or remove the name
 * (create: O_RDWR|O_CREAT|O_EXCL|O_NOFOLLOW, the descriptor is the caller's
 * to close); as the server again, make the change durable (the new object,
 * then the directory, fsync'd: RFC 1813 §1.6), statx the object and the
 * directory; close. A change made but not synced rejects with EIO
 * (syscall 'fsync').
 */
export function inDir(rootfd: number, d: DirRef, what: InDirOp, cred: NativeCreds): Promise<DirOpResult> {
  const w = what as Partial<{ target: string; mode: number; major: number; minor: number; flags: number }>;
  const mode = what.op === 'unlink' ? what.flags : (w.mode ?? 0);
  return lib().inDir(rootfd, d.rel, d.ino, d.gen, IN_KIND[what.op], what.name, w.target ?? '', mode, w.major ?? 0, w.minor ?? 0, cred);
}

/**
 * renameat2 from `fname` in `f` to `tname` in `t` in ONE trip: both
 * directories opened beneath `rootfd` and checked as in `inDir`, the two
 * names statted before (`obj`, `dst`), the rename as `cred`, both
 * directories statted after (`dir`, `dir2`; `dir2` only when `t` is another
 * directory than `f`). Both directories are fsync'd before it settles.
 */
export function renameIn(rootfd: number, f: DirRef, fname: string, t: DirRef, tname: string, flags: number, cred: NativeCreds): Promise<DirOpResult> {
  return lib().renameIn(rootfd, f.rel, f.ino, f.gen, fname, t.rel, t.ino, t.gen, tname, flags, cred);
}

/**
 * Make a change made in several trips durable, in one more, as the server:
 * `d` opened beneath `rootfd` and checked as in `inDir`, then `name` in it
 * (when given; a regular file or directory fsync'd, anything else, or what
 * the server may not open, by a syncfs) and `d` itself fsync'd. `dir`: `d`
 * afterwards.
 */
export function syncIn(rootfd: number, d: DirRef, name = ''): Promise<DirOpResult> {
  return lib().syncIn(rootfd, d.rel, d.ino, d.gen, name, self());
}

/**
 * ACCESS in ONE trip: object `o` (path below `rootfd`, inode, birth time)
 * opened beneath the root as the server (O_PATH|O_NOFOLLOW) and checked
 * (ESTALE), then R (4), W (2), X (1) asked of the kernel as `cred`
 * (faccessat2 AT_EACCESS: POSIX ACLs count). `mask` and the object's statx.
 */
export async function accessOf(rootfd: number, o: DirRef, cred: NativeCreds): Promise<{ mask: number; obj?: Statx }> {
  const r = await lib().accessOf(rootfd, o.rel, o.ino, o.gen, cred);
  return { mask: r.fd, obj: r.obj };
}

/** What setattrOf changes; `timesAsServer`: see there. */
export interface SetattrOf {
  chown?: { uid: number; gid: number };
  mode?: number;
  times?: { atime: SetTime; mtime: SetTime; asServer: boolean };
}

/**
 * SETATTR's owner, mode and times in ONE trip: object `o` opened beneath
 * `rootfd` as the server (O_PATH|O_NOFOLLOW) and checked (ESTALE), then as
 * `cred` fchownat, fchmodat2, utimensat on it (AT_EMPTY_PATH), in that
 * order. `times.asServer`: one time "now" set for a caller who is not the
 * owner: the kernel checks write permission as `cred`, the server sets it.
 * The object's statx afterwards (`obj`; on failure on the error, too).
 */
export function setattrOf(rootfd: number, o: DirRef, what: SetattrOf, cred: NativeCreds): Promise<DirOpResult> {
  const l = lib();
  const t = (x: SetTime): [number, number] =>
    x === 'omit' ? [0, l.constants.UTIME_OMIT] : x === 'now' ? [0, l.constants.UTIME_NOW] : [x.sec, x.nsec];
  const [as, ans] = what.times ? t(what.times.atime) : [0, 0];
  const [ms, mns] = what.times ? t(what.times.mtime) : [0, 0];
  // SA_CHOWN 1, SA_MODE 2, SA_TIMES 4, SA_TIMES_AS_SERVER 8 (native/src/gvfs_native.h).
  const bits = (what.chown ? 1 : 0) | (what.mode !== undefined ? 2 : 0) | (what.times ? 4 : 0) | (what.times?.asServer ? 8 : 0);
  return l.setattrOf(rootfd, o.rel, o.ino, o.gen, bits, what.chown?.uid ?? -1, what.chown?.gid ?? -1, what.mode ?? 0, as, ans, ms, mns, cred);
}

// ---------- reads by descriptor and name (native/src/lookups.c) ----------
//
// Each is ONE job that opens its object beneath `rootfd` as the server
// (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS; a path longer than PATH_MAX in
// pieces, each beneath the last), checks it against the handle's inode and
// birth time (ESTALE) where it says so, and reads through that descriptor
// or one name relative to it, never following a symlink.

/** GETATTR: the object at `o.rel` (a symlink itself), checked to be (`o.ino`, `o.gen`) unless `check` is false. */
export async function statOf(rootfd: number, o: DirRef, check = true): Promise<Statx> {
  const r = await lib().statOf(rootfd, o.rel, o.ino, o.gen, check ? 1 : 0, self());
  return r.obj!;
}

/**
 * LOOKUP of `name` (one component, not "." or "..") in directory `d`: the
 * directory opened and checked as the server, the name statted through it
 * (AT_SYMLINK_NOFOLLOW) as `cred`, so the kernel checks search permission.
 * `dir` and `obj`; a failure carries `dir` when the directory was read.
 */
export async function lookupIn(rootfd: number, d: DirRef, name: string, cred: NativeCreds): Promise<{ dir: Statx; obj: Statx }> {
  const r = await lib().lookupIn(rootfd, d.rel, d.ino, d.gen, name, cred);
  return { dir: r.dir!, obj: r.obj! };
}

/** READLINK: the symlink `o` (checked) read through its O_PATH descriptor; its statx. */
export async function readlinkOf(rootfd: number, o: DirRef): Promise<{ target: string; obj: Statx }> {
  const r = await lib().readlinkOf(rootfd, o.rel, o.ino, o.gen, self());
  return { target: r.text, obj: r.obj! };
}

/**
 * READDIR: the names in directory `d` (checked) by getdents64 on its
 * descriptor ("." and ".." left out) with their inode numbers, and the
 * directory's statx. `cred`: ask the kernel, as that caller, for read
 * permission on the directory first (EACCES); omitted: no check.
 */
export async function readdirOf(rootfd: number, d: DirRef, cred?: NativeCreds): Promise<{ names: string[]; inos: bigint[]; dir: Statx }> {
  const r = await lib().readdirOf(rootfd, d.rel, d.ino, d.gen, cred ? 1 : 0, cred ?? self());
  const inos = new Array<bigint>(r.names.length);
  for (let i = 0; i < inos.length; i++) inos[i] = r.inos.readBigUInt64LE(i * 8);
  return { names: r.names, inos, dir: r.dir! };
}

/**
 * READDIRPLUS's attributes: each of `names` (single components) in
 * directory `d` (checked), statted through its descriptor
 * (AT_SYMLINK_NOFOLLOW), in one job: a Statx, or the negative errno of that
 * name (a name removed since it was listed: -ENOENT).
 */
export async function statNames(rootfd: number, d: DirRef, names: readonly string[]): Promise<{ list: Array<Statx | number>; dir: Statx }> {
  if (names.some((n) => n.includes('/') || n.length === 0)) throw Object.assign(new Error('EINVAL: a name is one component'), { code: 'EINVAL' });
  const r = await lib().statNames(rootfd, d.rel, d.ino, d.gen, names.join('/'), self());
  return { list: r.list, dir: r.dir! };
}

/**
 * WRITE as `cred`: all of `data` at `offset` through the open descriptor
 * `fd`, then fdatasync ('data') or fsync ('file'), and the file's statx, in
 * one job. As the caller, so the kernel clears the set-ID bits a write by
 * someone without CAP_FSETID clears (the server, root, would keep them).
 * `data` is not copied: it must not change until the promise settles.
 * With `check`, the same job first statxes the file (`pre`, the WRITE's
 * pre-op attributes) and applies NFS's WRITE permission rule to it as
 * `cred` (the owner and root may, anybody else as the kernel says when
 * asked as `cred`, so POSIX ACLs count): refused with EACCES (and `pre` on
 * the error) before any byte is written. Fresh at every call, so a chmod or chown on the server's disk
 * is seen by the very next WRITE.
 */
export async function pwriteAs(
  fd: number,
  data: Buffer,
  offset: number,
  sync: 'none' | 'data' | 'file',
  cred: NativeCreds,
  check = false,
): Promise<{ written: number; obj?: Statx; pre?: Statx }> {
  const r = await lib().pwriteAs(fd, data, offset, sync === 'data' ? 1 : sync === 'file' ? 2 : 0, check ? 1 : 0, cred);
  return { written: r.fd, obj: r.obj, pre: r.pre };
}

/**
 * Fill `into` from `offset` (short only at the end of the file) and statx
 * the descriptor, in one job: READ's data and its reply attributes.
 */
export async function preadAs(fd: number, into: Buffer, offset: number, cred: NativeCreds): Promise<{ bytesRead: number; obj: Statx }> {
  const r = await lib().preadAs(fd, into, offset, cred);
  if (!r.obj) throw Object.assign(new Error('preadAs: no statx'), { code: 'EIO' });
  return { bytesRead: r.fd, obj: r.obj };
}

/**
 * `preadAs` without a pool job, on this thread, when it cannot wait: the
 * whole range (to the end of the file) is in the page cache. undefined when
 * it is not (use preadAs), false when the descriptor's file system cannot
 * say (RWF_NOWAIT unsupported: use preadAs from now on). See binding.c.
 */
export function preadCached(fd: number, into: Buffer, offset: number): { bytesRead: number; obj: Statx } | undefined | false {
  const r = lib().preadCached(fd, into, offset, sxScratch);
  // The statx is in the scratch until the addon's next result: read it now.
  return typeof r === 'number' ? { bytesRead: r, obj: statxFromScratch() } : r;
}

/** Truncate as `cred` (the kernel clears set-ID bits as for a write) and the file's statx. */
export async function ftruncateAs(fd: number, length: number, cred: NativeCreds): Promise<Statx | undefined> {
  return (await lib().ftruncateAs(fd, length, cred)).obj;
}
