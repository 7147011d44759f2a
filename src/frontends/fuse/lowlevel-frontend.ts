import { constants as F } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import type { Backend } from '../../backend/backend.js';
import { heldAnswersOf, inSecondHalf, invalidationsOf, localReadsOf, wholeFilesOf, type HeldAnswers, type Invalidated, type LocalRead, type LocalReads } from '../../backend/capabilities.js';
import { FsError, isFsError } from '../../backend/errors.js';
import { fuseLl, type LlDirEntry, type LlEntry, type LlRequest, type LlSession } from '../../native/fuse-ll.js';
import { ACCESS3_EXTEND, ACCESS3_MODIFY, ACCESS3_READ, ACCESS3_EXECUTE, ACCESS3_LOOKUP, FType } from '../../nfs3/constants.js';
import type { DirEntryPlus, Fattr3, MknodType, NewObject, Sattr3, WccData } from '../../nfs3/types.js';
import { credKey, type Credentials } from '../../rpc/types.js';
import type { DataCounters } from '../../util/counters.js';
import { logger } from '../../util/log.js';
import { errnoName, toErrno } from './errno.js';
import { fromNs, SET_SIZE, toLlAttr, toLlStatfs, toSattr, typeBits } from './lowlevel-attr.js';
import { Callers, type CallerPolicy, type LlCaller } from './lowlevel-callers.js';
import { Inodes, ROOT_ID, type Node } from './lowlevel-inodes.js';
import { fuseUnmount, isFuse, mountAt, mountState, type MountEntry } from './mountpoint.js';
import { OpenFiles, type OpenFile, type Owed, type WriteStats } from './open-files.js';
import { Passthrough } from './passthrough.js';
import { ReadAhead } from './read-ahead.js';
import { DirListings, sameTimes } from './dir-listings.js';

const log = logger('fuse');
/** GVFS_TRACE=fuse: one debug line per operation, with its duration. */
const tracing = log.isLevelEnabled('debug');
const E = os.constants.errno;
const O_ACCMODE = 3;
const O_DIRECT = 0o40000;
const MiB = 1 << 20;
const S_IFMT = 0o170000;
const RENAME_NOREPLACE = 1;

export interface LowLevelOptions {
  /**
   * The one budget for cached attributes and names: the kernel gets each
   * answer with what is left of it (entry and attribute timeouts together
   * never exceed it); a GETATTR the kernel repeats after a change of its own
   * is answered from the backend's last answer with what is left of the
   * budget (cachedFor), never a fresh one. A change
   * made elsewhere shows through the mount at most this long after it
   * happened. 0: the kernel asks every time. Over a layer that holds
   * answers (HeldAnswers), that layer's budgets as they are now stand in
   * for it: a live change of the cache's timeout is the mount's.
   */
  attrTimeoutMs: number;
  /** Who each caller is to the backend (lowlevel-callers.ts). Default: each caller as itself. */
  callers?: CallerPolicy;
  /** Credentials for what no caller asked for (deferred COMMITs, unmount). Default: this process's. */
  background: Credentials;
  /** Largest read/write the kernel sends; clipped to the backend's rtmax/wtmax. Default 1 MiB. */
  maxWrite?: number;
  maxRead?: number;
  /**
   * Kernel read-ahead per file (KiB), set on the mount's bdi when we may (root). Default 4096 over a
   * backend with local reads (a disk cache: reads answered from its files, and the kernel's window is
   * what keeps several in flight; a 1 GiB cached file, page cache dropped, read at 1.7-2.3 GB/s against
   * ~1.0 at 256 KiB), else 256: the front end reads ahead itself (readAheadChunks), so a large kernel
   * window only adds concurrent FUSE requests (measured on the libfuse 2 front end: 1024 KiB read ~250
   * MB/s, 128-256 KiB ~320 MB/s).
   */
  readAheadKb?: number;
  /**
   * Answer reads the backend has in local files (the disk cache's blocks)
   * from those files, spliced by the native layer on its own threads, never
   * through JS memory (backend/capabilities.ts LocalReads). Default true;
   * false: every read through the backend's read.
   */
  localReads?: boolean;
  /**
   * Mount read-only (the kernel refuses every change with EROFS). Then opens
   * of files the backend holds whole in a local file pass through to it
   * (passthrough.ts), where the kernel allows FUSE passthrough. Default false.
   */
  readOnly?: boolean;
  /** With readOnly: hand opens to the backend's whole local files (default true); false: every read through the mount. */
  passthrough?: boolean;
  /** Front-end read-ahead chunks (of up to 1 MiB); default 4, 0 = off. */
  readAheadChunks?: number;
  /**
   * 0: close waits for COMMIT (as NFS clients do). N > 0: close returns once
   * the server has the data; COMMIT follows N ms later (fsync still commits).
   */
  deferCommitMs?: number;
  /** Write-behind bytes per file; default 8 MiB; 0: each write waits for its reply. */
  writeBehindBytes?: number;
  maxUncommittedFileBytes?: number;
  maxUncommittedBytes?: number;
  /** ACCESS the backend on open (root squash, ACLs the mode bits do not show); default true. */
  accessOnOpen?: boolean;
  /**
   * Owe SETATTRs the server cannot refuse until the file's close (OpenFile.owe); default true. Off when the
   * stack below journals them (a write-back cache): there each is durable when it is answered, which an owed
   * one, kept in this process until it is sent, is not.
   */
  oweSetattrs?: boolean;
  /** Last-resort deadline of one request (ms); default 180 s. */
  opTimeoutMs?: number | false;
  /** Mount option allow_other: other local users may use the mount (each still checked as itself). Default false. */
  allowOther?: boolean;
  /** Mount option default_permissions: the kernel checks mode bits for every caller. Default true. */
  defaultPermissions?: boolean;
  fsname?: string;
  counters?: DataCounters;
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
  knownAbsent: number;
  /** GETATTRs answered from attributes the backend gave within the budget, nothing of ours having changed the file since. */
  attrHits: number;
  /** LOOKUPs of absent names answered with a negative entry the kernel keeps (for what is left of --attr-timeout). */
  negativeEntries: number;
  /** Opens handed to a local file (passthrough.ts), and those of them that read an older version than the server's. */
  passthroughOpens: number;
  passthroughStaleOpens: number;
}

/** A directory handle: the listing read at offset 0, served in pages to the kernel. */
interface DirHandle {
  node: Node;
  /** `type` unknown (DT_UNKNOWN) when the backend listed without attributes. */
  entries?: Array<{ name: string; fileid: bigint; type?: FType; fh?: Buffer; attr?: Fattr3 }>;
}

/**
 * The FUSE front end on libfuse 3's low-level API (native/src/fuse_ll.c):
 * serves any Backend as a mounted directory.
 *
 * Contract:
 * - Node ids are file identities (Inodes: keyed by handle): every name of a
 *   hard-linked file is one kernel inode.
 * - Every request runs as its caller (Callers): AUTH_SYS of the caller for
 *   plain NFS, the session's mapping for GVFS sessions.
 * - Attributes and names are cached by the kernel, for what is left of
 *   the budget (`attrTimeoutMs`, or the budgets of a cache below as they
 *   are now) since the server said them (HeldAnswers: a cache below
 *   may have held them a while), at most half of it when the layer below
 *   renews answers ahead; the kernel's own re-asks
 *   (GETATTR after a chown's suid check, a create in the directory, a read's
 *   atime) are answered from that answer while nothing of ours changed the
 *   file, with what is left of the same budget.
 *   Times cross in nanoseconds both ways; SETATTR honours UTIME_OMIT/NOW.
 * - SETATTRs the server cannot refuse, made by the creator of a file this
 *   mount created and still has open (tar's utimens, chown to the owner it
 *   has, chmod), are answered at once and sent merged with the file's close,
 *   fsync or next use (OpenFile.owe); other SETATTRs are sent at once.
 * - The kernel is told (inval_inode, attributes only) when a file's size or
 *   mtime changed under it and no reply of ours carries the news, and after
 *   our own truncates. Pages never: the kernel drops them itself when the
 *   attributes it fetches next differ (FUSE_CAP_AUTO_INVAL_DATA); a page
 *   invalidation could sleep on a page lock held by a read that waits for
 *   us, and after a kill -9 hang the connection for good (fuse_ll.c).
 * - Writes, commits and reads go through OpenFiles / ReadAhead:
 *   write-behind with failures latched for every
 *   descriptor's next fsync and close (a read-only descriptor's close is
 *   not sent here: FOPEN_NOFLUSH), deferred commit, sequential
 *   read-ahead in 1 MiB backend reads.
 * - The process serving a mount must never touch it synchronously.
 */
