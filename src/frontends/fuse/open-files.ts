import type { Backend } from '../../backend/backend.js';
import { FsError } from '../../backend/errors.js';
import { StableHow } from '../../nfs3/constants.js';
import type { Fattr3, Sattr3 } from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import { logger } from '../../util/log.js';

const log = logger('fuse');

/** One file descriptor the kernel holds (what FUSE calls a file handle). */
export interface OpenFd {
  fd: number;
  file: OpenFile;
  append: boolean;
  writable: boolean;
  /** The file's error count this descriptor's fsync / close last reported (or found at open). */
  seen: { sync: number; flush: number };
}

interface Uncommitted {
  offset: number;
  data: Buffer;
  verf: Buffer;
}

export interface WriteStats {
  writes: number;
  bytesWritten: number;
  /** Largest write the kernel sent, and how many writes were at least 64 KiB. */
  maxWrite: number;
  largeWrites: number;
  commits: number;
  /** Writes sent again FILE_SYNC because COMMIT's verifier differed (the server restarted). */
  rewrites: number;
  /** SETATTRs answered at once and owed to the backend (OpenFile.owe), and the merged SETATTRs that paid them. */
  setattrsOwed: number;
  setattrsPaid: number;
}

/**
 * A SETATTR answered at once and sent later, merged with the ones after it
 * (tar sets the mtime, the owner and the mode of every file it writes, one
 * call each, then closes it): what is owed, by whom, and what the file shows
 * meanwhile (the owed fields, and a ctime of this host's clock when the last
 * was answered; the server's own once it has them).
 */
export interface Owed {
  cred: Credentials;
  attrs: Sattr3;
  shows: Partial<Pick<Fattr3, 'mode' | 'uid' | 'gid' | 'atime' | 'mtime' | 'ctime'>>;
}

/** How long an owed SETATTR waits for the file's close, fsync or next use before it is sent anyway. */
export const OWED_MAX_MS = 200;

/**
 * Lets writes run together but a commit alone: a commit waits for the
 * writes in flight and holds new ones back until it is done, so the list of
 * uncommitted writes it replays is exactly what the server may have lost.
 */
class Gate {
  private active = 0;
  private idle?: () => void;
  private closed?: Promise<void>;

  async enter(): Promise<void> {
    while (this.closed) await this.closed;
    this.active++;
  }

  leave(): void {
    if (--this.active === 0 && this.idle) this.idle();
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.closed) await this.closed;
    let open!: () => void;
    this.closed = new Promise<void>((r) => (open = r));
    try {
      if (this.active > 0) await new Promise<void>((r) => (this.idle = r));
      this.idle = undefined;
      return await fn();
    } finally {
      this.closed = undefined;
      open();
    }
  }
}

/**
 * A file with at least one descriptor open: its handle and the data of its
 * UNSTABLE writes not yet covered by a COMMIT with the same verifier. The
 * data is kept so that, if the server restarted in between (COMMIT's
 * verifier differs from the writes'), it is written again FILE_SYNC: nothing
 * a program was told was written is lost by a server restart.
 */
export class OpenFile {
  refs = 0;
  /** Read-ahead state (created by the front end on the first read); held by every write while in flight. */
  ra?: { clear(): void; hold(): () => void };
  private pending: Uncommitted[] = [];
  pendingBytes = 0;
  private readonly gate = new Gate();
  /** Who created the file through this mount (credKey), while it stays open: only its SETATTRs may be owed. */
  madeBy?: string;
  /** The owed SETATTR (until its reply), the one being sent, and the timer that sends it at the latest. */
  owed?: Owed;
  private paying?: Promise<void>;
  private owedTimer?: NodeJS.Timeout;

  constructor(
    readonly fh: Buffer,
    readonly key: string,
    private readonly table: OpenFiles,
  ) {}

