import { randomBytes, createHash } from 'node:crypto';
import fs, { constants as C } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Backend, DirPage, ExportInfo } from '../../backend/backend.js';
import { FsError } from '../../backend/errors.js';
import {
  FSF3_CANSETTIME,
  FSF3_HOMOGENEOUS,
  FSF3_LINK,
  FSF3_SYMLINK,
  FType,
  StableHow,
} from '../../nfs3/constants.js';
import { readdirEntrySize, readdirplusEntrySize } from '../../nfs3/codec.js';
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
} from '../../nfs3/types.js';
import { AuthFlavor, type Credentials } from '../../rpc/types.js';
import { logger } from '../../util/log.js';
import { StatxStats, toFattr, toWccAttr, type LocalStat } from './attrs.js';
import { errnoError, toFsError } from './errno.js';
import { AttrCache } from './attr-cache.js';
import { FdCache, type LastStat } from './fd-cache.js';
import * as fsx from './fsx.js';
import { HANDLE_LEN, HandleCodec, type HandleId } from './handles.js';
import { NameTable } from './name-table.js';
import { newObject, planSetattr, requireHardlinkSource, squash } from './ownership.js';
import { accessFromBits, accessMask, permBits, R, require, requireData, requireSticky, W, X } from './permissions.js';
import { defaultStateDir, loadSecret } from '../../util/state.js';
import type { DiskChange } from '../../native/fan-watch.js';
import * as N from '../../native/native.js';

const log = logger('local-export');

/** How long close() waits for calls and native jobs in flight before it gives up closing (see close). */
const CLOSE_WAIT_MS = 10_000;

/** LocalExport's calls, counted while they run (close waits for them). */
const CALLS = ['mount', 'exports', 'getattr', 'setattr', 'lookup', 'access', 'readlink', 'read', 'readInto', 'write', 'create', 'mkdir', 'symlink', 'mknod', 'remove', 'rmdir', 'rename', 'link', 'readdir', 'readdirplus', 'fsstat', 'fsinfo', 'pathconf', 'commit'] as const;

/** Whether `p` settled before `deadline` (performance.now() ms). */
async function within(p: Promise<unknown>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, deadline - performance.now()))))]);
  } finally {
    clearTimeout(timer);
  }
}

/** A native job's error from the sync after its change (dirops.c): the change was made, only its durability failed. */
const syncFailed = (e: unknown): boolean => (e as NodeJS.ErrnoException)?.syscall === 'fsync';
const { fstat, fsync, open } = fsx;
const K = N.K;

export interface LocalExportOptions {
  /** Directory to export. */
  root: string;
  /** Path clients mount (MOUNT dirpath), default "/". */
  name?: string;
  /** Where the handle secret and name journal live (default: outside the export, see state.ts). */
  stateDir?: string;
  readOnly?: boolean;
  /** Map root (or everybody) to the anonymous account. */
  squash?: 'none' | 'root' | 'all';
  anonUid?: number;
  anonGid?: number;
  /** RPC auth flavors MOUNT advertises for this export. */
  authFlavors?: number[];
  /** Open descriptors kept across calls. */
  maxOpenFiles?: number;
  /** How long a stat result is reused (ms); changes by other local programs show after this. 0 disables. */
  attrCacheMs?: number;
}

/** Largest READ/WRITE this backend serves (FSINFO rtmax/wtmax). */
export const LOCAL_MAX_IO = 1 << 20;
const NAME_MAX = 255;
const COOKIE_DOT = 1n;
const COOKIE_DOTDOT = 2n;
const MAX_LOCATE_SCAN = 200_000;
/** Default lifetime of cached attributes (ms). */
export const DEFAULT_ATTR_CACHE_MS = 1000;

interface Resolved {
  id: HandleId;
  /** Its path below the export root ('.' for the root): opened beneath the root's descriptor, never as an absolute path. */
  rel: string;
  st: LocalStat;
  attr: Fattr3;
}

interface Listing {
  key: string;
  entries: Array<{ cookie: bigint; name: string; ino: bigint }>;
}

/**
 * A directory on local disk served through the backend interface.
 *
 * Handles are HMAC-authenticated (inode, generation) pairs (handles.ts); the
 * name table turns them back into paths, and every resolution is checked
 * against the handle's inode and generation, so a handle can only ever reach
 * the object it was issued for, inside the export. Symlinks are never
 * followed: every path operation uses lstat/O_NOFOLLOW semantics and names
 * are single components.
 *
 * Objects are created, linked, renamed and removed through the native layer
 * (src/native): in a directory descriptor opened beneath the export root
 * with openat2(RESOLVE_BENEATH) and checked to be the handle's directory,
 * by a worker thread that has the caller's fsuid, fsgid and groups for that
 * one system call. So the kernel decides permissions, sticky directories,
 * owners, groups and set-ID bits of new objects (and POSIX ACLs and quotas),
 * and a local user who swaps a directory for a symlink cannot make us touch
 * anything outside the export. CREATE, MKDIR, SYMLINK, MKNOD, REMOVE,
 * RMDIR, RENAME, ACCESS and SETATTR (owner, mode, times) make ONE trip to a
 * worker each (native/src/dirops.c: open, check, change as the caller,
 * statx, close in one job); the statx results feed the attribute cache and
 * the reply's wcc data. READ and WRITE on an open descriptor are one job
 * too (WRITE: statx, the permission check as the caller, pwrite, statx).
 * Descriptors the cache retires are closed in batches (fd-cache.ts), and
 * the name journal is written once per group of changes (name-table.ts).
 * A server that is not root cannot act as others: it
 * then creates as itself and the TypeScript rules (permissions.ts,
 * ownership.ts) decide, as before.
 */
export class LocalExport implements Backend {
  readonly root: string;
  readonly name: string;
  private readonly codec: HandleCodec;
  private readonly table: NameTable;
  private readonly fds: FdCache;
  private readonly ac: AttrCache;
  /** Optional capability (backend/capabilities.ts LendsWriteArgs): write() keeps neither its handle nor its data. */
  readonly writeKeepsNoArgs = true as const;
  /** READs try the page cache on the JS thread first (readFd) until the export's file system says it cannot. */
  private nowaitReads = true;
  private readonly verifier = randomBytes(8);
  private readonly listings = new Map<bigint, Listing>();
  private readonly locating = new Map<bigint, Promise<string | undefined>>();
  private rootId!: HandleId;
  /** The export root, opened once: every directory descriptor is opened beneath it. */
  private rootFd = -1;
  private readonly fsid: bigint;
  private readonly serverIsRoot = process.getuid?.() === 0;
  /** The process umask (read without the deprecated no-argument call). */
  private readonly umask = (() => {
    const u = process.umask(0o022);
    process.umask(u);
    return u;
  })();

  private constructor(
    private readonly opts: LocalExportOptions,
    root: string,
    secret: Buffer,
    stateDir: string,
  ) {
    this.root = root;
    this.name = opts.name ?? '/';
    this.codec = new HandleCodec(secret);
    this.table = new NameTable(path.join(stateDir, 'names.journal'));
    this.fds = new FdCache(opts.maxOpenFiles ?? 256);
    this.ac = new AttrCache(opts.attrCacheMs ?? DEFAULT_ATTR_CACHE_MS);
    this.fsid = createHash('sha256').update(secret).update('fsid').digest().readBigUInt64BE(0) >> 1n;
    // Every call is counted while it runs (close() waits for them): a call of several steps submits each
    // step's native job only when the one before has completed, so the jobs in flight at one moment do
    // not say whether more will come.
    const self = this as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    for (const m of CALLS) {
      const f = self[m].bind(this);
      self[m] = (...a) => this.counted(f(...a));
    }
  }

  /** Calls in flight (CALLS), and what close() waits on when they end. */
  private calls = 0;
  private callsDone?: () => void;

  private counted<T>(p: Promise<T>): Promise<T> {
    this.calls++;
    // Counted down beside the caller's own continuation, not in front of it (no .finally on the hot path).
    const done = () => {
      if (--this.calls === 0) this.callsDone?.();
    };
    p.then(done, done);
    return p;
  }

  static async open(opts: LocalExportOptions): Promise<LocalExport> {
    const root = await fsp.realpath(opts.root);
    const st = await fsp.stat(root, { bigint: true });
    if (!st.isDirectory()) throw new Error(`${opts.root}: not a directory`);
    const stateDir = opts.stateDir ?? defaultStateDir('exports', root);
    if (path.relative(root, stateDir) === '' || !path.relative(root, stateDir).startsWith('..')) {
      const rel = path.relative(root, path.resolve(stateDir));
      if (!rel.startsWith('..') && !path.isAbsolute(rel)) throw new Error(`state directory ${stateDir} must not be inside the export ${root}`);
    }
    const secret = await loadSecret(stateDir);
    const e = new LocalExport(opts, root, secret, stateDir);
    await e.table.load();
    e.rootId = { ino: st.ino, gen: st.birthtimeNs };
    e.rootFd = await open(root, C.O_RDONLY | C.O_DIRECTORY);
    const rst = await fstat(e.rootFd);
    if (!e.matches(rst, e.rootId)) {
      await fsx.close(e.rootFd);
      throw new Error(`${root}: replaced while opening the export`);
    }
    return e;
  }

  get rootHandle(): Buffer {
    return this.codec.encode(this.rootId);
  }

  /** Issued handles remembered in the name table (for tests and stats). */
  get knownObjects(): number {
    return this.table.size;
  }

