import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * The FUSE binding (@cocalc/fuse-native, libfuse 2 high-level API) as this
 * front end uses it, with its quirks handled in one place:
 *
 * - Every callback's first argument is the result: 0 / a count, or -errno.
 * - Times cross as milliseconds; st_ino, st_dev, st_rdev and statvfs counts
 *   as 32 bits; sizes, offsets and st_blocks as doubles (exact below 2^53).
 * - utimens: the native side passes the access time twice (the mtime never
 *   reaches JS). The mtime is read from the per-thread native record the
 *   handler receives (`fuse_thread_locals_t.mtime`), after checking that the
 *   atime beside it matches what was passed; see `patchUtimens`.
 * - fgetattr: the JS side calls `getattr(path)` and drops the file handle;
 *   `patchFgetattr` routes it to our fgetattr with the handle.
 * - create does not pass the open flags, and nothing passes the caller's
 *   uid/gid/pid (fuse_get_context is not exposed).
 * - There is no mount option for big_writes / max_write; libfuse splits
 *   options out of the fsname string, so they travel there (`fuseOptions`).
 * - Each operation has a JS-side deadline (`timeout`), after which the
 *   kernel gets ETIMEDOUT even if the handler is still running.
 */
export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  dev: number;
  nlink: number;
  ino: number;
  rdev: number;
  blksize: number;
  blocks: number;
  atime: number;
  mtime: number;
  ctime: number;
}

export interface FuseStatfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid: number;
  flag: number;
  namemax: number;
}

type Cb = (res: number) => void;

/** The operations table the binding calls (only what this front end implements). */
export interface FuseOps {
  init(cb: Cb): void;
  getattr(path: string, cb: (res: number, st?: FuseStat) => void): void;
  fgetattr(path: string, fd: number, cb: (res: number, st?: FuseStat) => void): void;
  readdir(path: string, cb: (res: number, names?: string[], stats?: FuseStat[]) => void): void;
  open(path: string, flags: number, cb: (res: number, fd?: number) => void): void;
  create(path: string, mode: number, cb: (res: number, fd?: number) => void): void;
  read(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb): void;
  write(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb): void;
  flush(path: string, fd: number, cb: Cb): void;
  fsync(path: string, datasync: number, fd: number, cb: Cb): void;
  release(path: string, fd: number, cb: Cb): void;
  truncate(path: string, size: number, cb: Cb): void;
  ftruncate(path: string, fd: number, size: number, cb: Cb): void;
  unlink(path: string, cb: Cb): void;
  rename(src: string, dest: string, cb: Cb): void;
  link(src: string, dest: string, cb: Cb): void;
  symlink(target: string, path: string, cb: Cb): void;
  readlink(path: string, cb: (res: number, target?: string) => void): void;
  mkdir(path: string, mode: number, cb: Cb): void;
  mknod(path: string, mode: number, dev: number, cb: Cb): void;
  rmdir(path: string, cb: Cb): void;
  chmod(path: string, mode: number, cb: Cb): void;
  chown(path: string, uid: number, gid: number, cb: Cb): void;
  /** atime and mtime in ms since the epoch (the mtime recovered by patchUtimens). */
  utimens(path: string, atime: number, mtime: number, cb: Cb): void;
  statfs(path: string, cb: (res: number, st?: FuseStatfs) => void): void;
}

export interface FuseBindingOptions {
  fsname: string;
  subtype?: string;
  allowOther?: boolean;
  defaultPermissions?: boolean;
  maxRead?: number;
  debug?: boolean;
  /** ms; false: no JS-side deadline. */
  timeout: number | false;
}

/** What we use of the binding's Fuse instance, internals included. */
export interface FuseInstance {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  _handlers: Array<((native: Buffer, op: number, ...args: unknown[]) => unknown) | undefined>;
  _op_fgetattr: (signal: (res: number, ...rest: unknown[]) => void, path: string, fd: number) => void;
  _op_utimens: (signal: (res: number) => void, path: string, aLow: number, aHigh: number, mLow: number, mHigh: number) => void;
  ops: FuseOps;
  mnt: string;
  _thread: Buffer | null;
}

interface FuseClass {
  new (mnt: string, ops: FuseOps, opts: Record<string, unknown>): FuseInstance;
  unmount(mnt: string, cb: (err: Error | null) => void): void;
}

const require = createRequire(import.meta.url);
let FuseCtor: FuseClass | undefined;
let bindingExports: Record<string, unknown> | undefined;