  /** Writes sent and not yet answered (write-behind): never two overlapping ones. */
  private inflight: Array<{ start: number; end: number; done: Promise<void> }> = [];
  inflightBytes = 0;
  /**
   * Failures of writes the program was already told had succeeded
   * (write-behind): counted, and the last one kept. Each is reported by the
   * next write() of the file, and by the next fsync() and the next close()
   * of every descriptor open when it happened (as Linux reports writeback
   * errors), so no program that checks fsync or close misses it.
   */
  private errors = 0;
  private lastError?: unknown;
  private writeSeen = 0;

  /** End of the furthest write not yet answered: the size stat must show at least. */
  get inflightEnd(): number {
    let e = 0;
    for (const w of this.inflight) if (w.end > e) e = w.end;
    return e;
  }

  /**
   * Write all of `data` at `offset` UNSTABLE (the caller's buffer is copied
   * first: the kernel's buffer is gone once the operation is answered).
   *
   * With `behind`, return as soon as the WRITE is sent (up to the table's
   * write-behind bound per file): like an NFS client's write-back, a failure
   * is then reported by the next write, flush, fsync or close. Writes that
   * overlap one in flight wait for it (two connections could reorder them).
   * Post-operation attributes go to the table's `onWrite`.
   */
  async write(cred: Credentials, offset: number, src: Buffer, behind: boolean): Promise<void> {
    // A write after an owed change of times must land after it (the write moves the mtime on).
    if (this.owed) await this.pay();
    this.raise();
    const data = Buffer.allocUnsafe(src.length);
    src.copy(data);
    // Held from now until the reply: a chunk read meanwhile could hold the bytes (or size) before this write.
    const release = this.ra?.hold() ?? (() => undefined);
    const start = offset;
    const end = offset + data.length;
    for (;;) {
      const clash = this.inflight.find((w) => w.start < end && start < w.end);
      const full = this.inflight.length > 0 && this.inflightBytes + data.length > this.table.maxBehindBytes;
      if (!clash && !full) break;
      await (clash ?? this.inflight[0]).done;
    }
    try {
      await this.gate.enter();
    } catch (e) {
      release();
      throw e;
    }
    this.inflightBytes += data.length;
    this.table.inflightBytes += data.length;
    const entry: { start: number; end: number; done: Promise<void>; err?: unknown } = { start, end, done: Promise.resolve() };
    const hooks = this.table.onWrite;
    hooks?.begin(this.key);
    entry.done = this.send(cred, offset, data)
      .then(
        (after) => hooks?.end(this.key, after),
        (e: unknown) => {
          hooks?.end(this.key, undefined);
          // A write the program waits for reports its own failure; one it was told had succeeded is counted.
          if (behind) this.fail(e, 'write', { offset, length: data.length });
          else entry.err = e;
        },
      )
      .finally(() => {
        this.inflight.splice(this.inflight.indexOf(entry), 1);
        this.inflightBytes -= data.length;
        this.table.inflightBytes -= data.length;
        this.gate.leave();
        release();
      });
    this.inflight.push(entry);
    const s = this.table.stats;
    s.writes++;
    s.bytesWritten += data.length;
    if (data.length > s.maxWrite) s.maxWrite = data.length;
    if (data.length >= 65536) s.largeWrites++;
    // Past the bound over all files, a write waits for its reply like any synchronous write.
    if (!behind || this.table.inflightBytes > 4 * this.table.maxBehindBytes) {
      await entry.done;
      if (entry.err !== undefined) throw entry.err;
      this.raise();
    }
    if (this.pendingBytes >= this.table.maxFileBytes || this.table.pendingBytes >= this.table.maxTotalBytes) await this.commit(cred);
  }

  private async send(cred: Credentials, offset: number, data: Buffer): Promise<Fattr3 | undefined> {
    let after: Fattr3 | undefined;
    let done = 0;
    while (done < data.length) {
      const r = await this.table.backend.write(cred, this.fh, offset + done, data.subarray(done), StableHow.UNSTABLE);
      if (r.count <= 0) throw new FsError('IO', `WRITE at ${offset + done} wrote nothing`);
      const n = Math.min(r.count, data.length - done);
      if (r.committed === StableHow.UNSTABLE) this.keep({ offset: offset + done, data: data.subarray(done, done + n), verf: r.verf });
      done += n;
      after = r.wcc.after ?? after;
    }
    return after;
  }