export class LowLevelFrontend {
  readonly files: OpenFiles;
  readonly inodes: Inodes;
  private readonly callers: Callers;
  private readonly o: Required<Omit<LowLevelOptions, 'callers' | 'fsname' | 'debug' | 'counters'>> & LowLevelOptions;
  private readonly counters = { ops: {} as Record<string, number>, errors: {} as Record<string, number>, reads: 0, bytesRead: 0, backendReads: 0, localReads: 0, localRetries: 0, directOpens: 0, staleRetries: 0, knownAbsent: 0, attrHits: 0, negativeEntries: 0 };
  /** Reads answered from local files, spliced by the native layer (backend/capabilities.ts LocalReads). */
  private readonly local?: LocalReads;
  /** Opens handed to local files (read-only mounts over a backend with WholeFiles). */
  private readonly pt?: Passthrough;
  /** What the backend answers from what it holds (a disk cache below): the kernel's budgets count from when the server said it. */
  private readonly held?: HeldAnswers;
  /** Local reads turned off: the cache's files cannot be spliced from (EINVAL). */
  private localOff = false;
  private readonly dirs = new Map<number, DirHandle>();
  private nextDir = 1;
  private readonly fdCred = new Map<number, Credentials>();
  private readonly accessCache = new Map<string, { bits: number; at: number }>();
  /** Directories whose every name we know (made or listed by us): absent names answered without a LOOKUP. */
  private readonly listings: DirListings;
  /**
   * Bumped when a change of ours may change attributes of files we cannot name (unlink, rmdir, rename and
   * link change a file's nlink and ctime), or when the cache below drops everything: no attributes said
   * before are served again (cachedFor).
   */
  private epoch = 0;
  private session?: LlSession;
  private mnt?: string;
  private exited = false;
  private nameMax = 255;
  private blksize = MiB;
  private readChunk = MiB;

  constructor(
    readonly backend: Backend,
    readonly rootFh: Buffer,
    opts: LowLevelOptions,
  ) {
    this.local = opts.localReads === false ? undefined : localReadsOf(backend);
    this.held = heldAnswersOf(backend);
    const whole = opts.readOnly && opts.passthrough !== false ? wholeFilesOf(backend) : undefined;
    if (whole) this.pt = new Passthrough(whole, () => this.session);
    this.o = {
      maxWrite: MiB,
      readAheadKb: this.local ? 4096 : 256,
      maxRead: MiB,
      localReads: true,
      readAheadChunks: 4,
      maxUncommittedFileBytes: 64 * MiB,
      maxUncommittedBytes: 256 * MiB,
      accessOnOpen: true,
      oweSetattrs: true,
      deferCommitMs: 0,
      writeBehindBytes: 8 * MiB,
      opTimeoutMs: 180_000,
      allowOther: false,
      defaultPermissions: true,
      readOnly: false,
      passthrough: true,
      ...opts,
    };
    this.callers = new Callers(opts.callers ?? { kind: 'each' });
    this.listings = new DirListings(() => this.nameBudget());
    this.inodes = new Inodes(rootFh);
    this.files = new OpenFiles(backend, this.o.maxUncommittedFileBytes, this.o.maxUncommittedBytes, this.o.deferCommitMs, () => this.o.background, this.o.writeBehindBytes);
    this.files.onWrite = {
      begin: (key) => {
        const n = this.inodes.peekKey(key);
        if (n) n.writing = (n.writing ?? 0) + 1;
        if (n) this.changing(n);
      },
      // Our own write's attributes: what the next fresh attributes are compared with (not a change from elsewhere).
      end: (key, a) => {
        const n = this.inodes.peekKey(key);
        if (!n) return;
        n.writing = Math.max(0, (n.writing ?? 1) - 1);
        // Replies of concurrent writes come back in any order: their mtimes are not served (cachedFor).
        n.said = undefined;
        n.writes = (n.writes ?? 0) + 1;
        if (a) this.ownReply(n, a);
      },
    };
    this.files.onOwed = (key, a) => {
      const n = this.inodes.peekKey(key);
      if (!n) return;
      if (a) return this.ownReply(n, a);
      // Refused after all: what the kernel was told goes, and the server's attributes show.
      this.changing(n);
      void this.invalidate(n);
    };
  }

  get mountpoint(): string | undefined {
    return this.mnt;
  }

  /** major:minor of the mount this front end made (from /proc/self/mountinfo), while known. */
  get mountDev(): string | undefined {
    return this.dev;
  }

  private dev?: string;

  private endedNow!: () => void;
  /**
   * Resolves when the session ends while mounted, not by unmount(): unmounted or aborted from outside, or
   * reading /dev/fuse failed. The path may still show our mount then (aborted): the owner unmounts.
   */
  readonly ended = new Promise<void>((resolve) => (this.endedNow = resolve));

  /** Whether the top mount at `dir` is the one this front end made: another mount there is never ours to detach. */
  async oursAt(dir: string): Promise<boolean> {
    const e = await mountAt(dir);
    return !!e && this.dev !== undefined && e.dev === this.dev;
  }

  get stats(): FuseStats & { nodes: number } {
    return { ...this.files.stats, ...this.counters, ...(this.pt?.counts ?? { passthroughOpens: 0, passthroughStaleOpens: 0 }), ops: { ...this.counters.ops }, errors: { ...this.counters.errors }, nodes: this.inodes.size };
  }

  // ---------------------------------------------------------------- mount

  /** Mount at `dir`; a dead FUSE mount left there is cleared first, a live one refused. */
  async mount(dir: string): Promise<void> {
    if (this.session) throw new Error(`already mounted at ${this.mnt}`);
    const st = await mountState(dir);
    if (st.state === 'stale') {
      log.warn({ mountpoint: st.entry!.mountPoint }, 'clearing a mount left behind by a dead process');
      await fuseUnmount(st.entry!.mountPoint, { lazy: true });
    } else if (st.state === 'live' || st.state === 'unresponsive') {
      throw new Error(`${st.entry!.mountPoint} is already a mount point (${st.entry!.fsType} ${st.entry!.source}${st.reason ? `, not answering: ${st.reason}` : ''})`);
    }
    const cred = this.o.background;
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
    const fsname = (this.o.fsname ?? 'gvfs').replace(/[^A-Za-z0-9._:@/+-]/g, '_');
    const opts = [`fsname=${fsname}`, 'subtype=gvfs', `max_read=${maxRead}`];
    if (this.o.allowOther) opts.push('allow_other');
    if (this.o.defaultPermissions) opts.push('default_permissions');
    if (this.o.readOnly) opts.push('ro');
    const mnt = st.entry?.mountPoint ?? dir;
    this.session = fuseLl().mount(mnt, opts.join(','), maxWrite, maxRead, Math.max(maxRead, this.o.readAheadKb * 1024), (r) => this.dispatch(r), !!this.o.debug, !!this.pt);
    const made = await mountAt(mnt);
    this.mnt = made?.mountPoint ?? mnt;
    // Which mount at that path is ours: unmount and the CLI's watch act on that one only (see unmount).
    this.dev = made && isFuse(made) ? made.dev : undefined;
    await this.tuneReadAhead(made);
    // What the cache below drops because the file changed elsewhere (a poll, an order of the session service),
    // the kernel drops too: pages and attributes of that inode, or of every inode.
    this.unsubscribe = invalidationsOf(this.backend)?.onInvalidate((what) => this.dropKernelCaches(what));
    log.info({ mountpoint: this.mnt, maxWrite, maxRead, attrTimeoutMs: this.o.attrTimeoutMs, api: 'libfuse3 low-level' }, 'mounted');
  }

  /** `e`: the mount just made, as mountinfo shows it. */
  private async tuneReadAhead(e: MountEntry | undefined): Promise<void> {
    if (!this.o.readAheadKb || !e) return;
    const f = `/sys/class/bdi/${e.dev}/read_ahead_kb`;
    try {
      await fs.writeFile(f, String(this.o.readAheadKb));
    } catch (err) {
      log.debug({ file: f, err: (err as Error).message }, 'cannot set read-ahead (not root?)');
    }
  }