  // ---------- identity ----------

  /** The caller as the export sees it: squashed as configured (ownership.ts). */
  private eff(cred: Credentials): Credentials {
    return squash(cred, this.opts.squash ?? 'none', this.opts.anonUid ?? 65534, this.opts.anonGid ?? 65534);
  }

  private writable(): void {
    if (this.opts.readOnly) throw new FsError('ROFS', 'export is read-only');
  }

  /** Who a system call runs as: the caller when we are root (the kernel decides), else ourselves. */
  private as(cred: Credentials): N.NativeCreds {
    return this.serverIsRoot ? cred : N.self();
  }

  /**
   * A descriptor (O_PATH) of a resolved directory: opened by the server
   * beneath the export root (so neither ".." nor a symlink swapped in by a
   * local user leads out: EXDEV) and checked to be the handle's directory.
   * Opened as the server, like an NFS server's open by handle: a caller
   * holding a handle needs no search permission on the directories above.
   */
  private async dirFd(d: Resolved): Promise<number> {
    const fd = await N.openat2(this.rootFd, d.rel, K.O_PATH | K.O_DIRECTORY | K.O_NOFOLLOW, 0, N.self());
    try {
      const x = await N.statx(fd, '', K.AT_EMPTY_PATH, N.self());
      if (x.ino !== d.id.ino || x.btimeNs !== d.id.gen) throw new FsError('STALE', 'directory replaced');
      return fd;
    } catch (e) {
      void N.close(fd).catch(() => undefined);
      throw e;
    }
  }

  /** Run `fn` with an O_PATH descriptor of object `o` (a symlink itself, not its target), closed afterwards. */
  private async withObject<T>(o: Resolved, fn: (fd: number) => Promise<T>): Promise<T> {
    const fd = await N.openat2(this.rootFd, o.rel, K.O_PATH | K.O_NOFOLLOW, 0, N.self());
    try {
      const x = await N.statx(fd, '', K.AT_EMPTY_PATH, N.self());
      if (x.ino !== o.id.ino || x.btimeNs !== o.id.gen) throw new FsError('STALE', 'object replaced');
      return await fn(fd);
    } finally {
      void N.close(fd).catch(() => undefined);
    }
  }

  /** Run `fn` with a descriptor of directory `d`, closed afterwards. */
  private async inDir<T>(d: Resolved, fn: (fd: number) => Promise<T>): Promise<T> {
    const fd = await this.dirFd(d);
    try {
      return await fn(fd);
    } finally {
      void N.close(fd).catch(() => undefined);
    }
  }

  /**
   * Root may create objects for others (CREATE/MKDIR/... attributes with
   * uid or gid): like knfsd, a chown after the create, which also clears
   * the set-ID bits of a non-directory (the kernel does that part).
   * Everybody else's ids in those attributes are ignored (nfsd_create_setattr).
   */
  private async giveAway(dirfd: number, name: string, cred: Credentials, attrs: Sattr3 | undefined): Promise<void> {
    if (!this.serverIsRoot || cred.uid !== 0 || (attrs?.uid === undefined && attrs?.gid === undefined)) return;
    await N.fchownat(dirfd, name, attrs.uid ?? -1, attrs.gid ?? -1, name === '' ? K.AT_EMPTY_PATH : K.AT_SYMLINK_NOFOLLOW, N.self());
  }

  // ---------- handle resolution ----------

  private handleOf(st: LocalStat): Buffer {
    return this.codec.encode({ ino: st.ino, gen: st.birthtimeNs });
  }

  /**
   * The object at `rel` below the root (a symlink itself), opened beneath
   * the root's descriptor and statted through it in one native job: no
   * absolute path, so no PATH_MAX but the kernel's per open (and longer
   * paths in pieces), and a symlink swapped in by a local user never leads
   * out. Every stat refreshes the attribute cache.
   */
  private async lstat(rel: string): Promise<LocalStat> {
    const st = new StatxStats(await N.statOf(this.rootFd, { rel, ino: 0n, gen: 0n }, false));
    this.ac.put(st);
    return st;
  }

  /** `name` in resolved directory `d`, through the directory's descriptor (one native job), not followed. */
  private async statIn(d: Resolved, name: string): Promise<LocalStat> {
    const x = (await N.statNames(this.rootFd, this.ref(d), [name])).list[0];
    if (typeof x === 'number') throw errnoError(-x, 'statx', name);
    const st = new StatxStats(x);
    this.ac.put(st);
    return st;
  }

  /** `name` in the directory descriptor `dfd`, not followed (the object in that very directory). */
  private async statAt(dfd: number, name: string): Promise<LocalStat> {
    const st = new StatxStats(await N.statx(dfd, name, K.AT_SYMLINK_NOFOLLOW, N.self()));
    this.ac.put(st);
    return st;
  }

  /** Remember where an object lives (name table, for handles) and its name in the cache. */
  private learn(st: LocalStat, parent: bigint, name: string): void {
    this.table.set(st.ino, parent, name);
    this.ac.setChild(parent, name, st.ino);
  }

  private matches(st: LocalStat, id: HandleId): boolean {
    return st.ino === id.ino && st.birthtimeNs === id.gen;
  }

  /** The path below the root the name table gives for an inode (no I/O). */
  private tablePath(ino: bigint): string | undefined {
    const parts: string[] = [];
    let cur = ino;
    for (let depth = 0; depth < 4096; depth++) {
      if (cur === this.rootId.ino) return parts.length ? parts.reverse().join('/') : '.';
      const e = this.table.get(cur);
      if (!e) return undefined;
      parts.push(e.name);
      cur = e.parent;
    }
    return undefined;
  }