  /** A change the program was told had succeeded failed: counted and kept for the next write, fsync and close (see `errors`). */
  private fail(e: unknown, what: 'write' | 'SETATTR', detail: Record<string, unknown>): void {
    this.errors++;
    this.lastError = e;
    log.error({ file: this.key, ...detail, err: (e as Error).message }, `a ${what} the program was told had succeeded failed: reported by the next write, and by fsync and close of every descriptor`);
  }

  /**
   * Answer a SETATTR now and send it later, merged with any owed already:
   * with the file's close or fsync, before any other call about it, or
   * OWED_MAX_MS after the first, whichever comes first. The front end owes
   * only what the server cannot refuse (OpenFile.madeBy's caller, no set-id
   * bits, no size, no server clock): a failure all the same is counted like
   * a failed write-behind write — reported by the next write, fsync and
   * close of every descriptor, and logged.
   */
  async owe(cred: Credentials, attrs: Sattr3, shows: Owed['shows']): Promise<void> {
    while (this.paying) await this.paying;
    if (this.owed) {
      // Later fields win, the ctime shown too (each change marks it, as on a local disk).
      Object.assign(this.owed.attrs, attrs);
      Object.assign(this.owed.shows, shows);
    } else {
      this.owed = { cred, attrs: { ...attrs }, shows: { ...shows } };
      // Not unref'd: what is owed is sent before the process may end.
      this.owedTimer = setTimeout(() => void this.pay(), OWED_MAX_MS);
    }
    this.table.stats.setattrsOwed++;
  }

  /** Send the owed SETATTR, if any, after the writes in flight. Never throws (see owe): false if it failed. */
  async pay(): Promise<boolean> {
    while (this.paying) await this.paying;
    const o = this.owed;
    if (!o) return true;
    clearTimeout(this.owedTimer);
    this.owedTimer = undefined;
    let ok = false;
    this.paying = (async () => {
      // The writes before it first: a WRITE landing after it would move the mtime it sets.
      await this.settle();
      try {
        const w = await this.table.backend.setattr(o.cred, this.fh, o.attrs);
        this.table.stats.setattrsPaid++;
        this.owed = undefined;
        ok = true;
        this.table.onOwed?.(this.key, w.after);
      } catch (e) {
        this.owed = undefined;
        this.fail(e, 'SETATTR', { attrs: o.attrs });
        this.table.onOwed?.(this.key, undefined, e);
      }
    })().finally(() => (this.paying = undefined));
    await this.paying;
    return ok;
  }

  /** Report (once per write path) a failure of an earlier write. */
  private raise(): void {
    if (this.errors === this.writeSeen) return;
    this.writeSeen = this.errors;
    throw this.lastError;
  }

  /** Failures so far (a descriptor's starting point). */
  get errorCount(): number {
    return this.errors;
  }

  /** Throw the last failure if there was one since `fd` last reported through `path` (fsync or close). */
  check(fd: OpenFd, path: 'sync' | 'flush'): void {
    if (fd.seen[path] === this.errors) return;
    fd.seen[path] = this.errors;
    throw this.lastError;
  }

  /** Wait for the writes in flight (their failures are reported by check / the next write). */
  async drain(): Promise<void> {
    while (this.inflight.length) await Promise.all(this.inflight.map((w) => w.done));
  }

  /** Wait for the writes in flight, without reporting their failures (for reads). */
  async settle(): Promise<void> {
    while (this.inflight.length) await Promise.all(this.inflight.map((w) => w.done));
  }

  private keep(u: Uncommitted): void {
    this.pending.push(u);
    this.pendingBytes += u.data.length;
    this.table.pendingBytes += u.data.length;
  }

