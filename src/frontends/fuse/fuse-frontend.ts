import type { DataCounters } from '../../util/counters.js';
import { constants as F } from 'node:fs';
import fs from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import type { Backend } from '../../backend/backend.js';
import { FsError, isFsError } from '../../backend/errors.js';
import { ACCESS3_EXTEND, ACCESS3_MODIFY, ACCESS3_READ, FType } from '../../nfs3/constants.js';
import type { DirEntryPlus, Fattr3, MknodType, Sattr3, WccData } from '../../nfs3/types.js';
import { AuthFlavor, type Credentials } from '../../rpc/types.js';
import { logger } from '../../util/log.js';
import { createFuse, fuseOptions, patchFgetattr, patchUtimens, releaseLoop, type FuseInstance, type FuseOps, type FuseStat, type FuseStatfs } from './binding.js';
import { errnoName, toErrno } from './errno.js';
import { fuseUnmount, mountAt, mountState } from './mountpoint.js';
import { OpenFiles, type OpenFd, type OpenFile, type WriteStats } from './open-files.js';
import { ReadAhead } from './read-ahead.js';
import { PathCache, type Dentry } from './path-cache.js';
import { S_IFBLK, S_IFCHR, S_IFIFO, S_IFREG, S_IFSOCK, fileType, foldIno, setTimeOf, toStat, toStatfs } from './stat.js';

const log = logger('fuse');
/** GVFS_TRACE=fuse: one debug line per operation, with its duration. */
const tracing = log.isLevelEnabled('debug');
const O_ACCMODE = 3;
const O_DIRECT = 0o40000;
const MiB = 1 << 20;

/** Who made a call, as FUSE knows it. */
export interface FuseCaller {
  uid: number;
  gid: number;
  pid: number;
}

export interface FuseFrontendOptions {
  /**
   * How long attributes may be served from cache (kernel and front end
   * together): a change made elsewhere is seen through the mount at most this
   * long after it happened. 0: every stat asks the backend.
   */
  attrTimeoutMs: number;
  /** The same for name → file bindings (lookups). 0: every path is looked up again. */
  entryTimeoutMs: number;
  /**
   * The credentials a call is made with. `caller` is the process that made
   * the call — undefined while the FUSE binding does not report it (the
   * current one does not), in which case the default is the mounting
   * process's own uid/gid (AUTH_SYS); the kernel still checks every caller
   * against the mode bits (default_permissions).
   */
  credentials?: (caller: FuseCaller | undefined) => Credentials;
  /** Largest write the kernel sends (big_writes); clipped to the backend's wtmax. Default 128 KiB. */
  maxWrite?: number;
  /** Largest read the kernel sends; clipped to the backend's rtmax. Default 128 KiB. */
  maxRead?: number;
  /**
   * Kernel read-ahead per file (KiB), set on the mount's bdi when we may;
   * default 256. The front end reads ahead itself (readAheadChunks), so a
   * large kernel window only adds concurrent FUSE requests: measured here,
   * 1024 KiB read ~250 MB/s where 128-256 KiB read ~320 MB/s. 0 leaves the kernel's.
   */
  readAheadKb?: number;
  /** Front-end read-ahead for sequential reads: chunks (of up to 1 MiB, the backend's rtmax) fetched ahead; default 4, 0 = off. */
  readAheadChunks?: number;
  /**
   * 0 (default): COMMIT on every close (flush), as NFS clients do: close()
   * returns when the data is durable on the server. Above 0: close() returns
   * once the server has the data (UNSTABLE), and COMMIT follows in the
   * background this many ms later (and on fsync, at the bounds, at
   * unmount); the data is kept until then and written again if the server
   * restarted. A crash of this process alone loses nothing (the server has
   * the data); a crash of both before the COMMIT can.
   */
  deferCommitMs?: number;
  /** The session's data counters (util/counters.ts): the mount counts what programs read and wrote through it. */
  counters?: DataCounters;
  /**
   * Write-behind: bytes of WRITEs per file that may be in flight while the
   * program carries on (its write() returns once the data is copied); a
   * failure is reported by the next write, or by fsync/close, as NFS clients
   * do. Default 8 MiB; 0: every write() waits for the server's reply.
   */
  writeBehindBytes?: number;
  /** Kept data of UNSTABLE writes per file before a write commits; default 64 MiB. */
  maxUncommittedFileBytes?: number;
  /** The same over all files; default 256 MiB. */
  maxUncommittedBytes?: number;
  /** Bound on cached names and on cached attributes; default 20,000 each. */
  cacheEntries?: number;
  /** READDIRPLUS reply size asked for; default 128 KiB. */
  readdirBytes?: number;
  /** Ask the backend (ACCESS) whether an existing file may be opened as asked; default true. */
  accessOnOpen?: boolean;
  /** Last-resort deadline of one FUSE operation (ms), above the backend's own deadlines; default 180 s. */
  opTimeoutMs?: number | false;
  /** Let other users use the mount (needs root or user_allow_other); default: when root. */
  allowOther?: boolean;
  /** Shown as the mount's source in /proc/mounts. */
  fsname?: string;
  /** libfuse debug output on stderr. */
  debug?: boolean;
}