  private unsubscribe?: () => void;

  private dropKernelCaches(what: Invalidated): void {
    // Before the kernel hears of it: its next GETATTR must not be answered from what we knew.
    if (what === 'all') {
      this.epoch++;
      this.listings.clear();
    }
    const nodes = what === 'all' ? [...this.inodes.nodes()] : [this.inodes.peek(what)].filter((n): n is Node => !!n);
    if (what !== 'all')
      for (const n of nodes) {
        this.changing(n);
        this.listings.drop(n.key);
      }
    for (const n of nodes)
      void this.invalidate(n).then((r) => {
        if (r < 0 && r !== -E.ENOENT) log.debug({ node: n.id, res: r }, 'kernel invalidation refused');
      });
  }

  /**
   * Unmount lazily (works with a dead backend and files still open), then commit what is kept. Idempotent.
   * The session is destroyed and what is kept is committed even when the unmount fails: the writes and
   * owed SETATTRs still held here were acknowledged to programs, and the failure is thrown only after.
   */
  async unmount(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    const s = this.session;
    this.session = undefined;
    let unmountFailed: unknown;
    if (s) {
      if (this.files.count > 0) log.warn({ open: this.files.count }, 'unmounting with files still open');
      const ll = fuseLl();
      try {
        if (!this.exited) {
          const r = await ll.unmount(s);
          if (r === 1) log.warn({ mountpoint: this.mnt }, 'unmount: the mount at the path is not ours any more (detached from outside, another made there): left alone');
          else if (r !== 0) log.warn({ res: r }, 'unmount: libfuse reported a failure');
          if (r !== 1 && this.mnt && (await this.oursAt(this.mnt))) await fuseUnmount(this.mnt, { lazy: true });
        }
      } catch (e) {
        unmountFailed = e;
        log.error({ mountpoint: this.mnt, err: e }, 'unmount failed; committing what is held all the same');
      } finally {
        ll.destroy(s);
      }
    }
    const failed = await this.files.commitAll(this.o.background);
    if (unmountFailed) throw unmountFailed;
    if (failed) throw new Error(`${failed} file(s) had writes that could not be committed at unmount`);
  }

  /**
   * Tell the kernel a node's attributes are stale: its next use fetches them,
   * and drops the cached pages if size or mtime differ. Never blocks on the
   * kernel's page locks (see fuse_ll.c), so it may be awaited anywhere.
   */
  invalidate(n: Node): Promise<number> {
    if (!this.session || this.exited) return Promise.resolve(-E.ENOTCONN);
    return fuseLl().invalInode(this.session, n.id);
  }

  // ---------------------------------------------------------------- plumbing