  /**
   * Make every write so far durable: COMMIT, and if its verifier is not the
   * one every kept write got, write them all again FILE_SYNC, in order (a
   * replay in the original order leaves what the program wrote, whatever
   * subset the server lost). On failure the writes stay kept for a later try.
   */
  async commit(cred: Credentials): Promise<Fattr3 | undefined> {
    await this.drain();
    if (this.pending.length === 0) return undefined;
    return this.gate.exclusive(async () => {
      const batch = this.pending;
      const bytes = this.pendingBytes;
      if (batch.length === 0) return undefined;
      this.pending = [];
      this.pendingBytes = 0;
      this.table.pendingBytes -= bytes;
      const { backend, stats } = this.table;
      try {
        const r = await backend.commit(cred, this.fh, 0, 0);
        stats.commits++;
        let after = r.wcc.after;
        if (batch.some((w) => !w.verf.equals(r.verf))) {
          log.warn({ file: this.key, writes: batch.length, bytes }, 'write verifier changed (server restarted?): writing uncommitted data again FILE_SYNC');
          for (const w of batch) {
            let done = 0;
            while (done < w.data.length) {
              const x = await backend.write(cred, this.fh, w.offset + done, w.data.subarray(done), StableHow.FILE_SYNC);
              if (x.count <= 0) throw new FsError('IO', `rewrite at ${w.offset + done} wrote nothing`);
              done += x.count;
              after = x.wcc.after ?? after;
            }
            stats.rewrites++;
          }
        }
        return after;
      } catch (e) {
        // Keep them (before anything written since) for the next flush/fsync/release.
        this.pending = batch.concat(this.pending);
        this.pendingBytes += bytes;
        this.table.pendingBytes += bytes;
        throw e;
      }
    });
  }
}

/**
 * The descriptor table: fd → OpenFd, and handle → OpenFile shared by all the
 * descriptors of one file (so an fsync on one descriptor covers writes made
 * through another, as POSIX wants). Bounded in kept data: past
 * `maxFileBytes` for a file or `maxTotalBytes` in all, a write commits.
 */
export class OpenFiles {
  private readonly fds = new Map<number, OpenFd>();
  private readonly files = new Map<string, OpenFile>();
  private nextFd = 1;
  pendingBytes = 0;
  /** Bytes of WRITEs in flight over all files. */
  inflightBytes = 0;
  readonly stats: WriteStats = { writes: 0, bytesWritten: 0, maxWrite: 0, largeWrites: 0, commits: 0, rewrites: 0, setattrsOwed: 0, setattrsPaid: 0 };

  private timer?: NodeJS.Timeout;
  private background?: Promise<void>;

  /**
   * `deferCommitMs`: 0 commits on every close (flush) and release; above 0,
   * close only waits for the WRITEs, and COMMIT happens in the background
   * that long after (and on fsync, at the bounds, and at unmount).
   */
  constructor(
    readonly backend: Backend,
    readonly maxFileBytes: number,
    readonly maxTotalBytes: number,
    readonly deferCommitMs = 0,
    private readonly backgroundCred?: () => Credentials,
    /** Bytes of WRITEs in flight per file before a write waits (0: every write waits for its reply). */
    readonly maxBehindBytes = 0,
  ) {}

  /** A WRITE of a file goes out / came back, with its post-operation attributes (the front end's attribute cache). */
  onWrite?: { begin(key: string): void; end(key: string, a: Fattr3 | undefined): void };
  /** An owed SETATTR was answered by the backend (its post-operation attributes), or failed. */
  onOwed?: (key: string, a: Fattr3 | undefined, err?: unknown) => void;

  get count(): number {
    return this.fds.size;
  }

  open(fh: Buffer, key: string, o: { append: boolean; writable: boolean }): OpenFd {
    let file = this.files.get(key);
    if (!file) {
      file = new OpenFile(fh, key, this);
      this.files.set(key, file);
    }
    file.refs++;
    // FUSE file handles cross the binding as int32, and 0 means "none".
    while (this.fds.has(this.nextFd) || this.nextFd === 0) this.nextFd = (this.nextFd % 0x7fffffff) + 1;
    const fd: OpenFd = { fd: this.nextFd, file, append: o.append, writable: o.writable, seen: { sync: file.errorCount, flush: file.errorCount } };
    this.fds.set(fd.fd, fd);
    this.nextFd = (this.nextFd % 0x7fffffff) + 1;
    return fd;
  }