export interface FuseStats extends WriteStats {
  ops: Record<string, number>;
  errors: Record<string, number>;
  reads: number;
  bytesRead: number;
  /** READ calls to the backend (fewer than `reads` when read-ahead fetches large chunks). */
  backendReads: number;
  directOpens: number;
  staleRetries: number;
  /** Lookups answered "absent" from a complete directory listing, without a call. */
  knownAbsent: number;
  /** chmod/chown that changed nothing, not sent. */
  noopSetattrs: number;
}

interface Resolved extends Dentry {
  /** Attributes fetched by this very resolution (fresh by definition). */
  attr?: Fattr3;
}

export function processCredentials(): Credentials {
  return {
    flavor: AuthFlavor.AUTH_SYS,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    gids: (process.getgroups?.() ?? []).slice(0, 16),
  };
}

const split = (p: string): { dir: string; name: string } => {
  const i = p.lastIndexOf('/');
  return { dir: i <= 0 ? '/' : p.slice(0, i), name: p.slice(i + 1) };
};
const join = (dir: string, name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);

/**
 * The FUSE front end: serves any Backend as a mounted directory, through
 * libfuse 2's path-based API (@cocalc/fuse-native).
 *
 * Contract:
 * - Paths are resolved to handles through a PathCache (names, attributes and
 *   complete directory listings, each with its time to live; 0 = always ask
 *   the backend). The kernel caches too; the TTLs are split so that together
 *   they stay within `attrTimeoutMs` / `entryTimeoutMs`.
 * - Writes go to the backend UNSTABLE, up to `writeBehindBytes` per file in
 *   flight while the program carries on (a failure surfaces at the next
 *   write, fsync or close), and are committed on close (flush), fsync and
 *   release — or `deferCommitMs` after close. Their data is kept until then
 *   and written again FILE_SYNC if the server's verifier changed (OpenFile).
 * - Sequential reads are served from 1 MiB backend reads fetched ahead
 *   (ReadAhead); reads wait for the file's writes in flight.
 * - The kernel page cache is kept (no direct_io: shared mmap works); files
 *   opened O_DIRECT are served like any other (the backend has no open
 *   flags), the kernel does the direct I/O.
 * - Every backend error becomes an errno (errno.ts); a stale handle is looked
 *   up again once by path before it collapses to EIO.
 * - The process serving a mount must never touch the mount synchronously
 *   (fs.*Sync) itself: the operation would wait for the very thread that
 *   answers it.
 */
export class FuseFrontend {
  readonly cache: PathCache;
  readonly files: OpenFiles;
  private readonly o: Required<Omit<FuseFrontendOptions, 'credentials' | 'fsname' | 'debug' | 'allowOther' | 'counters'>> & FuseFrontendOptions;
  private readonly counters = { ops: {} as Record<string, number>, errors: {} as Record<string, number>, reads: 0, bytesRead: 0, backendReads: 0, directOpens: 0, staleRetries: 0, knownAbsent: 0, noopSetattrs: 0 };
  private readonly lookups = new Map<string, Promise<Resolved>>();
  private readonly accessCache = new Map<string, { bits: number; at: number }>();
  private fuse?: FuseInstance;
  private mnt?: string;
  private nameMax = 255;
  private blksize = 128 * 1024;
  private readChunk = MiB;

  constructor(
    readonly backend: Backend,
    readonly rootFh: Buffer,
    opts: FuseFrontendOptions,
  ) {
    this.o = {
      maxWrite: 128 * 1024,
      maxRead: 128 * 1024,
      readAheadKb: 256,
      readAheadChunks: 4,
      maxUncommittedFileBytes: 64 * MiB,
      maxUncommittedBytes: 256 * MiB,
      cacheEntries: 20_000,
      readdirBytes: 128 * 1024,
      accessOnOpen: true,
      deferCommitMs: 0,
      writeBehindBytes: 8 * MiB,
      opTimeoutMs: 180_000,
      ...opts,
    };
    // Names: the kernel keeps what we hand it for its own half of the budget. Attributes: all here (attr_timeout 0).
    this.cache = new PathCache(
      { fh: rootFh, key: rootFh.toString('base64') },
      // Attributes are kept here alone (per file; see attr_timeout at mount), names half here, half in the kernel.
      { entryTtlMs: opts.entryTimeoutMs / 2, attrTtlMs: opts.attrTimeoutMs, maxEntries: this.o.cacheEntries },
    );
    this.files = new OpenFiles(backend, this.o.maxUncommittedFileBytes, this.o.maxUncommittedBytes, this.o.deferCommitMs, () => this.cred(), this.o.writeBehindBytes);
    this.files.onWrite = {
      begin: (key) => this.cache.begin(key),
      end: (key, a) => {
        // A failed WRITE may have changed the file in part: ask again.
        if (a) this.cache.wrote(key, a);
        else this.cache.dropAttr(key);
        this.cache.end(key);
      },
    };
  }

  get mountpoint(): string | undefined {
    return this.mnt;
  }