  private dispatch(r: LlRequest): void {
    if (r.op === 'forget') {
      this.inodes.forget(r.ino, r.nlookup ?? 1);
      return;
    }
    if (r.op === 'exited') {
      this.exited = true;
      if (this.session) {
        log.warn({ mountpoint: this.mnt }, 'the FUSE session ended (unmounted or aborted from outside, or /dev/fuse failed)');
        this.endedNow();
      }
      return;
    }
    const req = r.req!;
    const op = r.op;
    this.counters.ops[op] = (this.counters.ops[op] ?? 0) + 1;
    const t0 = tracing ? performance.now() : 0;
    let done = false;
    const ll = fuseLl();
    let timer: NodeJS.Timeout | undefined;
    const fail = (e: unknown) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      const n = this.errnoOf(e, op, r);
      const name = errnoName(n);
      this.counters.errors[name] = (this.counters.errors[name] ?? 0) + 1;
      if (tracing) log.debug({ op, ino: r.ino, name: r.name, err: name, ms: +(performance.now() - t0).toFixed(3) }, op);
      ll.replyErr(req, -n);
    };
    const reply = (fn: () => void) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      if (tracing) log.debug({ op, ino: r.ino, name: r.name, ms: +(performance.now() - t0).toFixed(3) }, op);
      fn();
    };
    if (this.o.opTimeoutMs) {
      timer = setTimeout(() => fail(new FsError('IO', `${op} took longer than ${this.o.opTimeoutMs} ms`)), this.o.opTimeoutMs);
      timer.unref();
    }
    this.handle(r, reply).catch(fail);
  }

  private errnoOf(e: unknown, op: string, r: LlRequest): number {
    // The kernel retries a path walk once on ESTALE (LOOKUP_REVAL): a file replaced elsewhere is found again.
    if (isFsError(e, 'STALE')) return -E.ESTALE;
    return toErrno(e, op, `${r.ino}${r.name ? `/${r.name}` : ''}`);
  }

  /** JUKEBOX (server busy) is retried with back-off; everything else is the caller's answer. */
  private async retrying<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (isFsError(e, 'JUKEBOX') && attempt < 6) {
          await delay(50 * 2 ** attempt);
          continue;
        }
        throw e;
      }
    }
  }

  private caller(r: LlRequest): LlCaller {
    return { uid: r.uid, gid: r.gid, pid: r.pid };
  }

  private checkName(name: string): void {
    if (Buffer.byteLength(name) > this.nameMax) throw new FsError('NAMETOOLONG', `name longer than ${this.nameMax} bytes`);
  }

  /**
   * Fresh attributes of a node: remembered (not served: the kernel caches
   * them). True if it is a file whose size or mtime changed since we last
   * saw them, and not by us: then our read-ahead is dropped, and the kernel
   * must hear of it — a reply carrying these attributes tells it (it
   * compares them with its own and drops its pages); otherwise the caller
   * sends invalidate().
   */
  private saw(n: Node, server: Fattr3): boolean {
    const a = this.shown(n, server);
    const old = n.last;
    const floor = a.type === FType.REG ? this.ownSize(n) : 0;
    if (floor > a.size) {
      // Answered by the server mid-WRITE (or before one of ours landed): our size is newer; nothing to drop.
      n.last = { ...a, size: floor };
      return false;
    }
    n.last = a;
    n.lastOwn = false;
    if (!old || a.type !== FType.REG) return false;
    if (old.size === a.size && old.mtime.sec === a.mtime.sec && old.mtime.nsec === a.mtime.nsec) return false;
    const f = this.files.file(n.key);
    if (f && f.inflightBytes > 0) return false;
    f?.ra?.clear();
    return true;
  }

  /** A change of ours to `n` begins: what we knew of its attributes is not served again (cachedFor). */
  private changing(n: Node): void {
    n.gen = (n.gen ?? 0) + 1;
    n.changedAt = performance.now();
    n.said = undefined;
  }

  /** Taken just before asking the backend about `n`: `trust` vouches for the answer only if nothing changed meanwhile. */
  private snap(n: Node): { at: number; gen: number; epoch: number } {
    return { at: performance.now(), gen: n.gen ?? 0, epoch: this.epoch };
  }

  /** `n.last` is the backend's answer to a request sent at `s.at`, unless a change of ours began since. */
  private trust(n: Node, s: { at: number; gen: number; epoch: number }): void {
    // changedAt: a node first met in this answer (a lookup's) may have been changed since the request was sent.
    if (!((n.gen ?? 0) === s.gen && this.epoch === s.epoch && n.last && !((n.changedAt ?? -Infinity) >= s.at))) return;
    const b = this.saidWhen(s.at, this.held?.attrTrust(n.fh), this.attrBudget());
    n.said = { ...s, at: b.at, renew: b.renew };
  }

  /**
   * The budgets (ms) for attributes and for names: the layer below's as they
   * are now when it holds answers (HeldAnswers.budgets: a live change of the
   * cache's timeout is the mount's), else the mount's --attr-timeout.
   */
  private attrBudget(): number {
    return this.held?.budgets().attrMs ?? this.o.attrTimeoutMs;
  }

  private nameBudget(): number {
    return this.held?.budgets().nameMs ?? this.o.attrTimeoutMs;
  }

  /**
   * When the server said an answer asked for at `at` (performance.now()):
   * then, or earlier when the layer below gave it from what it holds with
   * `trust` ms left of `budget` (HeldAnswers; Infinity: held until an
   * invalidation, as good as new). `renew`: the layer below renews it when
   * asked for it in its second half.
   */
  private saidWhen(at: number, trust: number | undefined, budget: number): { at: number; renew: boolean } {
    if (trust === undefined || trust === Infinity || !(trust > 0) || budget <= 0) return { at, renew: false };
    return { at: Math.min(at, performance.now() - Math.max(0, budget - trust)), renew: !!this.held?.renewsAhead() };
  }

  /** What is left (ms, may be negative) of `budget` for an answer the server said at `at`. */
  private leftMs(at: number, budget = this.attrBudget()): number {
    return budget - (performance.now() - at);
  }

  /**
   * Seconds the kernel may keep an answer the server said at `b.at`: what is
   * left of the budget — at most half of it when the layer below renews the
   * answer, so the kernel's next ask (a local call) comes while it is in its
   * second half there, and a file or directory kept in use never waits for
   * the server to say it again.
   */
  private kernelSecs(b: { at: number; renew?: boolean }, budget = this.attrBudget()): number {
    const left = this.leftMs(b.at, budget);
    return Math.max(0, b.renew ? Math.min(left, budget / 2) : left) / 1000;
  }

  /**
   * Seconds the kernel may still trust `n.last`, or undefined. The budget
   * runs from when the request that fetched them was sent, so the kernel's
   * trust (the rest of it) ends when it would have had it asked then: a
   * change made elsewhere still shows within the budget. Never while a
   * WRITE of ours is in flight (its mtime is not known yet).
   */
  private cachedFor(n: Node): number | undefined {
    const s = n.said;
    if (!s || !n.last || s.epoch !== this.epoch || s.gen !== (n.gen ?? 0) || (n.writing ?? 0) > 0) return undefined;
    const budget = this.attrBudget();
    const left = this.leftMs(s.at, budget);
    // In its second half, the layer below is asked (from what it holds), which renews it there.
    if (s.renew ? inSecondHalf(left, budget) : left <= 0) return undefined;
    return this.kernelSecs(s, budget);
  }

  /**
   * An entry reply for `fh`: the node gets one more kernel lookup if (and only if) the reply went out.
   * `name`: the lookup that found it was answered by the layer below from what it holds, with `left` of
   * `budget` (HeldAnswers.nameTrust and the name budget, read together as the answer came, before any other
   * call could renew or drop the name or change the budget).
   */
  private async entryOf(cred: Credentials, fh: Buffer, attr: Fattr3 | undefined, asked?: { at: number; epoch: number }, name?: { left: number; budget: number }): Promise<{ node: Node; e: LlEntry }> {
    const t0 = performance.now();
    const server = attr ?? (await this.retrying(() => this.backend.getattr(cred, fh)));
    const node = this.inodes.of(fh);
    const a = this.shown(node, server);
    this.saw(node, a);
    // `asked`: when the request that brought `attr` was sent (lookup, create, mkdir...).
    const at = asked?.at ?? t0;
    if (asked || !attr) this.trust(node, { at, gen: node.gen ?? 0, epoch: asked?.epoch ?? this.epoch });
    const attrTimeout = this.kernelSecs(node.said ?? this.saidWhen(at, this.held?.attrTrust(fh), this.attrBudget()));
    const entryTimeout = name ? this.kernelSecs(this.saidWhen(at, name.left, name.budget), name.budget) : this.nameBudget() / 1000;
    return { node, e: { nodeid: node.id, attr: this.statOf(node, a), attrTimeout, entryTimeout } };
  }

  private replyEntry(req: bigint, node: Node, e: LlEntry): void {
    this.inodes.ref(node);
    if (fuseLl().replyEntry(req, e) !== 0) this.inodes.forget(node.id, 1);
  }

  /** stat as the kernel should see it: a size that includes writes still in flight. */
  private statOf(n: Node, a: Fattr3) {
    const st = toLlAttr(a, this.blksize);
    if (a.type === FType.REG) st.size = Math.max(st.size, this.ownSize(n));
    return st;
  }

  /**
   * The size this host's own writes give a file open here: the end of the
   * writes in flight, or the size our last write or truncate left. No
   * attributes the server answered meanwhile go below it: the server's file
   * system grows page by page during a WRITE, so a GETATTR or LOOKUP served
   * concurrently shows a partial, page-aligned size, and if the WRITE's reply
   * lands before ours goes out, nothing in flight would cover it any more.
   * (While the file is open here, our size is this host's word: close-to-open.)
   */
  private ownSize(n: Node): number {
    const f = this.files.file(n.key);
    if (!f) return 0;
    let size = f.inflightBytes > 0 ? f.inflightEnd : 0;
    if (n.lastOwn && n.last && n.last.size > size) size = n.last.size;
    return size;
  }

  /** Attributes for the kernel, kept for what is left of the budget they were said with (the whole budget when not known). */
  private attrReply(req: bigint, n: Node, a: Fattr3): void {
    fuseLl().replyAttr(req, this.statOf(n, a), n.said ? this.kernelSecs(n.said) : this.attrBudget() / 1000);
  }

  /**
   * The post-operation attributes of a WRITE or owed SETATTR of ours. Replies of concurrent ones come back in
   * any order: none makes the size go back.
   */
  private ownReply(n: Node, a: Fattr3): void {
    n.last = this.shown(n, n.last && n.last.size > a.size ? { ...a, size: n.last.size } : a);
    n.lastOwn = true;
  }

  /** Attributes as this host shows them: a SETATTR still owed (OpenFile.owe) over the backend's answer. */
  private shown(n: Node, a: Fattr3): Fattr3 {
    const o = a.type === FType.REG ? this.files.file(n.key)?.owed : undefined;
    return o ? { ...a, ...o.shows } : a;
  }

  /**
   * The open file a SETATTR may be owed to (answered now, sent later), if it
   * is one the server cannot refuse or change: made by this caller through
   * this mount (so the caller owns it on the server, whatever the identity
   * map), no size, no set-id or sticky bits (the server may clear them), the
   * owner and group it has, times given by the program (not the server's
   * clock), a file without set-id bits (a chown clears them).
   */
  private owable(cred: Credentials, n: Node, s: Sattr3): OpenFile | undefined {
    if (!this.o.oweSetattrs) return undefined;
    const file = this.files.file(n.key);
    const a = n.last;
    if (!file?.madeBy || file.madeBy !== credKey(cred) || !a || a.type !== FType.REG || a.mode & 0o7000) return undefined;
    if (s.size !== undefined || s.atime === 'server' || s.mtime === 'server') return undefined;
    if (s.mode !== undefined && s.mode & 0o7000) return undefined;
    if ((s.uid !== undefined && s.uid !== a.uid) || (s.gid !== undefined && s.gid !== a.gid)) return undefined;
    return file;
  }

  /** Answer a SETATTR from what is owed (see owable): the file's attributes with it, trusted as ours. */
  private async owe(cred: Credentials, n: Node, file: OpenFile, s: Sattr3): Promise<Fattr3> {
    // Answered writes first: their replies carry the size (and the server's mtime, which the owed one overrides).
    if (file.inflightBytes > 0) await file.settle();
    this.changing(n);
    const asked = this.snap(n);
    const shows: Owed['shows'] = { ctime: fromNs(BigInt(Date.now()) * 1_000_000n) };
    if (s.mode !== undefined) shows.mode = s.mode;
    if (s.uid !== undefined) shows.uid = s.uid;
    if (s.gid !== undefined) shows.gid = s.gid;
    if (s.atime !== undefined && s.atime !== 'server') shows.atime = s.atime;
    if (s.mtime !== undefined && s.mtime !== 'server') shows.mtime = s.mtime;
    await file.owe(cred, s, shows);
    n.last = this.shown(n, n.last!);
    n.lastOwn = true;
    this.trust(n, asked);
    return n.last;
  }

  /**
   * GETATTR from the backend. `replied`: the caller answers the kernel with
   * these attributes, which is how the kernel learns of a change — an
   * invalidation sent first would make it discard that very answer (its
   * attribute version moved on) and keep its stale pages one call longer.
   */
  private async fresh(cred: Credentials, n: Node, replied: boolean): Promise<Fattr3> {
    const busy = (n.writing ?? 0) > 0;
    const writes = n.writes ?? 0;
    const a = this.shown(n, await this.retrying(() => this.backend.getattr(cred, n.fh)));
    // A GETATTR that overlapped a WRITE of ours may predate it (an older size): the write's own reply is newer.
    if ((busy || (n.writing ?? 0) > 0 || n.writes !== writes) && n.last) {
      if (n.last.size >= a.size) return n.last;
    }
    // While the file is open here, the size our own writes and truncates made is this host's word
    // (the server's may lag behind a WRITE answered on another connection).
    if (n.lastOwn && n.last && n.last.size > a.size && this.files.file(n.key)) return { ...a, size: n.last.size };
    if (this.saw(n, a) && !replied) await this.invalidate(n);
    return a;
  }

  /** A change's post-operation attributes, or a GETATTR when the backend had none. */
  private async after(cred: Credentials, n: Node, w: WccData | undefined): Promise<Fattr3> {
    if (w?.after) {
      n.last = this.shown(n, w.after);
      n.lastOwn = true;
      return n.last;
    }
    return this.fresh(cred, n, true);
  }

  // ---------------------------------------------------------------- requests

  private async handle(r: LlRequest, reply: (fn: () => void) => void): Promise<void> {
    const ll = fuseLl();
    const req = r.req!;
    // Closing what was opened needs no caller (the kernel may send it from another task): the opener's credentials serve.
    const cred = r.op === 'release' || r.op === 'releasedir' ? this.o.background : await this.callers.credentials(this.caller(r));
    switch (r.op) {
      case 'lookup': {
        const dir = this.inodes.get(r.ino);
        this.checkName(r.name!);
        const asked = this.snap(dir);
        // A directory we made or listed whole, unchanged by anyone else since: the name is not there, no call.
        const known = this.listings.absent(dir.key, r.name!);
        if (known !== undefined) {
          this.counters.knownAbsent++;
          return reply(() => fuseLl().replyEntry(req, { nodeid: 0, attrTimeout: 0, entryTimeout: known / 1000 }));
        }
        let x: Awaited<ReturnType<Backend['lookup']>>;
        let name: { left: number; budget: number } | undefined;
        try {
          x = await this.retrying(() => this.backend.lookup(cred, dir.fh, r.name!));
          if (this.held) name = { left: this.held.nameTrust(dir.fh, r.name!), budget: this.nameBudget() };
        } catch (e) {
          // A name that is not there: a negative entry the kernel keeps for what is left of the budget (counted
          // from when we asked), so the probes of a build (include paths, PATH, config files) ask once per
          // budget, as with positive entries. A create through this mount replaces it at once; a name made
          // elsewhere shows within the budget.
          const left = this.leftMs(asked.at, this.nameBudget());
          if (isFsError(e, 'NOENT')) this.listings.renew(dir.key, e.attr, asked.at);
          if (isFsError(e, 'NOENT') && left > 0) {
            this.counters.negativeEntries++;
            return reply(() => fuseLl().replyEntry(req, { nodeid: 0, attrTimeout: 0, entryTimeout: left / 1000 }));
          }
          throw e;
        }
        if (x.dirAttr) {
          this.saw(dir, x.dirAttr);
          this.trust(dir, asked);
          this.listings.renew(dir.key, x.dirAttr, asked.at);
        }
        const { node, e } = await this.entryOf(cred, x.fh, x.attr, asked, name);
        return reply(() => this.replyEntry(req, node, e));
      }
      case 'getattr': {
        const n = this.inodes.get(r.ino);
        // The kernel asks again after every change of its own (a chown's suid check, a directory's entries,
        // a read's atime): attributes just given by a reply of the backend, unchanged by us since, serve.
        const left = this.cachedFor(n);
        if (left !== undefined) {
          this.counters.attrHits++;
          const last = n.last!;
          return reply(() => fuseLl().replyAttr(req, this.statOf(n, last), left));
        }
        const asked = this.snap(n);
        const a = await this.fresh(cred, n, true);
        this.trust(n, asked);
        return reply(() => this.attrReply(req, n, a));
      }
      case 'setattr': {
        const n = this.inodes.get(r.ino);
        const attrs = toSattr(r.toSet ?? 0, r);
        // A chmod/chown to what the file already has (tar does one per file) counts too: POSIX has every
        // successful chmod and chown mark the ctime, as a local disk does. Owed, when it may be (owable).
        const owing = this.owable(cred, n, attrs);
        const a = owing ? await this.owe(cred, n, owing, attrs) : await this.setattr(cred, n, attrs);
        reply(() => this.attrReply(req, n, a));
        // Our own truncate: the kernel cut its pages at the new end when it took the reply; its attributes
        // of the file go too (a write-behind of ours may have moved the server's size meanwhile).
        if ((r.toSet ?? 0) & SET_SIZE) void this.invalidate(n);
        return;
      }
      case 'readlink': {
        const n = this.inodes.get(r.ino);
        const x = await this.retrying(() => this.backend.readlink(cred, n.fh));
        return reply(() => ll.replyReadlink(req, x.path));
      }
      case 'mknod':
      case 'mkdir':
      case 'symlink': {
        const dir = this.inodes.get(r.ino);
        this.checkName(r.name!);
        const attrs: Sattr3 = r.op === 'symlink' ? {} : { mode: (r.mode ?? 0) & 0o7777 };
        this.changing(dir);
        const asked = this.snap(dir);
        const made = await this.dirChange([dir], () =>
          r.op === 'mkdir'
            ? this.backend.mkdir(cred, dir.fh, r.name!, attrs)
            : r.op === 'symlink'
              ? this.backend.symlink(cred, dir.fh, r.name!, r.target!, attrs)
              : this.mknod(cred, dir.fh, r.name!, r.mode ?? 0, r.rdev ?? 0, attrs),
        );
        this.sawDir(dir, made.dirWcc, asked);
        this.listings.changed(dir.key, made.dirWcc, asked.at, r.name!);
        const { node, e } = await this.entryOf(cred, made.fh ?? (await this.backend.lookup(cred, dir.fh, r.name!)).fh, made.attr, made.fh && made.attr ? asked : undefined);
        // A directory just made holds no names: lookups in it (tar -x) need not ask.
        if (r.op === 'mkdir' && made.fh && made.attr) this.listings.set(node.key, [], made.attr, asked.at);
        return reply(() => this.replyEntry(req, node, e));
      }
      case 'unlink':
      case 'rmdir': {
        const dir = this.inodes.get(r.ino);
        // A removed (or replaced, by rename) file's owed SETATTR would find it gone: owed ones go first.
        await this.files.payAll();
        // The file's nlink and ctime change too, and other names may reach it: nothing said before is served.
        this.epoch++;
        const sent = performance.now();
        if (r.op === 'unlink' && (await this.hideIfOpen(cred, dir, r.name!))) {
          this.listings.drop(dir.key); // renamed to a hidden name, not removed
          this.epoch++;
          return reply(() => ll.replyErr(req, 0));
        }
        const wcc = await this.dirChange([dir], () => this.retrying(() => (r.op === 'rmdir' ? this.backend.rmdir(cred, dir.fh, r.name!) : this.backend.remove(cred, dir.fh, r.name!))));
        this.listings.changed(dir.key, wcc, sent, undefined, r.name!);
        this.epoch++;
        return reply(() => ll.replyErr(req, 0));
      }
      case 'rename': {
        const from = this.inodes.get(r.ino);
        const to = this.inodes.get(r.ino2!);
        this.checkName(r.name2!);
        const flags = r.renameFlags ?? 0;
        if (flags & ~RENAME_NOREPLACE) throw new FsError('INVAL', 'RENAME_EXCHANGE / WHITEOUT: NFSv3 has no such rename');
        await this.files.payAll();
        // Two names of one file (hard links): POSIX says rename does nothing. The VFS sees one inode and
        // stops there already; this covers a name the kernel had not looked up.
        const [a, b] = await Promise.all([
          this.backend.lookup(cred, from.fh, r.name!).catch(() => undefined),
          this.backend.lookup(cred, to.fh, r.name2!).catch(() => undefined),
        ]);
        if (b && flags & RENAME_NOREPLACE) throw new FsError('EXIST', `${r.name2} exists (RENAME_NOREPLACE)`);
        if (a && b && a.fh.equals(b.fh)) return reply(() => ll.replyErr(req, 0));
        this.epoch++;
        // A replaced file some descriptor has open lives on under a hidden name (as NFS clients do), as on a local disk.
        if (b && (await this.hideIfOpen(cred, to, r.name2!, b.fh))) this.listings.drop(to.key);
        const sent = performance.now();
        const w = await this.dirChange([from, to], () => this.retrying(() => this.backend.rename(cred, from.fh, r.name!, to.fh, r.name2!)));
        if (from.key === to.key) this.listings.changed(from.key, w.toWcc, sent, r.name2!, r.name!);
        else {
          this.listings.changed(from.key, w.fromWcc, sent, undefined, r.name!);
          this.listings.changed(to.key, w.toWcc, sent, r.name2!);
        }
        this.epoch++;
        return reply(() => ll.replyErr(req, 0));
      }
      case 'link': {
        const n = this.inodes.get(r.ino);
        const dir = this.inodes.get(r.ino2!);
        this.checkName(r.name!);
        await this.files.file(n.key)?.pay();
        this.epoch++;
        const sent = performance.now();
        const x = await this.dirChange([dir], () => this.backend.link(cred, n.fh, dir.fh, r.name!));
        this.listings.changed(dir.key, x.dirWcc, sent, r.name!);
        this.epoch++;
        const { node, e } = await this.entryOf(cred, n.fh, x.attr);
        return reply(() => this.replyEntry(req, node, e));
      }
      case 'open': {
        const n = this.inodes.get(r.ino);
        const o = await this.open(cred, n, r.flags ?? 0, true);
        let sent = false;
        reply(() => {
          sent = ll.replyOpen(req, o) === 0;
        });
        // Not answered (the open timed out meanwhile) or not taken (interrupted): no RELEASE will come for it.
        if (!sent) {
          this.pt?.closed(o.fh);
          this.fdCred.delete(o.fh);
          void this.files.release(cred, o.fh).catch(() => undefined);
        }
        return;
      }
      case 'create': {
        const dir = this.inodes.get(r.ino);
        this.checkName(r.name!);
        const { node, e, open } = await this.create(cred, dir, r.name!, r.mode ?? 0o644, r.flags ?? 0);
        let sent = false;
        reply(() => {
          this.inodes.ref(node);
          sent = ll.replyCreate(req, e, open) === 0;
          if (!sent) this.inodes.forget(node.id, 1);
        });
        // Not answered (timed out meanwhile) or not taken: no RELEASE will come for its handle.
        if (!sent) {
          this.fdCred.delete(open.fh);
          void this.files.release(cred, open.fh).catch(() => undefined);
        }
        return;
      }
      case 'read': {
        const local = await this.readLocal(r.fh!, r.off!, r.size!);
        if (local) {
          // Handed to a thread of the native layer: answered there, or here by the plain read if a file fails.
          let handed = false;
          reply(() => {
            handed = true;
            void this.replyLocal(req, r, local);
          });
          // Answered already (the op timed out meanwhile): the descriptors are not needed.
          if (!handed) local.release(false);
          return;
        }
        const data = await this.read(r.fh!, r.off!, r.size!);
        return reply(() => ll.replyBuf(req, data));
      }
      case 'write': {
        const n = await this.write(r.fh!, r.off!, r.data!);
        return reply(() => ll.replyWrite(req, n));
      }
      case 'flush': {
        await this.files.flush(this.fdCred.get(r.fh!) ?? cred, r.fh!);
        return reply(() => ll.replyErr(req, 0));
      }
      case 'fsync': {
        await this.files.sync(this.fdCred.get(r.fh!) ?? cred, r.fh!);
        return reply(() => ll.replyErr(req, 0));
      }
      case 'release': {
        const c = this.fdCred.get(r.fh!) ?? cred;
        this.fdCred.delete(r.fh!);
        const n = this.inodes.peekKey(this.files.get(r.fh!).file.key);
        this.pt?.closed(r.fh!);
        try {
          await this.files.release(c, r.fh!);
        } finally {
          reply(() => ll.replyErr(req, 0));
          // The last descriptor of a file unlinked while open: its hidden name goes now.
          if (n?.hidden && !this.files.file(n.key)?.refs) {
            const h = n.hidden;
            n.hidden = undefined;
            await this.backend.remove(c, h.dir, h.name).catch((e: Error) => log.warn({ name: h.name, err: e.message }, 'could not remove the hidden name of an unlinked file'));
          }
        }
        return;
      }
      case 'opendir': {
        const n = this.inodes.get(r.ino);
        while (this.dirs.has(this.nextDir) || this.nextDir === 0) this.nextDir = (this.nextDir % 0x7fffffff) + 1;
        const id = this.nextDir++;
        this.dirs.set(id, { node: n });
        return reply(() => {
          if (ll.replyOpen(req, { fh: id }) !== 0) this.dirs.delete(id);
        });
      }
      case 'readdir':
      case 'readdirplus':
        return this.readdir(cred, r, reply);
      case 'releasedir':
        this.dirs.delete(r.fh!);
        return reply(() => ll.replyErr(req, 0));
      case 'fsyncdir':
        // Nothing to send: NFSv3's namespace changes are synchronous (RFC 1813 §1.6), on disk before their replies.
        return reply(() => ll.replyErr(req, 0));
      case 'statfs': {
        const s = await this.retrying(() => this.backend.fsstat(cred, this.rootFh));
        return reply(() => ll.replyStatfs(req, toLlStatfs(s, this.nameMax)));
      }
      case 'access': {
        // Only without default_permissions: the backend decides, as the caller.
        const n = this.inodes.get(r.ino);
        const mask = r.mode ?? 0;
        if (mask === 0) {
          await this.fresh(cred, n, false);
          return reply(() => ll.replyErr(req, 0));
        }
        const isDir = n.last?.type === FType.DIR;
        const want = (mask & 4 ? ACCESS3_READ : 0) | (mask & 2 ? ACCESS3_MODIFY | ACCESS3_EXTEND : 0) | (mask & 1 ? (isDir ? ACCESS3_LOOKUP : ACCESS3_EXECUTE) : 0);
        const x = await this.retrying(() => this.backend.access(cred, n.fh, want));
        if ((x.access & want) !== want) throw new FsError('ACCES', 'access denied by the backend');
        return reply(() => ll.replyErr(req, 0));
      }
      case 'fallocate':
        // NFSv3 has no ALLOCATE: writing zeros would not be an honest preallocation (and would clobber data).
        throw new FsError('NOTSUPP', 'fallocate: the backend cannot preallocate');
      default:
        throw new FsError('NOTSUPP', `${r.op} is not implemented`);
    }
  }

  /**
   * unlink (or rename over) a file some descriptor still has open: renamed to a hidden
   * name in the same directory instead (as NFS clients do), so reads and
   * writes through the descriptor go on; removed at its last release.
   */
  private async hideIfOpen(cred: Credentials, dir: Node, name: string, fh?: Buffer): Promise<boolean> {
    if (this.files.count === 0) return false;
    fh ??= (await this.backend.lookup(cred, dir.fh, name).catch(() => undefined))?.fh;
    const n = fh && this.inodes.peek(fh);
    if (!n || !this.files.file(n.key)?.refs || n.hidden) return false;
    const hidden = `.gvfs-hidden-${process.pid}-${n.id}`;
    await this.retrying(() => this.backend.rename(cred, dir.fh, name, dir.fh, hidden));
    n.hidden = { dir: dir.fh, name: hidden };
    return true;
  }

  private async mknod(cred: Credentials, dir: Buffer, name: string, mode: number, dev: number, attrs: Sattr3): Promise<NewObject> {
    const t = mode & S_IFMT;
    if (t === 0o100000 || t === 0) return this.backend.create(cred, dir, name, { mode: 'guarded', attrs });
    let what: MknodType;
    if (t === 0o010000) what = { type: FType.FIFO, attrs };
    else if (t === 0o140000) what = { type: FType.SOCK, attrs };
    else if (t === 0o020000 || t === 0o060000) {
      // Linux dev_t (glibc encoding) → major/minor.
      const d = BigInt(dev);
      const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
      const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn & 0xffffffffn));
      what = { type: t === 0o020000 ? FType.CHR : FType.BLK, attrs, rdev: { major, minor } };
    } else throw new FsError('INVAL', `mknod of type ${t.toString(8)}`);
    return this.backend.mknod(cred, dir, name, what);
  }

  /**
   * A change of names in `dirs` (create, remove, rename, link): if it fails (EXIST for a name we took for
   * absent, made elsewhere; or it may have run before an error), what we knew of their names is dropped.
   */
  private async dirChange<T>(dirs: Node[], call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (e) {
      for (const d of dirs) this.listings.drop(d.key);
      throw e;
    }
  }

  /** A directory's attributes after a change of its entries made by us (`asked` taken after `changing(dir)`). */
  private sawDir(dir: Node, w: WccData | undefined, asked: { at: number; gen: number; epoch: number }): void {
    if (!w?.after) return;
    this.saw(dir, w.after);
    this.trust(dir, asked);
  }

  private async setattr(cred: Credentials, n: Node, attrs: Sattr3): Promise<Fattr3> {
    const file = this.files.file(n.key);
    await file?.pay();
    this.changing(n);
    // Held until SETATTR is answered: a chunk read meanwhile would carry the old size.
    const release = attrs.size !== undefined ? file?.ra?.hold() : undefined;
    try {
      // Commits (and waits for) every write before the size changes, so none lands after it; and no write
      // still in flight (write-behind) may land after a change of times (tar sets the mtime, then closes).
      if (attrs.size !== undefined) await file?.commit(cred);
      else if (file && file.inflightBytes > 0) await file.settle();
      const asked = this.snap(n);
      const w = await this.retrying(() => this.backend.setattr(cred, n.fh, attrs));
      if (attrs.mode !== undefined || attrs.uid !== undefined || attrs.gid !== undefined) this.dropAccess(n);
      const a = await this.after(cred, n, w);
      this.trust(n, asked);
      return a;
    } finally {
      release?.();
    }
  }

  private dropAccess(n: Node): void {
    for (const k of this.accessCache.keys()) if (k.startsWith(`${n.key}:`)) this.accessCache.delete(k);
  }

  /** ACCESS as the caller (cached per file and uid for half the budget); its attributes when it asked. */
  private async checkAccess(cred: Credentials, n: Node, mask: number): Promise<Fattr3 | undefined> {
    const ttl = this.attrBudget() / 2;
    const k = `${n.key}:${cred.uid}:${cred.gid}`;
    const c = this.accessCache.get(k);
    if (c && ttl > 0 && Date.now() - c.at < ttl && (c.bits & mask) === mask) return undefined;
    const r = await this.retrying(() => this.backend.access(cred, n.fh, mask));
    if (this.accessCache.size >= 20_000) this.accessCache.clear();
    this.accessCache.set(k, { bits: r.access, at: Date.now() });
    if ((r.access & mask) === mask) return r.attr;
    if (mask & (ACCESS3_MODIFY | ACCESS3_EXTEND)) {
      // ACCESS cannot say "read-only file system"; a SETATTR that changes nothing can.
      try {
        await this.backend.setattr(cred, n.fh, {});
      } catch (e) {
        if (isFsError(e, 'ROFS')) throw e;
      }
    }
    throw new FsError('ACCES', 'access denied by the backend');
  }

  /**
   * open: close-to-open — fresh attributes at every open; the kernel keeps
   * its pages of the file only if size and mtime are what they were at the
   * last open (and drops its attributes otherwise).
   */
  private async open(cred: Credentials, n: Node, flags: number, mayPass = false): Promise<{ fh: number; keepCache: boolean; backingId?: number; directIo?: boolean; noFlush?: boolean }> {
    // What the server says at this open (close-to-open) includes what this host owes it.
    await this.files.file(n.key)?.pay();
    const acc = flags & O_ACCMODE;
    let writable = acc !== F.O_RDONLY;
    if (flags & O_DIRECT) this.counters.directOpens++;
    const asked = this.snap(n);
    let a: Fattr3 | undefined;
    if (this.o.accessOnOpen) {
      const mask = acc === F.O_RDONLY ? ACCESS3_READ : acc === F.O_WRONLY ? ACCESS3_MODIFY | ACCESS3_EXTEND : ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND;
      try {
        a = await this.checkAccess(cred, n, mask);
      } catch (e) {
        // O_RDWR on a read-only export: opened for reading only, every write through it EROFS (QEMU maps golden files so).
        if (acc !== F.O_RDWR || flags & F.O_TRUNC || !isFsError(e, 'ROFS')) throw e;
        a = await this.checkAccess(cred, n, ACCESS3_READ);
        writable = false;
      }
    }
    if (flags & F.O_TRUNC && writable) {
      a = await this.setattr(cred, n, { size: 0 });
      void this.invalidate(n);
    }
    // No attributes go with the open's reply: a change seen here is announced (and FOPEN_KEEP_CACHE withheld).
    if (!a) a = await this.fresh(cred, n, false);
    else if (this.saw(n, a)) await this.invalidate(n);
    // Close-to-open fetched them just now: the fstat after the first read (the kernel drops atime then) needs no call.
    this.trust(n, asked);
    const sig = `${a.size}:${a.mtime.sec}:${a.mtime.nsec}`;
    const keepCache = n.openSig === sig;
    n.openSig = sig;
    const register = () => {
      const fd = this.files.open(n.fh, n.key, { append: !!(flags & F.O_APPEND), writable }).fd;
      this.fdCred.set(fd, cred);
      return fd;
    };
    // (A create's answer cannot carry a backing file: mayPass only for OPEN.)
    const r =
      this.pt && mayPass
        ? await this.pt.open(cred, n, sig, a.size, { eligible: acc === F.O_RDONLY && !(flags & F.O_TRUNC), direct: !!(flags & O_DIRECT) }, () => (this.files.file(n.key)?.refs ?? 0) > 0, register)
        : { fh: register() };
    if (!keepCache) this.files.file(n.key)?.ra?.clear();
    // Nothing can be written through a read-only open, so its close has nothing to report (as an NFS client's
    // close of one sends nothing): the kernel is told to send no FLUSH for it, one round trip less per close.
    return { ...r, keepCache, noFlush: !writable };
  }

  private async create(cred: Credentials, dir: Node, name: string, mode: number, flags: number) {
    let made: NewObject | undefined;
    this.changing(dir);
    const asked = this.snap(dir);
    try {
      // GUARDED: O_EXCL must fail if another client created the name meanwhile.
      made = await this.dirChange([dir], () => this.backend.create(cred, dir.fh, name, { mode: 'guarded', attrs: { mode: mode & 0o7777 } }));
      this.sawDir(dir, made.dirWcc, asked);
      this.listings.changed(dir.key, made.dirWcc, asked.at, name);
    } catch (e) {
      // Without O_EXCL, a name created elsewhere since the kernel found it absent is simply opened.
      if (!isFsError(e, 'EXIST') || flags & F.O_EXCL) throw e;
    }
    const fh = made?.fh ?? (await this.backend.lookup(cred, dir.fh, name)).fh;
    const { node, e } = await this.entryOf(cred, fh, made?.attr, made?.fh && made.attr ? asked : undefined);
    const opened = made ? { fh: 0, keepCache: false } : await this.open(cred, node, flags);
    if (made) {
      node.openSig = `${made.attr?.size}:${made.attr?.mtime.sec}:${made.attr?.mtime.nsec}`;
      const fd = this.files.open(fh, node.key, { append: !!(flags & F.O_APPEND), writable: true });
      fd.file.madeBy ??= credKey(cred);
      opened.fh = fd.fd;
      this.fdCred.set(opened.fh, cred);
    }
    return { node, e, open: opened };
  }

  private async read(fd: number, pos: number, len: number): Promise<Buffer> {
    const file = await this.readable(fd);
    let ra = file.ra as ReadAhead | undefined;
    if (!ra) {
      const budget = () => this.attrBudget();
      ra = new ReadAhead(
        {
          chunk: this.readChunk,
          window: this.o.readAheadChunks,
          trigger: 256 * 1024,
          // Read each time: a live change of the budget reaches files already open.
          get maxAgeMs() {
            return Math.max(budget() / 2, 200);
          },
        },
        (off, n) => this.readRange(file, this.fdCred.get(fd) ?? this.o.background, off, n),
      );
      file.ra = ra;
    }
    const data = this.o.readAheadChunks > 0 ? await ra.read(pos, len) : (await this.readRange(file, this.fdCred.get(fd) ?? this.o.background, pos, len)).data;
    const out = data.length > len ? data.subarray(0, len) : data;
    this.countRead(out.length);
    return out;
  }

  /** Open file `fd`, once a read may see it: every write made before, an owed atime landed before the read moves it. */
  private async readable(fd: number): Promise<OpenFile> {
    const file = this.files.get(fd).file;
    if (file.owed) await file.pay();
    if (file.inflightBytes > 0) await file.settle();
    return file;
  }

  /** A read answered with `n` bytes. */
  private countRead(n: number): void {
    this.counters.reads++;
    this.counters.bytesRead += n;
    if (this.o.counters) this.o.counters.programReadBytes += n;
  }

  /**
   * The read as ranges of local files, when the backend has them all
   * (LocalReads): after the same waits as read(), and only a whole answer
   * (a short one would be taken as EOF).
   */
  private async readLocal(fd: number, pos: number, len: number): Promise<LocalRead | undefined> {
    if (!this.local || this.localOff) return undefined;
    const file = await this.readable(fd);
    const r = await this.retrying(() => this.local!.readLocal(this.fdCred.get(fd) ?? this.o.background, file.fh, pos, len));
    if (r && r.count < len && !r.eof) {
      r.release(false);
      return undefined;
    }
    return r;
  }

  /** Answer READ `req` with `local` (exactly once): spliced from the files, or, if one cannot be read, by read(). */
  private async replyLocal(req: bigint, r: LlRequest, local: LocalRead): Promise<void> {
    const ll = fuseLl();
    let res: number;
    try {
      res = await ll.replyFds(req, local.extents);
    } catch (e) {
      res = E.EIO; // refused before anything was sent (a bad extent: a bug below)
      log.error({ err: e }, 'local read: the native layer refused the extents');
    }
    // Answered, or the request is gone (a plain read's answer counts whether the kernel took it or not).
    local.release(res <= 0);
    if (res <= 0) {
      if (res < 0) log.debug({ res }, 'local read: the kernel did not take the answer (request interrupted?)');
      this.counters.localReads++;
      this.countRead(local.count);
      return;
    }
    // Nothing was sent: a local file could not be read (the backend finds and drops a bad block on its own read).
    this.counters.localRetries++;
    if (res === E.EINVAL && !this.localOff) {
      // The cache's filesystem cannot splice to a pipe: that will not change, so every read goes the plain way.
      this.localOff = true;
      log.warn('local read: the cache directory cannot be spliced from (EINVAL); reads go through the backend from now on');
    } else log.warn({ errno: res }, 'local read: a cached file could not be read; reading it again the plain way');
    try {
      const data = await this.read(r.fh!, r.off!, r.size!);
      ll.replyBuf(req, data);
    } catch (e) {
      ll.replyErr(req, -this.errnoOf(e, 'read', r));
    }
  }

  /** `count` bytes at `offset` (fewer only at end of file). */
  private async readRange(file: OpenFile, cred: Credentials, offset: number, count: number): Promise<{ data: Buffer; eof: boolean }> {
    const parts: Buffer[] = [];
    let done = 0;
    let eof = false;
    while (done < count) {
      const r = await this.retrying(() => this.backend.read(cred, file.fh, offset + done, count - done));
      const n = Math.min(r.data.length, count - done);
      if (n > 0) parts.push(n === r.data.length ? r.data : r.data.subarray(0, n));
      done += n;
      this.counters.backendReads++;
      if (r.eof || n === 0) {
        eof = true;
        break;
      }
    }
    return { data: parts.length === 1 ? parts[0] : Buffer.concat(parts, done), eof };
  }

  private async write(fd: number, pos: number, data: Buffer): Promise<number> {
    const o = this.files.get(fd);
    if (!o.writable) throw new FsError('ROFS', 'read-only export');
    let off = pos;
    if (o.append) {
      // The kernel computed the offset from the size it knows; never append below the size we know.
      const n = this.inodes.peekKey(o.file.key);
      if (n?.last && n.last.size > off) off = n.last.size;
      off = Math.max(off, o.file.inflightEnd);
    }
    await o.file.write(this.fdCred.get(fd) ?? this.o.background, off, data, this.o.writeBehindBytes > 0);
    if (this.o.counters) this.o.counters.programWriteBytes += data.length;
    return data.length;
  }

  /**
   * readdir / readdirplus: the whole listing is read at offset 0 (READDIRPLUS
   * pages of the backend) and served from the directory handle; an entry's
   * `off` is the index of the next one. With plus, each entry that fits is
   * one kernel lookup of its node.
   */
  private async readdir(cred: Credentials, r: LlRequest, reply: (fn: () => void) => void): Promise<void> {
    const ll = fuseLl();
    const h = this.dirs.get(r.fh!);
    if (!h) throw new FsError('BADHANDLE', `no directory handle ${r.fh}`);
    const off = r.off ?? 0;
    if (off === 0 || !h.entries) h.entries = await this.list(cred, h.node);
    const plus = r.op === 'readdirplus';
    const [ta, te] = [this.attrBudget() / 1000, this.nameBudget() / 1000];
    const self = h.node.last;
    const all = [
      { name: '.', fileid: self?.fileid ?? 0n, type: FType.DIR },
      // d_ino 0 would hide the entry (glibc skips those); the parent is not known here, its inode number does not matter to programs.
      { name: '..', fileid: 1n, type: FType.DIR },
      ...h.entries,
    ];
    const out: LlDirEntry[] = [];
    const nodes: Array<Node | undefined> = [];
    // At most what can fit (each entry takes at least 24 bytes, 80+ with plus).
    for (let i = off; i < all.length && out.length * (plus ? 150 : 24) < r.size! + 4096; i++) {
      const x = all[i] as (typeof all)[number] & { fh?: Buffer; attr?: Fattr3 };
      const mode = x.type === undefined ? 0 : typeBits(x.type);
      const d: LlDirEntry = { name: x.name, off: i + 1, ino: x.fileid, mode };
      let node: Node | undefined;
      if (plus) {
        if (x.fh && x.attr && x.name !== '.' && x.name !== '..') {
          node = this.inodes.of(x.fh);
          this.saw(node, x.attr);
          Object.assign(d, { nodeid: node.id, attr: this.statOf(node, this.shown(node, x.attr)), attrTimeout: ta, entryTimeout: te });
        } else {
          Object.assign(d, { nodeid: 0, attr: { ino: x.fileid, mode, nlink: 0, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0, blksize: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n }, attrTimeout: 0, entryTimeout: 0 });
        }
      }
      out.push(d);
      nodes.push(node);
    }
    reply(() => {
      const fit = ll.replyDir(r.req!, r.size!, plus, out);
      nodes.forEach((n, i) => {
        if (!n) return;
        if (i < fit) this.inodes.ref(n);
        else this.inodes.unref(n);
      });
    });
  }

  private async list(cred: Credentials, dir: Node): Promise<NonNullable<DirHandle['entries']>> {
    for (let restarts = 0; ; restarts++) {
      const entries: NonNullable<DirHandle['entries']> = [];
      let cookie = 0n;
      let verf: Buffer = Buffer.alloc(8);
      let plus = true;
      // The directory's attributes on the first and last page: the same, and the listing is complete as of them.
      const at = performance.now();
      let first: Fattr3 | undefined;
      let last: Fattr3 | undefined;
      try {
        for (;;) {
          let page;
          try {
            page = plus
              ? await this.retrying(() => this.backend.readdirplus(cred, dir.fh, cookie, verf, 64 * 1024, 128 * 1024))
              : await this.retrying(() => this.backend.readdir(cred, dir.fh, cookie, verf, 128 * 1024));
          } catch (e) {
            if (plus && isFsError(e, 'NOTSUPP')) {
              plus = false;
              continue;
            }
            throw e;
          }
          if (page.dirAttr) {
            this.saw(dir, page.dirAttr);
            first ??= page.dirAttr;
            last = page.dirAttr;
          }
          for (const e of page.entries as DirEntryPlus[]) {
            cookie = e.cookie;
            if (e.name === '.' || e.name === '..') continue;
            entries.push({ name: e.name, fileid: e.fileid, type: e.attr?.type, fh: e.fh, attr: e.attr });
          }
          verf = page.verf;
          if (page.eof) {
            if (first && last && sameTimes(first, last)) this.listings.set(dir.key, entries.map((x) => x.name), last, at);
            return entries;
          }
          if (page.entries.length === 0) throw new FsError('IO', 'READDIR made no progress');
        }
      } catch (e) {
        // The directory changed under the listing: start again.
        if (isFsError(e, 'BAD_COOKIE') && restarts < 2) continue;
        throw e;
      }
    }
  }
}