  get(fd: number): OpenFd {
    const f = this.fds.get(fd);
    if (!f) throw new FsError('INVAL', `no open file ${fd}`);
    return f;
  }

  /** The open file of a handle, if any descriptor has it open. */
  file(key: string): OpenFile | undefined {
    return this.files.get(key);
  }

  /** A close (flush): commit now, or leave it to the background committer. */
  async flush(cred: Credentials, fd: number): Promise<Fattr3 | undefined> {
    const f = this.get(fd);
    if (this.deferCommitMs > 0) {
      await f.file.drain();
      await f.file.pay();
      if (f.file.pendingBytes > 0) this.schedule();
      f.file.check(f, 'flush');
      return undefined;
    }
    const after = await payAndCommit(f.file, cred);
    f.file.check(f, 'flush');
    return after;
  }

  /** fsync: every write so far durable, and any failure since this descriptor's last fsync reported. */
  async sync(cred: Credentials, fd: number): Promise<Fattr3 | undefined> {
    const f = this.get(fd);
    const after = await payAndCommit(f.file, cred);
    f.file.check(f, 'sync');
    return after;
  }

  /** Send every owed SETATTR (before a change of names: a file's ctime and nlink move with it). */
  async payAll(): Promise<void> {
    await Promise.all([...this.files.values()].map((f) => (f.owed ? f.pay() : undefined)));
  }

  /** Forget a descriptor; the file's kept writes are committed when its last descriptor goes (or later, if deferred). */
  async release(cred: Credentials, fd: number): Promise<void> {
    const f = this.fds.get(fd);
    if (!f) return;
    this.fds.delete(fd);
    const file = f.file;
    file.refs--;
    await file.pay();
    if (this.deferCommitMs > 0) {
      await file.drain();
      if (file.pendingBytes > 0) this.schedule();
      else if (file.refs === 0) this.files.delete(file.key);
      return;
    }
    try {
      await file.commit(cred);
    } finally {
      if (file.refs === 0 && file.pendingBytes === 0) this.files.delete(file.key);
    }
  }

  private schedule(): void {
    if (this.timer || !this.backgroundCred) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.background = this.commitPending().finally(() => (this.background = undefined));
    }, this.deferCommitMs);
    this.timer.unref();
  }

  /** The background committer: every file with kept writes; failures stay kept and are tried again. */
  private async commitPending(): Promise<void> {
    const cred = this.backgroundCred!();
    let failed = 0;
    await Promise.all(
      [...this.files.values()].map(async (file) => {
        if (file.pendingBytes === 0) return;
        try {
          await file.commit(cred);
        } catch (e) {
          failed++;
          log.error({ file: file.key, err: (e as Error).message }, 'background COMMIT failed; the data is kept and committed again later');
        }
        if (file.refs === 0 && file.pendingBytes === 0) this.files.delete(file.key);
      }),
    );
    if (failed) this.schedule();
  }

  /** Commit everything kept (at unmount); failures are logged and counted, not thrown. */
  async commitAll(cred: Credentials): Promise<number> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.background;
    let failed = 0;
    for (const file of this.files.values()) {
      try {
        if (!(await file.pay())) failed++;
        await file.commit(cred);
      } catch (e) {
        failed++;
        log.error({ file: file.key, err: (e as Error).message }, 'could not commit written data at unmount');
      }
    }
    return failed;
  }
}

/**
 * Close and fsync: the owed SETATTR and the COMMIT go out together once the
 * writes are answered (neither moves what the other sets), so a file that
 * tar wrote, timed, chowned and chmodded costs one round trip at close.
 */
async function payAndCommit(file: OpenFile, cred: Credentials): Promise<Fattr3 | undefined> {
  if (!file.owed) return file.commit(cred);
  await file.drain();
  const [, after] = await Promise.all([file.pay(), file.commit(cred)]);
  return after;
}