  /** Handle → verified path and attributes; STALE if the object is gone. */
  private async resolve(fh: Buffer): Promise<Resolved> {
    const id = this.codec.decode(fh);
    let p = id.ino === this.rootId.ino ? '.' : this.tablePath(id.ino);
    const cached = this.ac.get(id.ino);
    if (p !== undefined && cached && this.matches(cached, id)) return { id, rel: p, st: cached, attr: toFattr(cached, this.fsid) };
    if (p !== undefined) {
      try {
        const st = await this.lstat(p);
        if (this.matches(st, id)) return { id, rel: p, st, attr: toFattr(st, this.fsid) };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // Not there (moved, or a directory on the way swapped for a symlink that leads out or elsewhere): search.
        if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'EXDEV' && code !== 'ELOOP') throw toFsError(e, 'resolve');
      }
    }
    if (id.ino === this.rootId.ino) throw new FsError('STALE', 'export root is gone');
    p = await this.locate(id);
    if (p === undefined) throw new FsError('STALE', 'stale file handle');
    const st = await this.lstat(p).catch(() => undefined);
    if (!st || !this.matches(st, id)) throw new FsError('STALE', 'stale file handle');
    return { id, rel: p, st, attr: toFattr(st, this.fsid) };
  }

  private async resolveDir(fh: Buffer): Promise<Resolved> {
    const r = await this.resolve(fh);
    if (!r.st.isDirectory()) throw new FsError('NOTDIR', 'not a directory', { attr: r.attr });
    return r;
  }

  /**
   * Find an inode the table does not place correctly (journal tail lost,
   * object moved by a local program): a bounded breadth-first search of the
   * export that also re-learns every name it passes.
   */
  private locate(id: HandleId): Promise<string | undefined> {
    let p = this.locating.get(id.ino);
    if (!p) {
      p = this.scanFor(id).finally(() => this.locating.delete(id.ino));
      this.locating.set(id.ino, p);
    }
    return p;
  }

  private async scanFor(id: HandleId): Promise<string | undefined> {
    // By descriptor and name (native readdirOf + statNames): the same confinement as every other read.
    const queue: Array<{ rel: string; ino: bigint; gen: bigint }> = [{ rel: '.', ino: this.rootId.ino, gen: this.rootId.gen }];
    let seen = 0;
    while (queue.length && seen < MAX_LOCATE_SCAN) {
      const dir = queue.shift()!;
      let names: string[];
      let sts: Array<N.Statx | number>;
      try {
        names = (await N.readdirOf(this.rootFd, dir)).names;
        sts = (await N.statNames(this.rootFd, dir, names)).list;
      } catch {
        continue;
      }
      for (let i = 0; i < names.length; i++) {
        const name = names[i];
        seen++;
        const p = dir.rel === '.' ? name : `${dir.rel}/${name}`;
        const x = sts[i];
        if (typeof x === 'number') continue;
        const st = new StatxStats(x);
        // Every entry passed is learned, not only the one sought: resolve() trusts a cached stat together
        // with the table's path, so a stat cached here under a stale table entry would send the next
        // handle of a moved file to the file that now has its old name (STALE on open, never found).
        this.ac.put(st);
        this.learn(st, dir.ino, name);
        if (st.ino === id.ino) return st.birthtimeNs === id.gen ? p : undefined;
        if (st.isDirectory()) queue.push({ rel: p, ino: st.ino, gen: st.birthtimeNs });
      }
    }
    log.debug({ ino: id.ino.toString(), seen }, 'handle not found in export');
    return undefined;
  }

  /** What is wrong with a name as a single path component, if anything. */
  private nameProblem(name: string): FsError | undefined {
    if (name.length === 0) return new FsError('NOENT', 'empty name');
    if (Buffer.byteLength(name) > NAME_MAX) return new FsError('NAMETOOLONG', 'name too long');
    if (name.includes('/') || name.includes('\0')) return new FsError('INVAL', 'invalid character in name');
    return undefined;
  }

  private checkName(name: string): void {
    const e = this.nameProblem(name);
    if (e) throw e;
  }

  /** A name that will be created or removed: "." and ".." are never acceptable. */
  private checkNewName(name: string): void {
    this.checkName(name);
    if (name === '.' || name === '..') throw new FsError('EXIST', `"${name}" cannot be created or removed`);
  }

  private async attrOf(rel: string): Promise<Fattr3 | undefined> {
    try {
      return toFattr(await this.lstat(rel), this.fsid);
    } catch {
      return undefined;
    }
  }

  /** Run a directory-modifying step; failures carry the directory's wcc data. */
  private async dirOp<T>(d: Resolved, what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const err = toFsError(e, what);
      err.wcc ??= { before: toWccAttr(d.st), after: await this.attrOf(d.rel) };
      throw err;
    }
  }

  private async dirWcc(d: Resolved): Promise<WccData> {
    return { before: toWccAttr(d.st), after: await this.attrOf(d.rel) };
  }

  /**
   * A change another program made on disk (disk-watcher.ts): forget what the
   * short-lived caches hold of it, and return the handles it changed (the
   * directory when its names changed; the entry the name leads to now; the
   * object the name led to before, when the attribute cache knew it).
   */
  changedOnDisk(c: DiskChange): Buffer[] {
    const out: Buffer[] = [];
    if (c.names) {
      this.ac.drop(c.dir.ino);
      this.listings.delete(c.dir.ino);
      out.push(this.codec.encode(c.dir));
    }
    if (c.name) {
      const before = this.ac.child(c.dir.ino, c.name);
      this.ac.dropChild(c.dir.ino, c.name);
      const old = before !== undefined && before !== c.entry?.ino ? this.ac.get(before) : undefined;
      if (before !== undefined && before !== c.entry?.ino) this.ac.drop(before);
      if (old) out.push(this.handleOf(old));
    }
    const e = c.entry ?? (c.name ? undefined : c.dir);
    if (e) {
      this.ac.drop(e.ino);
      this.listings.delete(e.ino);
      out.push(this.codec.encode(e));
    }
    return out;
  }

  /**
   * Changes made on disk were lost (the watcher's queue overflowed): which
   * files changed is unknown, so nothing the short-lived caches hold may
   * answer a client that drops everything and asks again (it would then
   * trust the old attributes until the file's next change).
   */
  lostDiskChanges(): void {
    this.ac.clear();
    this.listings.clear();
  }

  private invalidateListing(dirIno: bigint): void {
    this.listings.delete(dirIno);
  }

  // ---------- Backend ----------

  /** The export's path, or a directory below it (as NFS servers allow); symlinks and ".." never cross out. */
  async mount(p: string, cred: Credentials): Promise<{ fh: Buffer; authFlavors: number[] }> {
    const want = p.replace(/\/+$/, '') || '/';
    const mine = this.name.replace(/\/+$/, '') || '/';
    let rest: string;
    if (want === mine) rest = '';
    else if (want.startsWith(mine === '/' ? '/' : mine + '/')) rest = want.slice(mine === '/' ? 1 : mine.length + 1);
    else throw new FsError('NOENT', `no export ${p}`);
    let fh = this.rootHandle;
    for (const part of rest.split('/').filter(Boolean)) {
      if (part === '.' || part === '..') throw new FsError('INVAL', 'mount path may not contain "." or ".."');
      const r = await this.lookup(cred, fh, part);
      if (r.attr?.type !== FType.DIR) throw new FsError('NOTDIR', `${part}: not a directory`);
      fh = r.fh;
    }
    return { fh, authFlavors: this.opts.authFlavors ?? [AuthFlavor.AUTH_SYS] };
  }

  async exports(): Promise<ExportInfo[]> {
    return [{ path: this.name, groups: [] }];
  }

  async getattr(_cred: Credentials, fh: Buffer): Promise<Fattr3> {
    return (await this.resolve(fh)).attr;
  }

  async setattr(cred0: Credentials, fh: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<WccData> {
    const cred = this.eff(cred0);
    const o = await this.resolve(fh);
    const before = toWccAttr(o.st);
    const fail = async (e: unknown): Promise<never> => {
      const err = toFsError(e, 'setattr');
      err.wcc ??= { before, after: await this.attrOf(o.rel) };
      throw err;
    };
    try {
      this.writable();
      if (guard && (guard.sec !== o.attr.ctime.sec || guard.nsec !== o.attr.ctime.nsec)) throw new FsError('NOT_SYNC', 'ctime guard mismatch');
      const a = o.attr;
      const owner = cred.uid === 0 || cred.uid === a.uid;
      const plan = planSetattr(cred, a, attrs);
      if (attrs.size !== undefined) {
        if (a.type === FType.DIR) throw new FsError('ISDIR', 'cannot truncate a directory');
        if (a.type !== FType.REG) throw new FsError('INVAL', 'size applies to regular files only');
        requireData(cred, a, W, 'setattr size');
      }
      const times = attrs.atime !== undefined || attrs.mtime !== undefined;
      if (!this.serverIsRoot) {
        // A root server has the kernel check times as the caller (owner, or write permission for "now").
        const clientTime = (t: Sattr3['atime']) => t !== undefined && t !== 'server';
        if ((clientTime(attrs.atime) || clientTime(attrs.mtime)) && !owner) throw new FsError('PERM', 'only the owner may set times');
        if ((attrs.atime === 'server' || attrs.mtime === 'server') && !owner) require(cred, a, W, 'setattr times');
      }

      if (attrs.size !== undefined) {
        // As the caller: the kernel clears the set-ID bits a truncate by someone without CAP_FSETID clears.
        await this.fds.with(o.id.ino, true, (w) => this.openFile(o.rel, o.id, w), async (fd) => {
          const x = await N.ftruncateAs(fd, attrs.size!, this.as(cred));
          if (x) this.took(x);
          this.fds.forgetStat(o.id.ino);
        });
      }
      if (plan.chown || plan.mode !== undefined || times) {
        // One trip: the object itself (O_PATH, never following it) opened and checked, changed as the caller.
        if (plan.mode !== undefined) this.fds.forgetStat(o.id.ino); // the next write's pre-op mode must not be the old one
        const nowOnly = attrs.atime !== undefined && attrs.mtime !== undefined ? false : attrs.atime === 'server' || attrs.mtime === 'server';
        // One time "now", the other left alone: utimensat(2) wants the owner for that, NFS (knfsd) only write
        // permission. The kernel checks that, as the caller; the server sets the time.
        const asServer = nowOnly && this.serverIsRoot && cred.uid !== 0 && cred.uid !== a.uid;
        let r: N.DirOpResult;
        try {
          r = await N.setattrOf(
            this.rootFd,
            this.ref(o),
            {
              chown: plan.chown,
              mode: plan.mode,
              // Nanoseconds as sent; a time the client did not set is left alone (UTIME_OMIT).
              times: times ? { atime: setTime(attrs.atime), mtime: setTime(attrs.mtime), asServer } : undefined,
            },
            this.as(cred),
          );
        } catch (e) {
          const x = (e as { obj?: N.Statx }).obj;
          const err = toFsError(e, 'setattr');
          if (x) err.wcc ??= { before, after: toFattr(this.took(x), this.fsid) };
          throw err;
        }
        if (r.obj) return { before, after: toFattr(this.took(r.obj), this.fsid) };
      }
    } catch (e) {
      return fail(e);
    }
    return { before, after: await this.attrOf(o.rel) };
  }

  /**
   * LOOKUP by directory descriptor and name: ONE native job opens the
   * directory beneath the root (checked against the handle) and statxes the
   * name through it as the caller, so the kernel checks search permission
   * (ACLs included) and nothing outside the export can be described. The
   * attribute cache answers a repeated lookup without a trip.
   */
  async lookup(cred0: Credentials, dirFh: Buffer, name: string): Promise<{ fh: Buffer; attr?: Fattr3; dirAttr?: Fattr3 }> {
    const cred = this.eff(cred0);
    const id = this.codec.decode(dirFh);
    const dp = id.ino === this.rootId.ino ? '.' : this.tablePath(id.ino);
    if (dp !== undefined && name !== '.' && name !== '..' && !this.nameProblem(name)) {
      const dc = this.ac.get(id.ino);
      const ci = dc && this.matches(dc, id) ? this.ac.child(id.ino, name) : undefined;
      const cc = ci !== undefined ? this.ac.get(ci) : undefined;
      if (dc && cc) {
        const dirAttr = toFattr(dc, this.fsid);
        if ((permBits(cred, dirAttr) & X) === 0) await this.requireSearch(cred, { id, rel: dp, st: dc, attr: dirAttr });
        return { fh: this.handleOf(cc), attr: toFattr(cc, this.fsid), dirAttr };
      }
      try {
        const r = await N.lookupIn(this.rootFd, { rel: dp, ino: id.ino, gen: id.gen }, name, this.as(cred));
        const ds = this.took(r.dir);
        const dirAttr = toFattr(ds, this.fsid);
        if (!ds.isDirectory()) throw new FsError('NOTDIR', 'not a directory', { attr: dirAttr });
        // A server that is not root looks up as itself: the mode bits decide (permissions.ts).
        if (!this.serverIsRoot && (permBits(cred, dirAttr) & X) === 0) throw new FsError('ACCES', 'lookup: permission denied', { attr: dirAttr });
        const st = this.took(r.obj);
        this.learn(st, id.ino, name);
        return { fh: this.handleOf(st), attr: toFattr(st, this.fsid), dirAttr };
      } catch (e) {
        const x = (e as { dir?: N.Statx }).dir;
        // The directory was read and checked: the name's failure is the answer (ENOENT, EACCES as the caller...).
        if (x) {
          const dirAttr = toFattr(this.took(x), this.fsid);
          // A server that is not root looked up as itself: without search permission the caller learns nothing.
          if (!this.serverIsRoot && (permBits(cred, dirAttr) & X) === 0) throw new FsError('ACCES', 'lookup: permission denied', { attr: dirAttr });
          throw Object.assign(toFsError(e, 'lookup'), { attr: dirAttr });
        }
        if (e instanceof FsError) throw e;
        // The directory is not where the table says: resolve the handle the long way.
      }
    }
    const d = await this.resolveDir(dirFh);
    try {
      this.checkName(name);
      await this.requireSearch(cred, d);
      if (name === '.') return { fh: dirFh, attr: d.attr, dirAttr: d.attr };
      if (name === '..') {
        const st = await this.parentOf(d);
        return { fh: this.handleOf(st), attr: toFattr(st, this.fsid), dirAttr: d.attr };
      }
      const r = await N.lookupIn(this.rootFd, this.ref(d), name, this.as(cred));
      const st = this.took(r.obj);
      this.learn(st, d.id.ino, name);
      return { fh: this.handleOf(st), attr: toFattr(st, this.fsid), dirAttr: toFattr(this.took(r.dir), this.fsid) };
    } catch (e) {
      const err = toFsError(e, 'lookup');
      err.attr ??= d.attr;
      throw err;
    }
  }

  /**
   * Search permission on directory `d`: the mode bits first (free); where
   * they say no, a root server asks the kernel as the caller (faccessat2
   * AT_EACCESS, so POSIX ACLs count), a server that is not root refuses.
   */
  private async requireSearch(cred: Credentials, d: Resolved): Promise<void> {
    return this.requireDirBits(cred, d, X, 'lookup');
  }

  private async requireDirBits(cred: Credentials, d: Resolved, want: number, what: string): Promise<void> {
    if ((permBits(cred, d.attr) & want) === want) return;
    if (this.serverIsRoot) {
      const r = await N.accessOf(this.rootFd, this.ref(d), cred).catch(() => undefined);
      if (r && (r.mask & want) === want) return;
    }
    throw new FsError('ACCES', `${what}: permission denied`, { attr: d.attr });
  }

  async access(cred0: Credentials, fh: Buffer, mask: number): Promise<{ access: number; attr?: Fattr3 }> {
    const o = await this.resolve(fh);
    const cred = this.eff(cred0);
    if (!this.serverIsRoot) return { access: accessMask(cred, o.attr, mask, !!this.opts.readOnly), attr: o.attr };
    // Asked of the kernel as the caller (faccessat2 AT_EACCESS): POSIX ACLs count too.
    try {
      // One trip: opened beneath the root and checked as the server, asked as the caller.
      const r = await N.accessOf(this.rootFd, this.ref(o), cred);
      const attr = r.obj ? toFattr(this.took(r.obj), this.fsid) : o.attr;
      return { access: accessFromBits(r.mask, o.attr.type, mask, !!this.opts.readOnly), attr };
    } catch (e) {
      throw Object.assign(toFsError(e, 'access'), { attr: o.attr });
    }
  }

  async readlink(_cred: Credentials, fh: Buffer): Promise<{ path: string; attr?: Fattr3 }> {
    const o = await this.resolve(fh);
    if (o.attr.type !== FType.LNK) throw new FsError('INVAL', 'not a symbolic link', { attr: o.attr });
    try {
      // Through the symlink's own O_PATH descriptor, opened beneath the root and checked (one job).
      const r = await N.readlinkOf(this.rootFd, this.ref(o));
      return { path: r.target, attr: toFattr(this.took(r.obj), this.fsid) };
    } catch (e) {
      throw Object.assign(toFsError(e, 'readlink'), { attr: o.attr });
    }
  }

  /**
   * Open a regular file by its verified path, beneath the export root (a
   * directory swapped for a symlink cannot lead out), never following a
   * symlink, and check it is still the handle's object.
   */
  private async openFile(rel: string, id: HandleId, writable: boolean): Promise<{ fd: number; writable: boolean }> {
    let fd: number;
    let w = writable || !this.opts.readOnly;
    try {
      fd = await N.openat2(this.rootFd, rel, (w ? K.O_RDWR : K.O_RDONLY) | K.O_NOFOLLOW, 0, N.self());
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (!writable && w && (code === 'EACCES' || code === 'EROFS' || code === 'EPERM' || code === 'ETXTBSY')) {
        w = false;
        fd = await N.openat2(this.rootFd, rel, K.O_RDONLY | K.O_NOFOLLOW, 0, N.self());
      } else throw e;
    }
    const st = await fstat(fd);
    if (!this.matches(st, id)) {
      fs.close(fd, () => undefined);
      throw new FsError('STALE', 'file replaced while opening');
    }
    return { fd, writable: w };
  }

  /** Run `fn` on an open descriptor of a regular file; throws with the file's attributes. */
  private async withFile<T>(o: Resolved, writable: boolean, what: string, fn: (fd: number) => Promise<T>): Promise<T> {
    if (o.attr.type === FType.DIR) throw new FsError('ISDIR', `${what}: is a directory`, { attr: o.attr });
    if (o.attr.type !== FType.REG) throw new FsError('INVAL', `${what}: not a regular file`, { attr: o.attr });
    return this.fds.with(o.id.ino, writable, (w) => this.openFile(o.rel, o.id, w), fn);
  }

  read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<ReadResult> {
    return this.readInto(cred, fh, offset, Buffer.allocUnsafe(Math.min(count, LOCAL_MAX_IO)));
  }

  /** Optional capability (backend/capabilities.ts ReadInto): the data lands in `into`, which is not kept. */
  async readInto(cred0: Credentials, fh: Buffer, offset: number, into: Buffer): Promise<ReadResult> {
    const cred = this.eff(cred0);
    const buf = into.length > LOCAL_MAX_IO ? into.subarray(0, LOCAL_MAX_IO) : into;
    // Fast path: a descriptor for this inode is open, so no path needs resolving.
    const id = this.codec.decode(fh);
    const fast = this.fds.withCached(id.ino, false, (fd, last) => this.readFd(fd, id, cred, offset, buf, last));
    if (fast) return fast;
    const o = await this.resolve(fh);
    try {
      await this.requireDataAccess(cred, o.attr, R, 'read', o);
      return await this.withFile(o, false, 'read', (fd) => this.readFd(fd, o.id, cred, offset, buf, { at: 0 }));
    } catch (e) {
      throw Object.assign(toFsError(e, 'read'), { attr: o.attr });
    }
  }

  private async readFd(fd: number, id: HandleId, cred: Credentials, offset: number, buf: Buffer, last: LastStat): Promise<ReadResult> {
    let r: { bytesRead: number; obj: N.Statx };
    try {
      // Data already in the page cache is copied here, as a socket's is: no wait, and no two thread
      // hand-offs (most of a small READ's latency). Else one job for the data and the reply's attributes.
      // As the server either way: the descriptor's open already checked the caller.
      r = this.readCached(fd, buf, offset, last) ?? (await N.preadAs(fd, buf, offset, N.self()));
    } catch (e) {
      throw toFsError(e, 'read');
    }
    const attr = this.checkOpen(new StatxStats(r.obj), id, last);
    await this.requireDataAccess(cred, attr, R, 'read', fd);
    const data = buf.subarray(0, r.bytesRead);
    return { attr, count: data.length, eof: offset + data.length >= attr.size, data };
  }

  /**
   * The page-cache try of readFd. A range that was not cached (cold data) cost the JS thread the readahead
   * it started (~50 µs of a random 4 KiB READ): after a miss, the next 1, 2, 4 ... 64 READs of this file
   * skip the try.
   */
  private readCached(fd: number, buf: Buffer, offset: number, last: LastStat): { bytesRead: number; obj: N.Statx } | undefined {
    if (!this.nowaitReads) return undefined;
    if ((last.skipCached ?? 0) > 0) {
      last.skipCached!--;
      return undefined;
    }
    const c = N.preadCached(fd, buf, offset);
    if (c === false) {
      this.nowaitReads = false;
      return undefined;
    }
    if (c) last.missGap = 0;
    else last.skipCached = last.missGap = Math.min(64, 2 * (last.missGap ?? 0) || 1);
    return c;
  }

  /**
   * READ/WRITE permission: the mode bits first (free, and with NFS's rule
   * that the owner may always read and write its file); where they say no,
   * a root server asks the kernel as the caller (faccessat2 AT_EACCESS),
   * which also knows POSIX ACLs. `at`: an open descriptor of the file, or
   * the object to open O_PATH.
   */
  private async requireDataAccess(cred: Credentials, attr: Fattr3, want: number, what: string, at: number | Resolved): Promise<void> {
    try {
      requireData(cred, attr, want, what);
    } catch (e) {
      if (!this.serverIsRoot || !(e instanceof FsError) || e.code !== 'ACCES') throw e;
      const ask = (fd: number) => N.accessMask(fd, '', K.AT_EACCESS | K.AT_EMPTY_PATH, cred);
      const bits = await (typeof at === 'number' ? ask(at) : this.withObject(at, ask)).catch(() => 0);
      if ((bits & want) !== want) throw e;
    }
  }

  /** A cached descriptor must still be the handle's object and still have a name. */
  private checkOpen(st: LocalStat, id: HandleId, last: LastStat): Fattr3 {
    if (!this.matches(st, id) || st.nlink === 0n) {
      this.fds.drop(id.ino);
      throw new FsError('STALE', 'file was removed');
    }
    last.st = st;
    last.at = Date.now();
    this.ac.put(st);
    return toFattr(st, this.fsid);
  }

  async write(cred0: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    const cred = this.eff(cred0);
    this.writable();
    if (offset + data.length > Number.MAX_SAFE_INTEGER) throw new FsError('FBIG', 'offset too large');
    const id = this.codec.decode(fh);
    const fast = this.fds.withCached(id.ino, true, (fd, last) => this.writeFd(fd, id, cred, offset, data, stable, last));
    if (fast) return fast;
    const o = await this.resolve(fh);
    try {
      await this.requireDataAccess(cred, o.attr, W, 'write', o);
      return await this.withFile(o, true, 'write', (fd) => this.writeFd(fd, o.id, cred, offset, data, stable, { st: o.st, at: Date.now() }));
    } catch (e) {
      const err = toFsError(e, 'write');
      err.wcc ??= { before: toWccAttr(o.st), after: await this.attrOf(o.rel) };
      throw err;
    }
  }

  /**
   * Pre-op attributes fresh at every WRITE, and the permission check made on
   * them: the last write's post-op attributes (which this once reused for up
   * to a second) miss a chown or chmod made on the server's disk meanwhile,
   * letting a caller the file no longer admits write (as knfsd, which checks
   * the inode at every WRITE, does not). A root server does it all in the
   * write's own native job (statx, check as the caller, pwrite, statx: one
   * trip per WRITE, like READ); a server that is not root fstats first and
   * checks in TypeScript (permissions.ts), then writes.
   */
  private async writeFd(fd: number, id: HandleId, cred: Credentials, offset: number, data: Buffer, stable: StableHow, last: LastStat): Promise<WriteResult> {
    let pre: LocalStat | undefined;
    try {
      const sync = stable === StableHow.FILE_SYNC ? 'file' : stable === StableHow.DATA_SYNC ? 'data' : 'none';
      let r: { written: number; obj?: N.Statx; pre?: N.Statx };
      if (this.serverIsRoot) {
        // One job, as the caller: statx, the WRITE permission check, pwrite (the kernel clears the set-ID
        // bits a write by someone without CAP_FSETID clears), sync as asked, statx for the reply.
        try {
          r = await N.pwriteAs(fd, data, offset, sync, cred, true);
        } catch (e) {
          const x = (e as { pre?: N.Statx }).pre;
          if (x) pre = new StatxStats(x);
          throw e;
        }
        pre = r.pre && new StatxStats(r.pre);
      } else {
        pre = await fstat(fd);
        await this.requireDataAccess(cred, toFattr(pre, this.fsid), W, 'write', fd);
        r = await N.pwriteAs(fd, data, offset, sync, this.as(cred));
      }
      const st = r.obj ? new StatxStats(r.obj) : await fstat(fd);
      const after = this.checkOpen(st, id, last);
      return { wcc: { before: pre && toWccAttr(pre), after }, count: r.written, committed: stable, verf: this.verifier };
    } catch (e) {
      const err = toFsError(e, 'write');
      err.wcc ??= { before: pre && toWccAttr(pre), after: await fstat(fd).then((s) => toFattr(s, this.fsid)).catch(() => undefined) };
      throw err;
    }
  }

  private async prepareCreate(cred: Credentials, dirFh: Buffer, name: string): Promise<Resolved> {
    const d = await this.resolveDir(dirFh);
    await this.dirOp(d, 'create', async () => {
      this.writable();
      this.checkNewName(name);
      // A root server lets the kernel check, as the caller (POSIX ACLs included).
      if (!this.serverIsRoot) require(cred, d.attr, W | X, 'create');
    });
    return d;
  }

  /**
   * The mode a new object is made with. A root server passes the client's
   * (workers have umask 0: the client applied its own) and the kernel,
   * acting as the caller, decides owner, group and which set-ID bits stay;
   * a server that is not root creates as itself with what ownership.ts says.
   */
  private newMode(cred: Credentials, d: Resolved, type: FType, attrs: Sattr3 | undefined, defMode: number): number {
    if (this.serverIsRoot) return (attrs?.mode ?? defMode) & 0o7777;
    return newObject(cred, d.attr, type, attrs, defMode).mode;
  }

  /** The reply for an object just made (or found) as `name` in directory descriptor `dfd`. */
  private async created(d: Resolved, name: string, dfd: number): Promise<NewObject> {
    this.invalidateListing(d.id.ino);
    const st = await this.statAt(dfd, name);
    this.learn(st, d.id.ino, name);
    return { fh: this.handleOf(st), attr: toFattr(st, this.fsid), dirWcc: await this.dirWcc(d) };
  }

  /**
   * created(), made durable first: a CREATE that finds its name there (a
   * retransmission, UNCHECKED) may follow one that made the file but could
   * not sync it (answered IO); its OK must not be less durable than the first.
   */
  private async createdSynced(d: Resolved, name: string, dfd: number): Promise<NewObject> {
    const out = await this.created(d, name, dfd);
    await N.syncIn(this.rootFd, this.ref(d), name);
    return out;
  }

  // ---------- one trip per call (native/src/dirops.c) ----------

  /** Object `d` as a one-trip job opens and checks it: beneath the root, by the handle's inode and birth time. */
  private ref(d: Resolved): N.DirRef {
    return { rel: d.rel, ino: d.id.ino, gen: d.id.gen };
  }

  /** A statx a one-trip job made, as the cache's stat (cached: it is the freshest there is). */
  private took(x: N.Statx): LocalStat {
    const st = new StatxStats(x);
    this.ac.put(st);
    return st;
  }

  /** wcc data of `d` from the directory's statx after the change (a stat of its path if the job had none). */
  private async wccFrom(d: Resolved, after: N.Statx | undefined): Promise<WccData> {
    return after ? { before: toWccAttr(d.st), after: toFattr(this.took(after), this.fsid) } : this.dirWcc(d);
  }

  /** A failed one-trip job as an FsError carrying the directory's wcc data (from the job's statx when it has one). */
  private async failedIn(d: Resolved, e: unknown, what: string): Promise<FsError> {
    const err = toFsError(e, what);
    if (!err.wcc) err.wcc = await this.wccFrom(d, (e as { dir?: N.Statx }).dir);
    return err;
  }

  /**
   * Run a one-trip job in `d`; failures carry the directory's wcc data. A job
   * that made its change but could not sync it (syncFailed) still changed the
   * disk: `made` brings the caches in line with it (from the job's statx,
   * carried by the error) before the caller hears IO.
   */
  private async oneTrip(d: Resolved, what: string, job: () => Promise<N.DirOpResult>, made?: (x: N.DirOpResult) => void): Promise<N.DirOpResult> {
    try {
      return await job();
    } catch (e) {
      if (syncFailed(e)) made?.(e as N.DirOpResult);
      throw await this.failedIn(d, e, what);
    }
  }

  /** A name made in `d` that the caches may not know yet: looked up and listed again. */
  private madeName(d: Resolved, name: string): void {
    this.ac.dropChild(d.id.ino, name);
    this.invalidateListing(d.id.ino);
  }

  /** The reply for an object a one-trip job made as `name` in `d`. */
  private async madeIn(d: Resolved, name: string, r: N.DirOpResult): Promise<NewObject> {
    this.invalidateListing(d.id.ino);
    // The job's statx of the new name failed only if a local program removed it already.
    if (!r.obj) throw new FsError('NOENT', 'new object removed at once', { wcc: await this.wccFrom(d, r.dir) });
    const st = this.took(r.obj);
    this.learn(st, d.id.ino, name);
    return { fh: this.handleOf(st), attr: toFattr(st, this.fsid), dirWcc: await this.wccFrom(d, r.dir) };
  }

  /** Root giving a new object away (giveAway) takes a descriptor of the directory: the path of several trips. */
  private givesAway(cred: Credentials, attrs: Sattr3 | undefined): boolean {
    return this.serverIsRoot && cred.uid === 0 && (attrs?.uid !== undefined || attrs?.gid !== undefined);
  }

  async create(cred0: Credentials, dirFh: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    const cred = this.eff(cred0);
    const d = await this.prepareCreate(cred, dirFh, name);
    const attrs = how.mode === 'exclusive' ? undefined : how.attrs;
    let r: N.DirOpResult;
    try {
      // One trip: open the directory, check it, create O_EXCL as the caller, statx file and directory.
      r = await N.inDir(this.rootFd, this.ref(d), { op: 'create', name, mode: this.newMode(cred, d, FType.REG, attrs, 0o644) }, this.as(cred));
    } catch (e) {
      // An existing name (a retransmitted EXCLUSIVE create, UNCHECKED): rare, the full path decides.
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return this.createExisting(cred, d, name, how);
      if (syncFailed(e)) this.madeName(d, name);
      throw await this.failedIn(d, e, 'create');
    }
    const fd = r.fd;
    let adopted = false;
    try {
      let st: LocalStat | undefined = r.obj && new StatxStats(r.obj);
      let changed = false;
      if (this.givesAway(cred, attrs)) {
        await this.giveAway(fd, '', cred, attrs);
        changed = true;
      }
      // The file is new (size 0): only a larger size needs a truncate.
      if (attrs?.size) {
        await fsx.ftruncate(fd, attrs.size);
        changed = true;
      }
      if (how.mode === 'exclusive') {
        const v = exclusiveTimes(how.verf);
        await N.utimensat(fd, '', { sec: v.atime, nsec: 0 }, { sec: v.mtime, nsec: 0 }, 0, N.self());
        changed = true;
      } else if (attrs?.atime !== undefined || attrs?.mtime !== undefined) {
        await N.utimensat(fd, '', setTime(attrs.atime), setTime(attrs.mtime), 0, N.self());
        changed = true;
      }
      // The one trip synced the new file as created; what changed it since is synced before the reply too.
      if (changed) await N.fsync(fd, N.self());
      if (changed || !st) st = await fstat(fd);
      this.ac.put(st);
      this.invalidateListing(d.id.ino);
      this.learn(st, d.id.ino, name);
      adopted = this.fds.adopt(st.ino, fd, true);
      return { fh: this.handleOf(st), attr: toFattr(st, this.fsid), dirWcc: await this.wccFrom(d, r.dir) };
    } catch (e) {
      this.madeName(d, name); // the file is there, whatever failed after the one trip
      throw await this.failedIn(d, e, 'create');
    } finally {
      if (!adopted) fs.close(fd, () => undefined);
    }
  }

  /** CREATE of a name that exists: a retransmitted EXCLUSIVE create, UNCHECKED (with a size), or EXIST. */
  private createExisting(cred: Credentials, d: Resolved, name: string, how: CreateHow): Promise<NewObject> {
    return this.dirOp(d, 'create', () =>
      this.inDir(d, async (dfd) => {
        const attrs = how.mode === 'exclusive' ? undefined : how.attrs;
        let fd: number;
        let isNew = true;
        try {
          // O_RDWR so the new descriptor can stay open for the writes (and reads) that follow.
          const flags = K.O_RDWR | K.O_CREAT | K.O_EXCL | K.O_NOFOLLOW;
          fd = await N.openat2(dfd, name, flags, this.newMode(cred, d, FType.REG, attrs, 0o644), this.as(cred));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          const st = await this.statAt(dfd, name);
          if (how.mode === 'exclusive') {
            // A retransmitted EXCLUSIVE create finds its own file by the verifier kept in its times.
            const v = exclusiveTimes(how.verf);
            if (st.isFile() && Number(st.atimeNs / 1_000_000_000n) === v.atime && Number(st.mtimeNs / 1_000_000_000n) === v.mtime) return this.createdSynced(d, name, dfd);
            throw e;
          }
          if (how.mode === 'guarded' || !st.isFile()) throw e;
          // UNCHECKED on an existing file: it stays as it is, except for a requested size.
          if (attrs?.size === undefined) return this.createdSynced(d, name, dfd);
          requireData(cred, toFattr(st, this.fsid), W, 'create');
          fd = await N.openat2(dfd, name, K.O_RDWR | K.O_NOFOLLOW, 0, N.self());
          isNew = false;
        }
        let adopted = false;
        try {
          if (isNew) await this.giveAway(fd, '', cred, attrs);
          // An existing file truncated as the caller: the kernel clears its set-ID bits as for a write.
          if (attrs?.size !== undefined) await (isNew ? fsx.ftruncate(fd, attrs.size) : N.ftruncateAs(fd, attrs.size, this.as(cred)));
          if (how.mode === 'exclusive') {
            const v = exclusiveTimes(how.verf);
            await N.utimensat(fd, '', { sec: v.atime, nsec: 0 }, { sec: v.mtime, nsec: 0 }, 0, N.self());
          } else if (attrs?.atime !== undefined || attrs?.mtime !== undefined) {
            await N.utimensat(fd, '', setTime(attrs.atime), setTime(attrs.mtime), 0, N.self());
          }
          this.invalidateListing(d.id.ino);
          const [st, dir] = await Promise.all([fstat(fd), this.attrOf(d.rel)]);
          this.ac.put(st);
          this.learn(st, d.id.ino, name);
          adopted = this.fds.adopt(st.ino, fd, true);
          // Durable before the reply (RFC 1813 §1.6): the file (new, or cut to size), then its directory.
          await N.fsync(fd, N.self());
          await N.syncIn(this.rootFd, this.ref(d));
          return { fh: this.handleOf(st), attr: toFattr(st, this.fsid), dirWcc: { before: toWccAttr(d.st), after: dir } };
        } finally {
          if (!adopted) fs.close(fd, () => undefined);
        }
      }),
    );
  }

  /**
   * MKDIR, SYMLINK, MKNOD: one trip (the object made as the caller, then
   * statted with its directory), unless root gives the object away, which
   * chowns it through the directory's descriptor afterwards.
   */
  private async make(cred: Credentials, d: Resolved, what: N.InDirOp, attrs: Sattr3 | undefined, slow: (dfd: number) => Promise<void>): Promise<NewObject> {
    if (this.givesAway(cred, attrs)) {
      return this.dirOp(d, what.op, () =>
        this.inDir(d, async (dfd) => {
          await slow(dfd);
          await this.giveAway(dfd, what.name, cred, attrs).catch((e) => {
            this.madeName(d, what.name);
            throw e;
          });
          return this.createdSynced(d, what.name, dfd);
        }),
      );
    }
    // EEXIST may answer a retry of a call that made the object but could not sync it (answered IO): the EXIST
    // says the object is there, so it is made durable before that answer goes too.
    const job = () =>
      N.inDir(this.rootFd, this.ref(d), what, this.as(cred)).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code === 'EEXIST') await N.syncIn(this.rootFd, this.ref(d), what.name);
        throw e;
      });
    const r = await this.oneTrip(d, what.op, job, () => this.madeName(d, what.name));
    return this.madeIn(d, what.name, r);
  }

  async mkdir(cred0: Credentials, dirFh: Buffer, name: string, attrs: Sattr3): Promise<NewObject> {
    const cred = this.eff(cred0);
    const d = await this.prepareCreate(cred, dirFh, name);
    const mode = this.newMode(cred, d, FType.DIR, attrs, 0o755);
    return this.make(cred, d, { op: 'mkdir', name, mode }, attrs, (dfd) => N.mkdirat(dfd, name, mode, this.as(cred)));
  }

  async symlink(cred0: Credentials, dirFh: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject> {
    const cred = this.eff(cred0);
    const d = await this.prepareCreate(cred, dirFh, name);
    if (target.length === 0 || target.includes('\0')) throw new FsError('INVAL', 'bad symlink target', { wcc: await this.dirWcc(d) });
    // Stored verbatim and never followed by the server: it means something only to the client.
    return this.make(cred, d, { op: 'symlink', name, target }, attrs, (dfd) => N.symlinkat(target, dfd, name, this.as(cred)));
  }

  /** MKNOD of FIFOs, sockets (so programs can bind Unix-domain sockets on a mount) and devices (the kernel: CAP_MKNOD). */
  async mknod(cred0: Credentials, dirFh: Buffer, name: string, what: MknodType): Promise<NewObject> {
    const cred = this.eff(cred0);
    const d = await this.prepareCreate(cred, dirFh, name);
    const bad = (code: 'BADTYPE' | 'PERM', msg: string) => this.dirOp(d, 'mknod', () => Promise.reject(new FsError(code, msg)));
    if (what.type === FType.REG || what.type === FType.DIR || what.type === FType.LNK) return bad('BADTYPE', 'MKNOD of a regular file, directory or link');
    const dev = what.type === FType.CHR || what.type === FType.BLK;
    // A server that is not root acts as itself: it must not make devices for others.
    if (dev && !this.serverIsRoot && cred.uid !== 0) return bad('PERM', 'only root may create devices');
    const typeBits = { [FType.FIFO]: K.S_IFIFO, [FType.SOCK]: K.S_IFSOCK, [FType.CHR]: K.S_IFCHR, [FType.BLK]: K.S_IFBLK }[what.type];
    const rdev = dev ? (what as { rdev: { major: number; minor: number } }).rdev : { major: 0, minor: 0 };
    const attrs = (what as { attrs: Sattr3 }).attrs;
    const mode = typeBits | this.newMode(cred, d, what.type, attrs, 0o644);
    return this.make(cred, d, { op: 'mknod', name, mode, ...rdev }, attrs, (dfd) => N.mknodat(dfd, name, mode, rdev, this.as(cred)));
  }

  private async removeCommon(cred0: Credentials, dirFh: Buffer, name: string, dir: boolean): Promise<WccData> {
    const cred = this.eff(cred0);
    const d = await this.resolveDir(dirFh);
    return this.dirOp(d, dir ? 'rmdir' : 'remove', async () => {
      this.writable();
      this.checkName(name);
      if (name === '.' || name === '..') throw new FsError(dir ? 'INVAL' : 'ACCES', `cannot remove "${name}"`);
      const ci = this.ac.child(d.id.ino, name);
      if (!this.serverIsRoot) {
        // A server that is not root acts as itself: the TypeScript rules decide.
        require(cred, d.attr, W | X, 'remove');
        const st = (ci !== undefined && this.ac.get(ci)) || (await this.statIn(d, name));
        requireSticky(cred, d.attr, toFattr(st, this.fsid), 'remove');
        if (dir && !st.isDirectory()) throw new FsError('NOTDIR', 'not a directory');
        if (!dir && st.isDirectory()) throw new FsError('ISDIR', 'is a directory');
      }
      // One trip, as the caller: the kernel checks permission, the sticky bit and the type
      // (unlink of a directory: EISDIR; rmdir of anything else: ENOTDIR).
      const removed = (r: N.DirOpResult) => {
        // What the name held, as the job saw it just before (else as the cache knew it).
        const gone = r.obj ? new StatxStats(r.obj) : ci !== undefined ? this.ac.get(ci) : undefined;
        if (gone) this.forget(gone);
        this.ac.dropChild(d.id.ino, name);
        this.invalidateListing(d.id.ino);
      };
      const r = await this.oneTrip(
        d,
        dir ? 'rmdir' : 'remove',
        () => N.inDir(this.rootFd, this.ref(d), { op: 'unlink', name, flags: dir ? K.AT_REMOVEDIR : 0 }, this.as(cred)),
        removed,
      );
      removed(r);
      return this.wccFrom(d, r.dir);
    });
  }

  /** An object lost a name: drop its descriptor and, if that was its last name, its table entry. */
  private forget(st: LocalStat): void {
    this.ac.drop(st.ino); // nlink and ctime changed
    if (st.isDirectory() || st.nlink <= 1n) {
      this.fds.drop(st.ino);
      this.table.delete(st.ino);
      this.listings.delete(st.ino);
    }
  }

  remove(cred: Credentials, dirFh: Buffer, name: string): Promise<WccData> {
    return this.removeCommon(cred, dirFh, name, false);
  }

  rmdir(cred: Credentials, dirFh: Buffer, name: string): Promise<WccData> {
    return this.removeCommon(cred, dirFh, name, true);
  }

  async rename(cred0: Credentials, fromFh: Buffer, fromName: string, toFh: Buffer, toName: string): Promise<{ fromWcc: WccData; toWcc: WccData }> {
    const cred = this.eff(cred0);
    const f = await this.resolveDir(fromFh);
    const t = fromFh.equals(toFh) ? f : await this.resolveDir(toFh);
    try {
      this.writable();
      this.checkName(fromName);
      this.checkName(toName);
      if (fromName === '.' || fromName === '..' || toName === '.' || toName === '..') throw new FsError('INVAL', 'cannot rename "." or ".."');
      if (this.serverIsRoot) return await this.renameOneTrip(cred, f, fromName, t, toName);
      // A server that is not root acts as itself: the TypeScript rules decide.
      require(cred, f.attr, W | X, 'rename');
      require(cred, t.attr, W | X, 'rename');
      const st = await this.statIn(f, fromName);
      requireSticky(cred, f.attr, toFattr(st, this.fsid), 'rename');
      const old = await this.statIn(t, toName).catch(() => undefined);
      if (old) {
        requireSticky(cred, t.attr, toFattr(old, this.fsid), 'rename');
        if (old.ino === st.ino) return { fromWcc: await this.dirWcc(f), toWcc: await this.dirWcc(t) };
        if (old.isDirectory() && !st.isDirectory()) throw new FsError('ISDIR', 'target is a directory');
        if (!old.isDirectory() && st.isDirectory()) throw new FsError('NOTDIR', 'target is not a directory');
      }
      if (st.isDirectory()) {
        // A directory may not move into its own subtree.
        const rel = path.relative(path.join(f.rel, fromName), t.rel);
        if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) throw new FsError('INVAL', 'cannot move a directory into itself');
      }
      const as = this.as(cred);
      await this.inDir(f, (ffd) =>
        t === f ? N.renameat2(ffd, fromName, ffd, toName, 0, as) : this.inDir(t, (tfd) => N.renameat2(ffd, fromName, tfd, toName, 0, as)),
      );
      if (old) this.forget(old);
      this.ac.dropChild(f.id.ino, fromName);
      this.ac.drop(st.ino); // ctime changed
      this.table.set(st.ino, t.id.ino, toName);
      this.ac.setChild(t.id.ino, toName, st.ino);
      this.invalidateListing(f.id.ino);
      this.invalidateListing(t.id.ino);
      // Durable before the reply (RFC 1813 §1.6): the new name's directory, then the old one's.
      await N.syncIn(this.rootFd, this.ref(t));
      if (t !== f) await N.syncIn(this.rootFd, this.ref(f));
      return { fromWcc: await this.dirWcc(f), toWcc: await this.dirWcc(t) };
    } catch (e) {
      const err = toFsError(e, 'rename');
      err.wcc ??= await this.dirWcc(f);
      err.wcc2 ??= await this.dirWcc(t);
      throw err;
    }
  }

  /**
   * RENAME on a root server in one trip: the kernel, as the caller, checks
   * permissions and sticky bits, refuses a directory moved into itself
   * (EINVAL), a directory over a non-directory (ENOTDIR) and the reverse
   * (EISDIR), and does nothing for two names of one file (POSIX).
   */
  private async renameOneTrip(cred: Credentials, f: Resolved, fromName: string, t: Resolved, toName: string): Promise<{ fromWcc: WccData; toWcc: WccData }> {
    // The caches follow a rename that was made (also one whose sync then failed: its statx comes with the error).
    const moved = (r: N.DirOpResult) => {
      const st = r.obj && new StatxStats(r.obj);
      const old = r.dst && new StatxStats(r.dst);
      if (old && st && old.ino === st.ino) return;
      if (old) this.forget(old);
      this.ac.dropChild(f.id.ino, fromName);
      if (st) {
        this.ac.drop(st.ino); // ctime changed
        this.table.set(st.ino, t.id.ino, toName);
        this.ac.setChild(t.id.ino, toName, st.ino);
      } else this.ac.dropChild(t.id.ino, toName);
      this.invalidateListing(f.id.ino);
      this.invalidateListing(t.id.ino);
    };
    let r: N.DirOpResult;
    try {
      r = await N.renameIn(this.rootFd, this.ref(f), fromName, this.ref(t), toName, 0, this.as(cred));
    } catch (e) {
      if (syncFailed(e)) moved(e as N.DirOpResult);
      const err = toFsError(e, 'rename');
      const x = e as { dir?: N.Statx; dir2?: N.Statx };
      err.wcc ??= await this.wccFrom(f, x.dir);
      err.wcc2 ??= await this.wccFrom(t, t === f ? x.dir : x.dir2);
      throw err;
    }
    moved(r);
    const fromWcc = await this.wccFrom(f, r.dir);
    return { fromWcc, toWcc: t === f ? fromWcc : await this.wccFrom(t, r.dir2) };
  }

  async link(cred0: Credentials, fh: Buffer, dirFh: Buffer, name: string): Promise<{ attr?: Fattr3; dirWcc: WccData }> {
    const cred = this.eff(cred0);
    const o = await this.resolve(fh);
    const d = await this.resolveDir(dirFh);
    try {
      this.writable();
      this.checkNewName(name);
      if (o.attr.type === FType.DIR) throw new FsError('ISDIR', 'cannot hard-link a directory');
      if (!this.serverIsRoot) {
        require(cred, d.attr, W | X, 'link');
        requireHardlinkSource(cred, o.attr);
      }
      // By the source's name in its own directory (linkat with AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH,
      // which the caller does not have), as the caller: the kernel applies protected_hardlinks.
      await this.inDir(d, async (tfd) => {
        const rel = path.dirname(o.rel);
        const sfd = await N.openat2(this.rootFd, rel, K.O_PATH | K.O_DIRECTORY | K.O_NOFOLLOW, 0, N.self());
        try {
          await N.linkat(sfd, path.basename(o.rel), tfd, name, this.as(cred));
          const x = await N.statx(tfd, name, K.AT_SYMLINK_NOFOLLOW, N.self());
          if (x.ino !== o.id.ino || x.btimeNs !== o.id.gen) {
            // The source name was replaced since we resolved the handle: undo, the handle is stale.
            await N.unlinkat(tfd, name, 0, N.self());
            throw new FsError('STALE', 'link source replaced');
          }
        } finally {
          void N.close(sfd).catch(() => undefined);
        }
      });
      this.invalidateListing(d.id.ino);
      this.ac.drop(o.id.ino); // nlink and ctime changed
      // Durable before the reply (RFC 1813 §1.6): the file (its link count), then the new name's directory.
      await N.syncIn(this.rootFd, this.ref(d), name);
      return { attr: await this.attrOf(o.rel), dirWcc: await this.dirWcc(d) };
    } catch (e) {
      const err = toFsError(e, 'link');
      err.attr ??= await this.attrOf(o.rel);
      err.wcc ??= await this.dirWcc(d);
      throw err;
    }
  }

  /**
   * The directory's entries sorted by cookie. Cookies are a 62-bit hash of
   * the name (like ext4's htree offsets), so a cookie stays meaningful while
   * the directory changes between pages: a client resumes after the last name
   * it saw, with no server-side cursor to lose. The verifier is informational.
   */
  private async listing(d: Resolved): Promise<Listing> {
    // The directory as it is now (one small job), not as the attribute cache last saw it: a name a local
    // program removed since must not be listed from a stale listing (no stat per name vouches for it any more).
    const now = this.took(await N.statOf(this.rootFd, this.ref(d)));
    const key = `${now.mtimeNs}:${now.ctimeNs}:${now.size}`;
    const cached = this.listings.get(d.id.ino);
    if (cached && cached.key === key) return cached;
    // getdents64 on a descriptor opened beneath the root and checked (one native job): names and inode numbers.
    const r = await N.readdirOf(this.rootFd, this.ref(d));
    const entries = r.names.map((name, i) => ({ cookie: nameCookie(name), name, ino: r.inos[i] }));
    entries.sort((a, b) => (a.cookie < b.cookie ? -1 : a.cookie > b.cookie ? 1 : 0));
    const l = { key, entries };
    this.listings.set(d.id.ino, l);
    if (this.listings.size > 64) this.listings.delete(this.listings.keys().next().value!);
    return l;
  }

  private cookieVerf(d: Resolved): Buffer {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt.asUintN(64, d.st.mtimeNs));
    return b;
  }

  private startIndex(l: Listing, cookie: bigint): number {
    if (cookie <= COOKIE_DOTDOT) return 0;
    let lo = 0;
    let hi = l.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (l.entries[mid].cookie <= cookie) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private async parentOf(d: Resolved): Promise<LocalStat> {
    return d.id.ino === this.rootId.ino ? d.st : this.lstat(path.dirname(d.rel));
  }

  async readdir(cred0: Credentials, dirFh: Buffer, cookie: bigint, _verf: Buffer, count: number): Promise<DirPage<DirEntry>> {
    const cred = this.eff(cred0);
    const d = await this.resolveDir(dirFh);
    try {
      await this.requireDirBits(cred, d, R, 'readdir');
      const l = await this.listing(d);
      let budget = count - 128;
      const out: DirEntry[] = [];
      const take = (e: DirEntry) => {
        const sz = readdirEntrySize(e.name);
        if (sz > budget) return false;
        budget -= sz;
        out.push(e);
        return true;
      };
      let full = false;
      if (cookie < COOKIE_DOT) full = !take({ fileid: d.st.ino, name: '.', cookie: COOKIE_DOT });
      if (!full && cookie < COOKIE_DOTDOT) full = !take({ fileid: (await this.parentOf(d)).ino, name: '..', cookie: COOKIE_DOTDOT });
      let i = this.startIndex(l, cookie);
      // The inode numbers getdents64 gave: no stat per name.
      while (!full && i < l.entries.length) {
        const e = l.entries[i];
        if (take({ fileid: e.ino, name: e.name, cookie: e.cookie })) i++;
        else full = true;
      }
      if (out.length === 0 && i < l.entries.length) throw new FsError('TOOSMALL', 'READDIR count too small');
      return { dirAttr: d.attr, verf: this.cookieVerf(d), entries: out, eof: !full && i >= l.entries.length };
    } catch (e) {
      throw Object.assign(toFsError(e, 'readdir'), { attr: d.attr });
    }
  }

  async readdirplus(cred0: Credentials, dirFh: Buffer, cookie: bigint, _verf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>> {
    const cred = this.eff(cred0);
    const d = await this.resolveDir(dirFh);
    try {
      await this.requireDirBits(cred, d, R, 'readdirplus');
      const l = await this.listing(d);
      let budget = maxcount - 256;
      let names = dircount > 0 ? dircount : maxcount;
      const out: DirEntryPlus[] = [];
      const take = (name: string, ck: bigint, st: LocalStat) => {
        const sz = readdirplusEntrySize(name, HANDLE_LEN);
        const nsz = readdirEntrySize(name);
        if (sz > budget || (nsz > names && out.length > 0)) return false;
        budget -= sz;
        names -= nsz;
        out.push({ fileid: st.ino, name, cookie: ck, attr: toFattr(st, this.fsid), fh: this.handleOf(st) });
        return true;
      };
      let full = false;
      if (cookie < COOKIE_DOT) full = !take('.', COOKIE_DOT, d.st);
      if (!full && cookie < COOKIE_DOTDOT) full = !take('..', COOKIE_DOTDOT, await this.parentOf(d));
      let i = this.startIndex(l, cookie);
      while (!full && i < l.entries.length) {
        // A batch of names statted through the directory's descriptor in one native job; names removed since the listing are skipped.
        const batch = l.entries.slice(i, i + 64);
        const xs = (await N.statNames(this.rootFd, this.ref(d), batch.map((e) => e.name))).list;
        for (let k = 0; k < batch.length; k++) {
          const x = xs[k];
          const st = typeof x === 'number' ? undefined : new StatxStats(x);
          if (st) {
            this.ac.put(st);
            if (!take(batch[k].name, batch[k].cookie, st)) {
              full = true;
              break;
            }
            this.learn(st, d.id.ino, batch[k].name);
          }
          i++;
        }
      }
      if (out.length === 0 && i < l.entries.length) throw new FsError('TOOSMALL', 'READDIRPLUS maxcount too small');
      return { dirAttr: d.attr, verf: this.cookieVerf(d), entries: out, eof: !full && i >= l.entries.length };
    } catch (e) {
      throw Object.assign(toFsError(e, 'readdirplus'), { attr: d.attr });
    }
  }

  async fsstat(_cred: Credentials, fh: Buffer): Promise<FsStat> {
    const o = await this.resolve(fh);
    try {
      const s = await fsx.statfs(this.root);
      return {
        attr: o.attr,
        tbytes: s.blocks * s.bsize,
        fbytes: s.bfree * s.bsize,
        abytes: s.bavail * s.bsize,
        tfiles: s.files,
        ffiles: s.ffree,
        afiles: s.ffree,
        invarsec: 0,
      };
    } catch (e) {
      throw Object.assign(toFsError(e, 'fsstat'), { attr: o.attr });
    }
  }

  async fsinfo(_cred: Credentials, fh: Buffer): Promise<FsInfo> {
    const o = await this.resolve(fh);
    return {
      attr: o.attr,
      rtmax: LOCAL_MAX_IO,
      rtpref: LOCAL_MAX_IO,
      rtmult: 4096,
      wtmax: LOCAL_MAX_IO,
      wtpref: LOCAL_MAX_IO,
      wtmult: 4096,
      dtpref: 64 * 1024,
      maxfilesize: Number.MAX_SAFE_INTEGER,
      timeDelta: { sec: 0, nsec: 1 },
      properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
    };
  }

  async pathconf(_cred: Credentials, fh: Buffer): Promise<PathConf> {
    const o = await this.resolve(fh);
    return { attr: o.attr, linkmax: 65000, nameMax: NAME_MAX, noTrunc: true, chownRestricted: true, caseInsensitive: false, casePreserving: true };
  }

  async commit(_cred: Credentials, fh: Buffer, _offset: number, _count: number): Promise<{ wcc: WccData; verf: Buffer }> {
    const o = await this.resolve(fh);
    const before = toWccAttr(o.st);
    try {
      if (o.attr.type !== FType.REG) throw new FsError('INVAL', 'COMMIT of a non-regular file');
      await this.withFile(o, false, 'commit', (fd) => fsync(fd));
      return { wcc: { before, after: await this.attrOf(o.rel) }, verf: this.verifier };
    } catch (e) {
      const err = toFsError(e, 'commit');
      err.wcc ??= { before, after: o.attr };
      throw err;
    }
  }

  /**
   * Close the export's descriptors once nothing can use them. A call still
   * running (a server stopping with calls under way) opens beneath the root
   * descriptor at each of its steps: closed under it, that number could be
   * another file's by then, and a change would land beneath that. So
   * close() waits for the calls in flight, then takes the root descriptor
   * away from any later job (-1: EBADF, never another file) and waits for
   * the native jobs still holding it or a cached file's descriptor. Waits at
   * most CLOSE_WAIT_MS in all; past that the descriptors are left open (the
   * process is ending) rather than closed under a job.
   */
  close(): Promise<void> {
    return (this.closing ??= this.closeOnce());
  }

  private closing?: Promise<void>;

  private async closeOnce(): Promise<void> {
    const deadline = performance.now() + CLOSE_WAIT_MS;
    const callsEnded = this.calls === 0 || (await within(new Promise<void>((resolve) => (this.callsDone = resolve)), deadline));
    this.callsDone = undefined;
    const root = this.rootFd;
    this.rootFd = -1;
    let idle = callsEnded;
    // whenIdle resolves after the completions' own continuations: one may have submitted its next job.
    while (idle && N.info().inflight > 0) idle = await within(N.whenIdle(), deadline);
    if (!idle) {
      log.warn({ export: this.root, waitedMs: CLOSE_WAIT_MS, calls: this.calls, jobs: N.info().inflight }, 'close: calls or native jobs still in flight; the export descriptors stay open');
      return;
    }
    if (root >= 0) await fsx.close(root).catch(() => undefined);
    await this.fds.closeAll();
    await this.table.close();
  }
}

/** FNV-1a 64 of the name, folded into [2^62, 2^63): never 0, 1 or 2 (start, ".", ".."). */
export function nameCookie(name: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(name, 'utf8')) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return (h & 0x3fffffffffffffffn) | 0x4000000000000000n;
}

/** A time from sattr3 for utimensat: nanoseconds kept, an unset time left alone. */
function setTime(t: Sattr3['atime']): N.SetTime {
  return t === undefined ? 'omit' : t === 'server' ? 'now' : { sec: t.sec, nsec: t.nsec };
}

/** EXCLUSIVE create keeps the client's verifier in the file's times (as Linux nfsd does). */
function exclusiveTimes(verf: Buffer): { atime: number; mtime: number } {
  return { atime: verf.readUInt32BE(0) & 0x7fffffff, mtime: verf.readUInt32BE(4) & 0x7fffffff };
}