  get stats(): FuseStats {
    return { ...this.files.stats, ...this.counters, ops: { ...this.counters.ops }, errors: { ...this.counters.errors } };
  }

  private cred(): Credentials {
    return this.o.credentials ? this.o.credentials(undefined) : processCredentials();
  }

  // ---------------------------------------------------------------- mount

  /**
   * Mount at `dir`. A dead FUSE mount left there by a killed process is
   * cleared first; a live mount is refused.
   */
  async mount(dir: string): Promise<void> {
    if (this.fuse) throw new Error(`already mounted at ${this.mnt}`);
    const st = await mountState(dir);
    if (st.state === 'stale') {
      log.warn({ mountpoint: st.entry!.mountPoint }, 'clearing a mount left behind by a dead process');
      await fuseUnmount(st.entry!.mountPoint, { lazy: true });
    } else if (st.state === 'live' || st.state === 'unresponsive') {
      throw new Error(`${st.entry!.mountPoint} is already a mount point (${st.entry!.fsType} ${st.entry!.source}${st.reason ? `, not answering: ${st.reason}` : ''})`);
    }
    const cred = this.cred();
    let maxWrite = this.o.maxWrite;
    let maxRead = this.o.maxRead;
    try {
      const info = await this.backend.fsinfo(cred, this.rootFh);
      if (info.wtmax > 0) maxWrite = Math.min(maxWrite, info.wtmax);
      if (info.rtmax > 0) maxRead = Math.min(maxRead, info.rtmax);
      if (info.rtmax > 0) this.readChunk = Math.max(maxRead, Math.min(MiB, info.rtmax));
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'FSINFO failed; using default transfer sizes');
    }
    try {
      this.nameMax = (await this.backend.pathconf(cred, this.rootFh)).nameMax || 255;
    } catch {
      /* keep 255 */
    }
    maxWrite = Math.max(4096, maxWrite - (maxWrite % 4096));
    maxRead = Math.max(4096, maxRead - (maxRead % 4096));
    this.blksize = maxWrite;
    const extra = fuseOptions({
      // libfuse 2 otherwise sends 4 KiB writes.
      big_writes: true,
      max_write: maxWrite,
      max_readahead: Math.max(maxRead, this.o.readAheadKb * 1024),
      // st_ino from the backend's fileid (hard links show one inode).
      use_ino: true,
      // Keep the page cache across opens unless size/mtime changed (close-to-open).
      auto_cache: true,
      // libfuse 2's high-level API gives each name its own kernel inode: attributes the kernel kept
      // would go stale through one name after a change through another (nlink after link(), chmod).
      // Every stat comes here and is answered from the per-file cache (a local round trip, no RPC).
      attr_timeout: 0,
      entry_timeout: this.o.entryTimeoutMs / 2000,
      negative_timeout: 0,
    });
    const fsname = (this.o.fsname ?? 'gvfs').replace(/[^A-Za-z0-9._:@/+-]/g, '_');
    const mnt = st.entry?.mountPoint ?? dir;
    const fuse = createFuse(mnt, this.ops(), {
      fsname: `${fsname},${extra}`,
      subtype: 'gvfs',
      allowOther: this.o.allowOther ?? process.getuid?.() === 0,
      // The kernel checks every caller against the mode bits (the backend sees the session's credentials).
      defaultPermissions: true,
      maxRead,
      debug: this.o.debug,
      timeout: this.o.opTimeoutMs,
    });
    patchUtimens(fuse, () => log.error('utimens: the FUSE binding\'s native record is not laid out as expected; mtime falls back to atime'));
    patchFgetattr(fuse);
    await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
    this.fuse = fuse;
    this.mnt = (await mountAt(mnt))?.mountPoint ?? mnt;
    await this.tuneReadAhead();
    log.info({ mountpoint: this.mnt, maxWrite, maxRead, attrTimeoutMs: this.o.attrTimeoutMs }, 'mounted');
  }

  /** Raise the kernel's read-ahead for this mount (libfuse 2 cannot ask for more than 128 KiB). */
  private async tuneReadAhead(): Promise<void> {
    if (!this.o.readAheadKb || !this.mnt) return;
    const e = await mountAt(this.mnt);
    if (!e) return;
    const f = `/sys/class/bdi/${e.dev}/read_ahead_kb`;
    try {
      await fs.writeFile(f, String(this.o.readAheadKb));
    } catch (err) {
      log.debug({ file: f, err: (err as Error).message }, 'cannot set read-ahead (not root?)');
    }
  }

  /**
   * Unmount (lazily: programs with files still open get errors from then
   * on), then commit every write still uncommitted. Idempotent.
   */
  async unmount(): Promise<void> {
    const fuse = this.fuse;
    const mnt = this.mnt;
    this.fuse = undefined;
    if (fuse && mnt) {
      if (this.files.count > 0) log.warn({ open: this.files.count }, 'unmounting with files still open');
      if (!(await mountAt(mnt))) {
        // Unmounted from outside (gvfs umount, fusermount -u): only let go of the loop.
        releaseLoop(fuse);
      } else {
        const err = await new Promise<Error | null>((resolve) => fuse.unmount(resolve));
        if (err) {
          log.warn({ err: err.message }, 'fusermount -uz failed; trying umount -l');
          if (await mountAt(mnt)) await fuseUnmount(mnt, { lazy: true });
          releaseLoop(fuse);
        }
      }
    }
    const failed = await this.files.commitAll(this.cred());
    if (failed) throw new Error(`${failed} file(s) had writes that could not be committed at unmount`);
  }

  // ------------------------------------------------------------ plumbing

  /** Run one operation and answer libfuse: 0 / a count, or -errno. */
  private run(op: string, path: string, fn: () => Promise<number | void>, cb: (res: number) => void): void {
    this.counters.ops[op] = (this.counters.ops[op] ?? 0) + 1;
    const t0 = tracing ? performance.now() : 0;
    fn().then(
      (r) => {
        if (tracing) log.debug({ op, path, res: r ?? 0, ms: +(performance.now() - t0).toFixed(3) }, op);
        cb(r ?? 0);
      },
      (e) => {
        if (tracing) log.debug({ op, path, err: (e as Error).message, ms: +(performance.now() - t0).toFixed(3) }, op);
        const n = toErrno(e, op, path);
        const name = errnoName(n);
        this.counters.errors[name] = (this.counters.errors[name] ?? 0) + 1;
        cb(n);
      },
    );
  }

  /**
   * Retry what a server may ask to retry: a stale handle (a cached name
   * whose object was replaced elsewhere) once after forgetting the paths,
   * JUKEBOX a few times with back-off.
   */
  private async retrying<T>(paths: string[], fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if ((isFsError(e, 'STALE') || isFsError(e, 'BADHANDLE')) && attempt === 0) {
          this.counters.staleRetries++;
          for (const p of paths) this.forgetChain(p);
          log.info({ paths, code: (e as FsError).code }, 'stale handle: looking the path up again');
          continue;
        }
        if (isFsError(e, 'JUKEBOX') && attempt < 6) {
          await delay(50 * 2 ** attempt);
          continue;
        }
        throw e;
      }
    }
  }

  /** Forget `p` (and below) and the bindings of its ancestors. */
  private forgetChain(p: string): void {
    this.cache.dropTree(p);
    for (let d = split(p).dir; d !== '/'; d = split(d).dir) this.cache.dropTree(d);
  }

  /**
   * A change to a directory: if it fails (EEXIST from a name created
   * elsewhere, ...), the listing we answered "absent" from may be wrong.
   */
  private async listed<T>(dirKey: string, p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (e) {
      this.cache.dropListing(dirKey);
      throw e;
    }
  }

  private checkName(name: string): void {
    if (Buffer.byteLength(name) > this.nameMax) throw new FsError('NAMETOOLONG', `name longer than ${this.nameMax} bytes`);
  }

  /** Path → handle, from cache or by LOOKUP of each missing component (concurrent lookups of one path share a call). */
  private resolve(p: string): Promise<Resolved> {
    const hit = this.cache.entry(p);
    if (hit) return Promise.resolve(hit);
    let pending = this.lookups.get(p);
    if (!pending) {
      pending = this.lookupPath(p).finally(() => this.lookups.delete(p));
      this.lookups.set(p, pending);
    }
    return pending;
  }

  private async lookupPath(p: string): Promise<Resolved> {
    const { dir, name } = split(p);
    const parent = await this.resolve(dir);
    this.checkName(name);
    // A directory we listed completely (or made) and that nobody else changed since: no need to ask.
    if (this.cache.knownAbsent(parent.key, name)) {
      this.counters.knownAbsent++;
      throw new FsError('NOENT', `${name} is not in the directory listing`);
    }
    const t = this.cache.ticket();
    const r = await this.backend.lookup(this.cred(), parent.fh, name);
    const d = this.cache.setEntry(p, r.fh);
    const attr = r.attr && this.cache.fetched(d.key, r.attr, t);
    if (r.dirAttr) this.cache.fetched(parent.key, r.dirAttr, t);
    return { ...d, attr };
  }

  private async attrOf(d: Resolved): Promise<Fattr3> {
    const a = d.attr ?? this.cache.attr(d.key);
    if (a) return a;
    const t = this.cache.ticket();
    const fresh = await this.backend.getattr(this.cred(), d.fh);
    return this.cache.fetched(d.key, fresh, t)!;
  }

  /** stat as the kernel should see it: a size that includes writes still in flight. */
  private statOf(key: string, a: Fattr3): FuseStat {
    // A reply of our own that came in since `a` was looked up (a write that then left the in-flight list) is newer.
    const st = toStat(this.cache.peekAttr(key) ?? a, this.blksize);
    const f = this.files.file(key);
    if (f && f.inflightBytes > 0) st.size = Math.max(st.size, f.inflightEnd);
    return st;
  }

  private stat(a: Fattr3): FuseStat {
    return toStat(a, this.blksize);
  }

  private afterWcc(key: string, w: WccData | undefined): void {
    this.cache.setAttr(key, w?.after);
  }

  private async checkAccess(d: Resolved, mask: number): Promise<void> {
    const ttl = this.o.attrTimeoutMs / 2;
    // Readable by everybody (fresh attributes say so): no need to ask who we are to the server.
    const a = d.attr ?? this.cache.attr(d.key);
    if (mask === ACCESS3_READ && a && a.mode & 0o004) return;
    const c = this.accessCache.get(d.key);
    if (c && ttl > 0 && Date.now() - c.at < ttl && (c.bits & mask) === mask) return;
    const t = this.cache.ticket();
    const r = await this.backend.access(this.cred(), d.fh, mask);
    const bits = r.access;
    if (r.attr) this.cache.fetched(d.key, r.attr, t);
    if (this.accessCache.size >= this.o.cacheEntries) this.accessCache.clear();
    this.accessCache.set(d.key, { bits, at: Date.now() });
    if ((bits & mask) === mask) return;
    if (mask & (ACCESS3_MODIFY | ACCESS3_EXTEND)) {
      // ACCESS cannot say "read-only file system"; a SETATTR that changes nothing can.
      try {
        await this.backend.setattr(this.cred(), d.fh, {});
      } catch (e) {
        if (isFsError(e, 'ROFS')) throw e;
      }
    }
    throw new FsError('ACCES', 'access denied by the backend');
  }

  private async setattr(d: Resolved, attrs: Sattr3): Promise<void> {
    if (attrs.size === undefined && attrs.atime === undefined && attrs.mtime === undefined) {
      // chmod/chown to what the file already has (tar and cp -p do it for every file): nothing to send.
      const a = this.cache.attr(d.key);
      if (a && (attrs.mode === undefined || (a.mode & 0o7777) === attrs.mode) && (attrs.uid === undefined || a.uid === attrs.uid) && (attrs.gid === undefined || a.gid === attrs.gid)) {
        this.counters.noopSetattrs++;
        return;
      }
    }
    // Held until SETATTR is answered: a chunk read meanwhile (another descriptor, the kernel's read-ahead)
    // would carry the old size, and the kernel takes a short reply for the end of file.
    const release = attrs.size !== undefined ? this.files.file(d.key)?.ra?.hold() : undefined;
    try {
      // Commits (and waits for) every write before the size changes, so none lands after it.
      if (attrs.size !== undefined) await this.files.file(d.key)?.commit(this.cred());
      this.cache.begin(d.key);
      try {
        this.afterWcc(d.key, await this.backend.setattr(this.cred(), d.fh, attrs));
      } finally {
        this.cache.end(d.key);
      }
    } finally {
      release?.();
    }
    if (attrs.mode !== undefined || attrs.uid !== undefined || attrs.gid !== undefined) this.accessCache.delete(d.key);
  }

  private openFd(fd: number): OpenFd {
    return this.files.get(fd);
  }

  private async readdir(p: string): Promise<{ names: string[]; stats: FuseStat[] }> {
    const cred = this.cred();
    const d = await this.resolve(p);
    let names: string[] = [];
    let stats: FuseStat[] = [];
    let cookie = 0n;
    let verf: Buffer = Buffer.alloc(8);
    let restarts = 0;
    let plus = true;
    let dirAttr: Fattr3 | undefined;
    for (;;) {
      let page;
      const t = this.cache.ticket();
      try {
        page = plus
          ? await this.backend.readdirplus(cred, d.fh, cookie, verf, this.o.readdirBytes / 2, this.o.readdirBytes)
          : await this.backend.readdir(cred, d.fh, cookie, verf, this.o.readdirBytes);
      } catch (e) {
        if (plus && isFsError(e, 'NOTSUPP')) {
          plus = false;
          continue;
        }
        if (isFsError(e, 'BAD_COOKIE') && restarts++ < 2) {
          // The directory changed under the listing: start again.
          names = [];
          stats = [];
          dirAttr = undefined;
          cookie = 0n;
          verf = Buffer.alloc(8);
          continue;
        }
        throw e;
      }
      if (page.dirAttr) this.cache.fetched(d.key, page.dirAttr, t);
      dirAttr = page.dirAttr;
      for (const e of page.entries as DirEntryPlus[]) {
        names.push(e.name);
        if (e.attr) stats.push(this.stat(e.attr));
        else stats.push({ mode: 0, uid: 0, gid: 0, size: 0, dev: 0, nlink: 1, ino: foldIno(e.fileid), rdev: 0, blksize: 0, blocks: 0, atime: 0, mtime: 0, ctime: 0 });
        if (e.fh && e.name !== '.' && e.name !== '..') {
          const c = this.cache.setEntry(join(p, e.name), e.fh);
          if (e.attr) this.cache.fetched(c.key, e.attr, t);
        }
        cookie = e.cookie;
      }
      verf = page.verf;
      if (page.eof) break;
      if (page.entries.length === 0) throw new FsError('IO', 'READDIR made no progress');
    }
    this.cache.setListing(d.key, names, dirAttr);
    return { names, stats };
  }

  private async open(p: string, flags: number): Promise<number> {
    const cred = this.cred();
    const d = await this.retrying([p], () => this.resolve(p));
    const acc = flags & O_ACCMODE;
    let writable = acc !== F.O_RDONLY;
    if (flags & O_DIRECT) this.counters.directOpens++;
    if (this.o.accessOnOpen) {
      const mask = acc === F.O_RDONLY ? ACCESS3_READ : acc === F.O_WRONLY ? ACCESS3_MODIFY | ACCESS3_EXTEND : ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND;
      try {
        await this.retrying([p], async () => this.checkAccess(await this.resolve(p), mask));
      } catch (e) {
        // O_RDWR on a read-only export: opened for reading only, every write through it EROFS. QEMU opens a
        // golden RAM file O_RDWR to map it private (copy-on-write); nothing it does writes the file.
        if (acc !== F.O_RDWR || flags & F.O_TRUNC || !isFsError(e, 'ROFS')) throw e;
        await this.retrying([p], async () => this.checkAccess(await this.resolve(p), ACCESS3_READ));
        writable = false;
      }
    }
    if (flags & F.O_TRUNC && writable) {
      const release = this.files.file(d.key)?.ra?.hold();
      try {
        await this.files.file(d.key)?.commit(cred);
        this.cache.begin(d.key);
        try {
          this.afterWcc(d.key, await this.backend.setattr(cred, d.fh, { size: 0 }));
        } finally {
          this.cache.end(d.key);
        }
      } finally {
        release?.();
      }
    }
    return this.files.open(d.fh, d.key, { append: !!(flags & F.O_APPEND), writable }).fd;
  }

  private async create(p: string, mode: number): Promise<number> {
    const cred = this.cred();
    const { dir, name } = split(p);
    this.checkName(name);
    const parent = await this.retrying([dir], () => this.resolve(dir));
    // GUARDED: the kernel sends CREATE only for a name it found absent, and
    // O_EXCL must fail if another client created it meanwhile.
    const r = await this.listed(parent.key, this.backend.create(cred, parent.fh, name, { mode: 'guarded', attrs: { mode: mode & 0o7777 } }));
    const fh = r.fh ?? (await this.backend.lookup(cred, parent.fh, name)).fh;
    const d = this.cache.setEntry(p, fh);
    this.cache.setAttr(d.key, r.attr);
    this.cache.dirChanged(parent.key, r.dirWcc, name);
    this.afterWcc(parent.key, r.dirWcc);
    return this.files.open(fh, d.key, { append: false, writable: true }).fd;
  }

  private async read(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const file = this.openFd(fd).file;
    // Reads see every write made before them.
    if (file.inflightBytes > 0) await file.settle();
    let ra = file.ra as ReadAhead | undefined;
    if (!ra) {
      ra = new ReadAhead(
        { chunk: this.readChunk, window: this.o.readAheadChunks, trigger: 256 * 1024, maxAgeMs: Math.max(this.o.attrTimeoutMs / 2, 200) },
        (off, n) => this.readRange(file, off, n),
      );
      file.ra = ra;
    }
    const data = this.o.readAheadChunks > 0 ? await ra.read(pos, len) : (await this.readRange(file, pos, len)).data;
    data.copy(buf, 0, 0, Math.min(len, data.length));
    this.counters.reads++;
    this.counters.bytesRead += Math.min(len, data.length);
    if (this.o.counters) this.o.counters.programReadBytes += Math.min(len, data.length);
    return Math.min(len, data.length);
  }

  /** `count` bytes at `offset` (fewer only at end of file): a short reply is only a server's transfer limit. */
  private async readRange(file: OpenFile, offset: number, count: number): Promise<{ data: Buffer; eof: boolean }> {
    const cred = this.cred();
    const parts: Buffer[] = [];
    let done = 0;
    let eof = false;
    while (done < count) {
      const t = this.cache.ticket();
      const r = await this.backend.read(cred, file.fh, offset + done, count - done);
      const n = Math.min(r.data.length, count - done);
      if (n > 0) parts.push(n === r.data.length ? r.data : r.data.subarray(0, n));
      done += n;
      if (r.attr) this.cache.fetched(file.key, r.attr, t);
      this.counters.backendReads++;
      if (r.eof || n === 0) {
        eof = true;
        break;
      }
    }
    return { data: parts.length === 1 ? parts[0] : Buffer.concat(parts, done), eof };
  }

  private async write(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const o = this.openFd(fd);
    // Only an O_RDWR open of a file on a read-only export is not writable (the kernel refuses writes to O_RDONLY ones).
    if (!o.writable) throw new FsError('ROFS', 'read-only export');
    let off = pos;
    if (o.append) {
      // The kernel computed the offset from the size it knows; never append below the size we know.
      const a = this.cache.peekAttr(o.file.key);
      if (a && a.size > off) off = a.size;
    }
    if (o.append) off = Math.max(off, o.file.inflightEnd);
    await o.file.write(this.cred(), off, buf.subarray(0, len), this.o.writeBehindBytes > 0);
    if (this.o.counters) this.o.counters.programWriteBytes += len;
    return len;
  }

  private async commitFd(fd: number): Promise<void> {
    const o = this.openFd(fd);
    const t = this.cache.ticket();
    const after = await this.files.sync(this.cred(), fd);
    if (after) this.cache.fetched(o.file.key, after, t);
  }

  private async flushFd(fd: number): Promise<void> {
    const t = this.cache.ticket();
    const after = await this.files.flush(this.cred(), fd);
    if (after) this.cache.fetched(this.openFd(fd).file.key, after, t);
  }

  private async mknod(p: string, mode: number, dev: number): Promise<void> {
    const cred = this.cred();
    const { dir, name } = split(p);
    this.checkName(name);
    const parent = await this.retrying([dir], () => this.resolve(dir));
    const attrs = { mode: mode & 0o7777 };
    const t = fileType(mode);
    let r;
    if (t === S_IFREG || t === 0) {
      r = await this.listed(parent.key, this.backend.create(cred, parent.fh, name, { mode: 'guarded', attrs }));
    } else {
      let what: MknodType;
      if (t === S_IFIFO) what = { type: FType.FIFO, attrs };
      else if (t === S_IFSOCK) what = { type: FType.SOCK, attrs };
      else if (t === S_IFCHR || t === S_IFBLK) {
        const rdev = { major: (dev >>> 8) & 0xfff, minor: (dev & 0xff) | ((dev >>> 12) & 0xfff00) };
        what = { type: t === S_IFCHR ? FType.CHR : FType.BLK, attrs, rdev };
      } else throw new FsError('INVAL', `mknod of type ${t.toString(8)}`);
      r = await this.listed(parent.key, this.backend.mknod(cred, parent.fh, name, what));
    }
    if (r.fh) this.cache.setAttr(this.cache.setEntry(p, r.fh).key, r.attr);
    this.cache.dirChanged(parent.key, r.dirWcc, name);
    this.afterWcc(parent.key, r.dirWcc);
  }

  private async remove(p: string, dir: boolean): Promise<void> {
    const { dir: d, name } = split(p);
    const parent = await this.retrying([d], () => this.resolve(d));
    const old = this.cache.peekEntry(p);
    const w = dir ? await this.backend.rmdir(this.cred(), parent.fh, name) : await this.backend.remove(this.cred(), parent.fh, name);
    this.cache.dropTree(p);
    if (old) {
      this.cache.dropAttr(old.key);
      this.cache.dropListing(old.key);
    }
    this.cache.dirChanged(parent.key, w, undefined, name);
    this.afterWcc(parent.key, w);
  }

  private async rename(src: string, dst: string): Promise<void> {
    const a = split(src);
    const b = split(dst);
    this.checkName(b.name);
    const [from, to] = await this.retrying([a.dir, b.dir], () => Promise.all([this.resolve(a.dir), this.resolve(b.dir)]));
    // Two names of one file (hard links): POSIX says rename does nothing and succeeds. The kernel
    // looked both names up just before, so this is (nearly always) answered from the cache.
    const [moved, replaced] = await Promise.all([src, dst].map((p) => this.resolve(p).catch(() => undefined)));
    if (moved && replaced && moved.key === replaced.key) return;
    const r = await this.listed(to.key, this.backend.rename(this.cred(), from.fh, a.name, to.fh, b.name));
    this.cache.dropTree(src);
    this.cache.dropTree(dst);
    if (replaced) this.cache.dropAttr(replaced.key);
    if (moved) {
      // Handles survive a rename; the ctime does not.
      this.cache.dropAttr(moved.key);
      this.cache.setEntry(dst, moved.fh);
    }
    if (to.key === from.key) this.cache.dirChanged(from.key, r.toWcc ?? r.fromWcc, b.name, a.name);
    else {
      this.cache.dirChanged(from.key, r.fromWcc, undefined, a.name);
      this.cache.dirChanged(to.key, r.toWcc, b.name);
    }
    this.afterWcc(from.key, r.fromWcc);
    if (to.key !== from.key) this.afterWcc(to.key, r.toWcc);
  }

  private async link(src: string, dst: string): Promise<void> {
    const b = split(dst);
    this.checkName(b.name);
    const [s, dir] = await this.retrying([src, b.dir], () => Promise.all([this.resolve(src), this.resolve(b.dir)]));
    const r = await this.listed(dir.key, this.backend.link(this.cred(), s.fh, dir.fh, b.name));
    this.cache.setEntry(dst, s.fh);
    this.cache.setAttr(s.key, r.attr);
    this.cache.dirChanged(dir.key, r.dirWcc, b.name);
    this.afterWcc(dir.key, r.dirWcc);
  }

  private async mkdirOrSymlink(
    p: string,
    isDir: boolean,
    make: (dir: Buffer, name: string) => Promise<{ fh?: Buffer; attr?: Fattr3; dirWcc: WccData }>,
  ): Promise<void> {
    const { dir, name } = split(p);
    this.checkName(name);
    const parent = await this.retrying([dir], () => this.resolve(dir));
    const r = await this.listed(parent.key, make(parent.fh, name));
    if (r.fh) {
      const d = this.cache.setEntry(p, r.fh);
      this.cache.setAttr(d.key, r.attr);
      // A directory just made is known to be empty.
      if (isDir) this.cache.setListing(d.key, [], r.attr);
    }
    this.cache.dirChanged(parent.key, r.dirWcc, name);
    this.afterWcc(parent.key, r.dirWcc);
  }

  /** setattr by path, with the stale-handle retry. */
  private async setattrPath(p: string, attrs: Sattr3): Promise<void> {
    await this.retrying([p], async () => this.setattr(await this.resolve(p), attrs));
  }

  // ------------------------------------------------------------ the table

  private ops(): FuseOps {
    const cred = () => this.cred();
    return {
      init: (cb) => cb(0),
      getattr: (p, cb) => {
        let st: FuseStat | undefined;
        this.run('getattr', p, async () => {
          const d = await this.retrying([p], async () => {
            const r = await this.resolve(p);
            return { key: r.key, a: await this.attrOf(r) };
          });
          st = this.statOf(d.key, d.a);
        }, (res) => cb(res, st));
      },
      fgetattr: (p, fd, cb) => {
        let st: FuseStat | undefined;
        this.run('fgetattr', p, async () => {
          const f = this.files.get(fd).file;
          st = this.statOf(f.key, await this.attrOf({ fh: f.fh, key: f.key }));
        }, (res) => cb(res, st));
      },
      readdir: (p, cb) => {
        let out: { names: string[]; stats: FuseStat[] } | undefined;
        this.run('readdir', p, async () => {
          out = await this.retrying([p], () => this.readdir(p));
        }, (res) => (res < 0 ? cb(res) : cb(0, out!.names, out!.stats)));
      },
      open: (p, flags, cb) => {
        let fd = 0;
        this.run('open', p, async () => {
          fd = await this.open(p, flags);
        }, (res) => cb(res, fd));
      },
      create: (p, mode, cb) => {
        let fd = 0;
        this.run('create', p, async () => {
          fd = await this.create(p, mode);
        }, (res) => cb(res, fd));
      },
      read: (p, fd, buf, len, pos, cb) => this.run('read', p, () => this.read(fd, buf, len, pos), cb),
      write: (p, fd, buf, len, pos, cb) => this.run('write', p, () => this.write(fd, buf, len, pos), cb),
      flush: (p, fd, cb) => this.run('flush', p, () => this.flushFd(fd), cb),
      fsync: (p, _datasync, fd, cb) => this.run('fsync', p, () => this.commitFd(fd), cb),
      release: (p, fd, cb) => this.run('release', p, () => this.files.release(cred(), fd), cb),
      truncate: (p, size, cb) => this.run('truncate', p, () => this.setattrPath(p, { size }), cb),
      ftruncate: (p, fd, size, cb) =>
        this.run('ftruncate', p, async () => {
          const f = this.files.get(fd).file;
          await this.setattr({ fh: f.fh, key: f.key }, { size });
        }, cb),
      unlink: (p, cb) => this.run('unlink', p, () => this.remove(p, false), cb),
      rmdir: (p, cb) => this.run('rmdir', p, () => this.remove(p, true), cb),
      rename: (src, dst, cb) => this.run('rename', src, () => this.rename(src, dst), cb),
      link: (src, dst, cb) => this.run('link', dst, () => this.link(src, dst), cb),
      symlink: (target, p, cb) => this.run('symlink', p, () => this.mkdirOrSymlink(p, false, (dir, name) => this.backend.symlink(cred(), dir, name, target, {})), cb),
      mkdir: (p, mode, cb) => this.run('mkdir', p, () => this.mkdirOrSymlink(p, true, (dir, name) => this.backend.mkdir(cred(), dir, name, { mode: mode & 0o7777 })), cb),
      mknod: (p, mode, dev, cb) => this.run('mknod', p, () => this.mknod(p, mode, dev), cb),
      readlink: (p, cb) => {
        let target = '';
        this.run('readlink', p, async () => {
          target = (await this.retrying([p], async () => this.backend.readlink(cred(), (await this.resolve(p)).fh))).path;
        }, (res) => (res < 0 ? cb(res) : cb(0, target)));
      },
      chmod: (p, mode, cb) => this.run('chmod', p, () => this.setattrPath(p, { mode: mode & 0o7777 }), cb),
      chown: (p, uid, gid, cb) => {
        const attrs: Sattr3 = {};
        if (uid !== 0xffffffff && uid !== -1) attrs.uid = uid;
        if (gid !== 0xffffffff && gid !== -1) attrs.gid = gid;
        this.run('chown', p, () => this.setattrPath(p, attrs), cb);
      },
      utimens: (p, atime, mtime, cb) => this.run('utimens', p, () => this.setattrPath(p, { atime: setTimeOf(atime), mtime: setTimeOf(mtime) }), cb),
      statfs: (p, cb) => {
        let st: FuseStatfs | undefined;
        this.run('statfs', p, async () => {
          st = toStatfs(await this.backend.fsstat(cred(), this.rootFh), this.nameMax);
        }, (res) => cb(res, st));
      },
    };
  }
}