/** Load the native binding (lazily: importing this module does not need libfuse). */
export function loadBinding(): FuseClass {
  if (!FuseCtor) {
    const main = require.resolve('@cocalc/fuse-native');
    FuseCtor = require(main) as FuseClass;
    // The raw N-API exports (op codes), loaded the way the binding's index.js loads them.
    const pkgRequire = createRequire(main);
    const gyp = pkgRequire('node-gyp-build') as (dir: string) => Record<string, unknown>;
    bindingExports = gyp(path.dirname(main));
  }
  return FuseCtor;
}

function opCode(name: string): number {
  const v = bindingExports?.[`op_${name}`];
  if (typeof v !== 'number') throw new Error(`FUSE binding has no op_${name}`);
  return v;
}

/** x86-64 offsets in the binding's fuse_thread_locals_t (checked at run time against the atime passed). */
const LOCALS_ATIME = 104;
const LOCALS_MTIME = 112;

/**
 * Make `utimens` receive the real mtime: wrap the native dispatcher so that it
 * reads fuse_thread_locals_t.mtime from the native record. If the record does
 * not look as expected (another binding version or ABI), the mtime falls back
 * to the binding's value (= atime) and `onMismatch` is told once.
 */
export function patchUtimens(f: FuseInstance, onMismatch: () => void): void {
  const op = opCode('utimens');
  const orig = f._handlers[op];
  if (!orig) return;
  let recovered: number | undefined;
  f._handlers[op] = function (this: unknown, native: Buffer, code: number, ...args: unknown[]) {
    recovered = undefined;
    const [, aLow, aHigh] = args as [string, number, number];
    if (Buffer.isBuffer(native) && native.length >= LOCALS_MTIME + 8) {
      const a = Number(native.readBigUInt64LE(LOCALS_ATIME));
      if (a === aLow + aHigh * 4294967296) recovered = Number(native.readBigUInt64LE(LOCALS_MTIME));
      else onMismatch();
    }
    return orig.call(this, native, code, ...args);
  };
  f._op_utimens = function (signal, path, aLow, aHigh, mLow, mHigh) {
    const atime = aLow + aHigh * 4294967296;
    const mtime = recovered ?? mLow + mHigh * 4294967296;
    recovered = undefined;
    f.ops.utimens(path, atime, mtime, (res) => signal(res));
  };
}

/**
 * Release the binding's hold on the event loop after the mount went away
 * without `unmount()` (unmounted from outside): what unmount() does after
 * running fusermount.
 */
export function releaseLoop(f: FuseInstance): void {
  const fn = bindingExports?.fuse_native_unmount as ((mnt: string, thread: Buffer) => void) | undefined;
  if (fn && f._thread) fn(f.mnt, f._thread);
}

/** Route fgetattr to ops.fgetattr with the file handle (the binding calls getattr(path)). */
export function patchFgetattr(f: FuseInstance): void {
  f._op_fgetattr = function (signal, p, fd) {
    f.ops.fgetattr(p, fd, (res, st) => (res < 0 || !st ? signal(res) : signal(0, statArray(st))));
  };
}

/** The binding's native stat layout (what its index.js getStatArray builds). */
function statArray(st: FuseStat): Uint32Array {
  const a = new Uint32Array(18);
  const dbl = (i: number, n: number) => {
    a[i] = n % 4294967296;
    a[i + 1] = Math.floor(n / 4294967296);
  };
  a[0] = st.mode;
  a[1] = st.uid;
  a[2] = st.gid;
  dbl(3, st.size);
  a[5] = st.dev;
  a[6] = st.nlink || 1;
  a[7] = st.ino;
  a[8] = st.rdev;
  a[9] = st.blksize;
  dbl(10, st.blocks);
  dbl(12, st.atime);
  dbl(14, st.mtime);
  dbl(16, st.ctime);
  return a;
}

/**
 * The libfuse options beyond the binding's own: appended to fsname, which
 * libfuse splits at commas. Values are checked so that nothing else can ride
 * along.
 */
export function fuseOptions(extra: Record<string, string | number | true>): string {
  return Object.entries(extra)
    .map(([k, v]) => {
      if (!/^[a-z_]+$/.test(k)) throw new Error(`bad FUSE option name ${k}`);
      if (v === true) return k;
      const s = String(v);
      if (!/^[A-Za-z0-9._:@/+-]+$/.test(s)) throw new Error(`bad FUSE option value ${k}=${s}`);
      return `${k}=${s}`;
    })
    .join(',');
}

export function createFuse(mnt: string, ops: FuseOps, o: FuseBindingOptions): FuseInstance {
  const Fuse = loadBinding();
  return new Fuse(mnt, ops, {
    fsname: o.fsname,
    subtype: o.subtype,
    allowOther: o.allowOther,
    defaultPermissions: o.defaultPermissions,
    maxRead: o.maxRead,
    debug: o.debug,
    timeout: o.timeout,
  });
}
