import { FsError, isFsError, type FsErrorCode } from '../../backend/errors.js';
import type { WccData, WriteResult } from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import { logger } from '../../util/log.js';
import { ExtentMap } from './extent-map.js';
import { jitter, JITTER } from './test-jitter.js';
import { JournalError, type Journal, type JournalSattr, type JournalWrite, type RecoveredFile } from './journal.js';

const log = logger('cache');

/**
 * Write-back: WRITEs are journalled and acknowledged locally, then delivered
 * to the server ("flushed") later — on request (`gvfs flush`, session end),
 * when the backlog passes `dirtyLimit`, or when a file's oldest unflushed
 * write is `maxAgeMs` old.
 *
 * Order: a file's WRITEs reach the server in the order the program made
 * them, one WRITE on the wire at a time, so the server only ever holds a
 * state the program's writes produced in that order (consecutive records
 * that touch or overlap are merged into one WRITE, which skips intermediate
 * states but never invents one). Files flush independently. A round ends
 * with COMMIT; only when the server's verifier is unchanged across the round
 * does a DONE mark go into the journal (fsync'd) and the records retire. A
 * changed verifier (the server restarted and may have lost UNSTABLE data)
 * replays the round from its start.
 *
 * A change of mode, owner or times made after a file's unflushed WRITEs
 * (tar: write, then chown, chmod, utimes) is journalled too, in order: a
 * round sends its WRITEs, then the round's SETATTRs merged into one, and
 * stops before any WRITE made after them (the cache decides which SETATTRs
 * may wait: cache-backend.ts `mayJournal`).
 *
 * A crash between a round's first WRITE and its DONE mark replays the round
 * after restart: the end state is exact, though while the replay runs the
 * server can briefly hold newer bytes of the round next to older ones.
 *
 * Failures (server unreachable, file removed on the server, permission,
 * server disk full) keep the records: the file's error is logged, shown in
 * `gvfs cache stats`, retried with backoff, and the data stays until a flush
 * succeeds or `discard` drops it.
 */
export interface WriteBackOptions {
  /** Backlog (bytes) above which a flush of everything starts. */
  dirtyLimit: number;
  /** Backlog (bytes) above which new writes wait for room; after `admitWaitMs` without progress they fail NOSPC. */
  dirtyMax: number;
  /** A file's unflushed writes are delivered at the latest this long after the first of them. */
  maxAgeMs: number;
  /** Largest WRITE sent to the server. */
  flushWriteBytes: number;
  /** Bytes delivered per round (then COMMIT and a DONE mark). */
  roundBytes: number;
  admitWaitMs: number;
  /** Files flushed at once. */
  flushParallel: number;
}

/** What a flush needs from the layer below and tells the cache above. */
export interface FlushSink {
  /** One UNSTABLE WRITE to the server. */
  write(cred: Credentials, fh: Buffer, offset: number, data: Buffer): Promise<WriteResult>;
  commit(cred: Credentials, fh: Buffer): Promise<{ verf: Buffer; wcc: WccData }>;
  /** The SETATTRs of a round, merged, after its WRITEs (keeping the read cache right is the sink's own). */
  setattr(cred: Credentials, fh: Buffer, attrs: JournalSattr): Promise<void>;
  /** Our WRITE is about to go / went (ok or not) to the server: keep the read cache right. */
  writeStart(fh: Buffer): void;
  writeEnd(fh: Buffer, offset: number, length: number, wcc: WccData | undefined, ok: boolean): void;
  /**
   * A round of the file's writes is on the server and committed: `ranges`
   * are what its records wrote; `bytes(start, end)` reads back what the
   * server now holds there from the journal, or undefined unless the round
   * wrote all of it and no later write touches it. (The cache keeps such
   * blocks as clean blocks of the new version.) Failures are the sink's own.
   */
  flushed?(fh: Buffer, ranges: Array<[number, number]>, bytes: (start: number, end: number) => Promise<Buffer | undefined>): Promise<void>;
  /** Unflushed writes of the file were discarded: what the cache presents for it must be checked again. */
  discarded(fh: Buffer): void;
  /**
   * What a log line about the file says besides its handle: the session,
   * the server (`peer`) and the file's path as the cache last saw it
   * (path-book.ts). Called only when a line is logged.
   */
  describe?(fh: Buffer): { session?: string; peer?: string; path?: string };
}

/**
 * The journal did not take a write (its disk is full, or it is broken):
 * nothing of the write was acknowledged or recorded. The cache sends such a write to the
 * server itself instead (write-through).
 */
export class JournalRefused extends FsError {
  override name = 'JournalRefused';
}

export interface FlushFailure {
  fh: string;
  /** The file's path as this session last saw it (path-book.ts), when known. */
  path?: string;
  code: FsErrorCode;
  message: string;
  bytes: number;
}

export interface FlushReport {
  flushedBytes: number;
  flushedFiles: number;
  failed: FlushFailure[];
  discardedBytes: number;
}

class DirtyFile implements Dirty {
  readonly writes: JournalWrite[] = [];
  readonly extents = new ExtentMap();
  backlog = 0;
  /** When each pending write was journalled (parallel to `writes`). */
  readonly times: number[] = [];
  lastWriteAt = 0;
  /** Pending SETATTRs merged (what the file will have once they are delivered), and when the last was made. */
  attrs: JournalSattr = {};
  attrsAt = 0;
  /** The last pending change of the file's mtime is a SETATTR's (not a WRITE's). */
  mtimeSet = false;
  flushing?: Promise<void>;
  error?: { code: FsErrorCode; message: string; at: number };
  failures = 0;
  retryAt = 0;
  constructor(
    readonly key: string,
    readonly fileNo: number,
    readonly fh: Buffer,
    public cred: Credentials,
  ) {}
  get maxEnd(): number {
    return this.extents.maxEnd;
  }
  get lastSeq(): number {
    return this.writes.length ? this.writes[this.writes.length - 1].seq : 0;
  }
}

export class WriteBack {
  private readonly files = new Map<string, DirtyFile>();
  private timer?: NodeJS.Timeout;
  private all?: Promise<FlushReport>;
  /** The flush-all that starts when the running one ends (for callers that came while it ran). */
  private again?: Promise<FlushReport>;
  private closed = false;
  readonly stats = { flushedBytes: 0, flushRounds: 0, flushFailures: 0, discardedBytes: 0, replays: 0, writesRefused: 0 };

  constructor(
    readonly journal: Journal,
    private readonly sink: FlushSink,
    private readonly o: WriteBackOptions,
    recovered: RecoveredFile[] = [],
  ) {
    const now = Date.now();
    for (const r of recovered) {
      const d = new DirtyFile(r.fh.toString('hex'), r.fileNo, r.fh, r.cred);
      for (const w of r.writes) this.add(d, w, now);
      this.files.set(d.key, d);
    }
    this.timer = setInterval(() => this.tick(), Math.min(1000, Math.max(50, o.maxAgeMs / 4)));
    this.timer.unref();
  }

  /** The fields of a log line about `d` (session, peer, path, handle). */
  private about(d: DirtyFile): Record<string, unknown> {
    return { ...this.sink.describe?.(d.fh), fh: d.key };
  }

  /** Recovered files, for the log at start. */
  get recoveredSummary(): { files: number; bytes: number } {
    return { files: this.files.size, bytes: this.backlogBytes };
  }

  get dirtyBytes(): number {
    let n = 0;
    for (const d of this.files.values()) n += d.extents.bytes;
    return n;
  }
  get backlogBytes(): number {
    let n = 0;
    for (const d of this.files.values()) n += d.backlog;
    return n;
  }
  get backlog(): { files: number; records: number; bytes: number } {
    let records = 0;
    let bytes = 0;
    let files = 0;
    for (const d of this.files.values()) {
      if (!d.writes.length) continue;
      files++;
      records += d.writes.length;
      bytes += d.backlog;
    }
    return { files, records, bytes };
  }
  get errors(): FlushFailure[] {
    return [...this.files.values()].filter((d) => d.error && d.writes.length).map((d) => ({ fh: d.key, path: this.sink.describe?.(d.fh).path, code: d.error!.code, message: d.error!.message, bytes: d.backlog }));
  }

  /** The file has unflushed writes: its size and data (and the fields of `attrs`) differ from the server's. */
  dirty(key: string): Dirty | undefined {
    const d = this.files.get(key);
    return d && d.writes.length ? d : undefined;
  }

  /** Journal a WRITE; resolves once it is acknowledged-safe (durable if `sync`). */
  async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: number, sync: boolean): Promise<void> {
    if (this.closed) throw new FsError('IO', 'write-back cache is closing');
    await this.admit(data.length, fh);
    const key = fh.toString('hex');
    const fileNo = this.files.get(key)?.fileNo ?? this.journal.fileNoFor(fh);
    const copy = Buffer.from(fh);
    try {
      // Recorded as the journal takes it, into the file's entry as it is *then*: while the append
      // was waiting, a flush may have delivered the file's other writes and forgotten the entry
      // (a write added to that orphan would never be flushed, nor read back, and a later DONE
      // mark would drop it from the journal too).
      await this.journal.write(fileNo, copy, cred, offset, data, stable, sync, (w) => {
        let d = this.files.get(key);
        if (!d) this.files.set(key, (d = new DirtyFile(key, fileNo, copy, cred)));
        d.cred = cred;
        this.add(d, w, Date.now());
      });
    } catch (e) {
      this.stats.writesRefused++;
      throw refusal(e);
    }
    if (this.backlogBytes > this.o.dirtyLimit) void this.flushAll().catch(() => undefined);
  }

  /**
   * Journal a SETATTR, to be delivered after the file's unflushed writes (there must be some, unless `alone`:
   * a directory's); resolves once it is on the journal's disk. JournalRefused: the caller sends it itself.
   */
  async setattr(cred: Credentials, fh: Buffer, attrs: JournalSattr, alone = false): Promise<void> {
    if (this.closed) throw new FsError('IO', 'write-back cache is closing');
    const key = fh.toString('hex');
    const d0 = this.files.get(key);
    if (!d0?.writes.length && !alone) throw new JournalRefused('IO', 'a SETATTR is journalled only after unflushed writes of the file');
    const fileNo = d0?.fileNo ?? this.journal.fileNoFor(fh);
    const copy = d0?.fh ?? Buffer.from(fh);
    try {
      await this.journal.setattr(fileNo, copy, cred, attrs, true, (w) => {
        let d = this.files.get(key);
        // Its writes were delivered while the append waited (or it had none): the SETATTR is still owed.
        if (!d) this.files.set(key, (d = new DirtyFile(key, fileNo, copy, cred)));
        d.cred = cred;
        this.add(d, w, Date.now());
      });
    } catch (e) {
      throw refusal(e);
    }
  }

  private add(d: DirtyFile, w: JournalWrite, now: number): void {
    // Journal order is seq order; keep it even if continuations ran out of order.
    let i = d.writes.length;
    while (i > 0 && d.writes[i - 1].seq > w.seq) i--;
    d.writes.splice(i, 0, w);
    d.times.splice(i, 0, now);
    if (w.sattr) {
      Object.assign(d.attrs, w.sattr);
      d.attrsAt = now;
      if (w.sattr.mtime) d.mtimeSet = true;
      return;
    }
    d.extents.insert({ start: w.offset, end: w.offset + w.length, seq: w.seq, seg: w.seg, pos: w.pos });
    d.backlog += w.length;
    d.lastWriteAt = now;
    d.mtimeSet = false;
  }

  /** Wait for room under dirtyMax; NOSPC when flushing cannot make it. */
  private async admit(len: number, fh: Buffer): Promise<void> {
    if (this.backlogBytes + len <= this.o.dirtyMax) return;
    const deadline = Date.now() + this.o.admitWaitMs;
    while (this.backlogBytes + len > this.o.dirtyMax) {
      const before = this.backlogBytes;
      const r = await this.flushAll();
      if (this.backlogBytes + len <= this.o.dirtyMax) return;
      if (this.backlogBytes >= before || Date.now() > deadline) {
        this.stats.writesRefused++;
        const why = r.failed.length ? `the server is not taking it (${r.failed[0].code}: ${r.failed[0].message})` : 'flushing is not keeping up';
        log.warn({ ...this.sink.describe?.(fh), fh: fh.toString('hex'), reason: why, backlog: this.backlogBytes, dirtyMax: this.o.dirtyMax }, `cache: write-back backlog full; refusing a write (NOSPC): ${why}`);
        // Not a refusal to write around: flushing (which writing around needs first) is what cannot make progress.
        throw new FsError('NOSPC', `write-back cache full: ${this.backlogBytes} bytes not yet on the server and ${why}`);
      }
    }
  }

  /** Make everything journalled so far durable (COMMIT). */
  commit(): Promise<void> {
    return this.journal.sync().catch((e) => {
      throw new FsError('IO', `write-back journal: ${(e as Error).message}`);
    });
  }

  /**
   * The unflushed bytes of [start, end) of a file, read from the journal
   * now: overlay them on the server's bytes. Read before the server's bytes
   * are looked up, so a flush finishing in between cannot hide them.
   */
  async overlay(key: string, start: number, end: number): Promise<Array<{ start: number; data: Buffer }>> {
    const d = this.files.get(key);
    if (!d || !d.extents.size) return [];
    const xs = d.extents.query(start, end);
    if (!xs.length) return [];
    for (const x of xs) this.journal.pin(x.seg);
    try {
      return await Promise.all(
        xs.map(async (x) => {
          const data = Buffer.allocUnsafe(x.end - x.start);
          await this.journal.read(x.seg, x.pos, data, 0, data.length);
          return { start: x.start, data };
        }),
      );
    } finally {
      for (const x of xs) this.journal.unpin(x.seg);
    }
  }

  /** Deliver every write of the file made before this call; throws the FsError that stopped it. */
  async flushFile(key: string): Promise<void> {
    const d = this.files.get(key);
    if (!d) return;
    const target = d.lastSeq;
    for (;;) {
      // Several callers may wait for one round: each checks again, or two rounds would send (and retire) the same records.
      while (d.flushing) await d.flushing.catch(() => undefined);
      if (!d.writes.length || d.writes[0].seq > target) return;
      d.flushing = this.round(d, target);
      try {
        await d.flushing;
      } finally {
        d.flushing = undefined;
      }
      if (!d.writes.length) this.forget(d);
    }
  }

  /**
   * Flush every file (a few at a time); resolves once everything written
   * before the call is delivered (or has failed). One flush-all runs at once.
   */
  flushAll(): Promise<FlushReport> {
    if (!this.all) return this.startAll();
    // The running one took its list of files when it started: writes made since may not be in it.
    // Callers that come while it runs share one more run after it, reported together with it.
    if (!this.again) {
      this.again = this.all.then(async (first) => {
        this.again = undefined;
        const r = await this.startAll();
        return { flushedBytes: first.flushedBytes + r.flushedBytes, flushedFiles: first.flushedFiles + r.flushedFiles, failed: r.failed, discardedBytes: first.discardedBytes + r.discardedBytes };
      });
    }
    return this.again;
  }

  private startAll(): Promise<FlushReport> {
    const p = (async () => {
      const report: FlushReport = { flushedBytes: 0, flushedFiles: 0, failed: [], discardedBytes: 0 };
      const queue = [...this.files.values()].filter((d) => d.writes.length);
      const worker = async () => {
        for (let d = queue.shift(); d; d = queue.shift()) {
          const before = d.backlog;
          try {
            await this.flushFile(d.key);
            report.flushedFiles++;
            report.flushedBytes += before - d.backlog;
          } catch (e) {
            report.failed.push({ fh: d.key, path: this.sink.describe?.(d.fh).path, code: isFsError(e) ? e.code : 'IO', message: (e as Error).message, bytes: d.backlog });
          }
        }
      };
      await Promise.all(Array.from({ length: this.o.flushParallel }, worker));
      return report;
    })();
    this.all = p;
    void p.finally(() => {
      if (this.all === p) this.all = undefined;
    });
    return p;
  }

  /**
   * Drop unflushed writes without delivering them: of the given files, or of
   * every file whose last flush failed. Logged as a warning with the bytes lost.
   */
  async discard(keys?: string[]): Promise<number> {
    const targets = keys ? keys.map((k) => this.files.get(k)).filter((d): d is DirtyFile => !!d) : [...this.files.values()].filter((d) => d.error);
    let dropped = 0;
    for (const d of targets) {
      while (d.flushing) await d.flushing.catch(() => undefined);
      if (!d.writes.length) continue;
      const upTo = d.lastSeq;
      await this.journal.mark('discard', d.fileNo, upTo, true);
      const gone = d.writes.splice(0, d.writes.length);
      d.times.length = 0;
      const bytes = gone.reduce((n, w) => n + w.length, 0);
      dropped += bytes;
      log.warn({ ...this.about(d), bytes, records: gone.length, reason: 'discarded on request', error: d.error?.message }, 'cache: DISCARDED unflushed writes on request; the server never got them');
      d.extents.dropUpTo(upTo);
      d.backlog = 0;
      this.journal.release(gone);
      this.forget(d);
      this.sink.discarded(d.fh);
    }
    this.stats.discardedBytes += dropped;
    return dropped;
  }

  private forget(d: DirtyFile): void {
    if (!d.writes.length && !d.flushing && this.files.get(d.key) === d) this.files.delete(d.key);
  }

  /** One round: WRITEs in order up to `target` (at most roundBytes), the SETATTRs after them (none after a later WRITE), COMMIT, DONE mark. */
  private async round(d: DirtyFile, target: number): Promise<void> {
    const take: JournalWrite[] = [];
    const writes: JournalWrite[] = [];
    let sattr: JournalSattr | undefined;
    let bytes = 0;
    for (const w of d.writes) {
      if (w.seq > target || (take.length && bytes + w.length > this.o.roundBytes)) break;
      if (w.sattr) sattr = { ...sattr, ...w.sattr };
      else if (sattr) break;
      else writes.push(w);
      take.push(w);
      bytes += w.length;
    }
    if (!take.length) return;
    const last = take[take.length - 1].seq;
    try {
      for (let attempt = 0; ; attempt++) {
        const verf = await this.deliver(d, writes);
        if (sattr) {
          if (JITTER) await jitter();
          await this.sink.setattr(d.cred, d.fh, sattr);
        }
        if (verf === null) break;
        if (JITTER) await jitter();
        const c = await this.sink.commit(d.cred, d.fh);
        if (verf && c.verf.equals(verf)) break;
        this.stats.replays++;
        if (attempt >= 3) throw new FsError('IO', 'the server keeps changing its write verifier (restarting?); will retry');
        log.warn({ ...this.about(d), reason: 'write verifier changed' }, 'cache: server write verifier changed during a flush (server restart?); resending the round');
      }
      await this.journal.mark('done', d.fileNo, last, true);
      // The round's records are still held here (released below): the cache may keep what they wrote.
      if (this.sink.flushed) {
        if (JITTER) await jitter();
        await this.sink
          .flushed(d.fh, writes.map((w) => [w.offset, w.offset + w.length]), (start, end) => this.roundBytes(d, last, start, end))
          .catch((e) => log.warn({ ...this.about(d), err: e }, 'cache: keeping flushed blocks failed; they will be fetched again'));
      }
    } catch (e) {
      const err = isFsError(e) ? e : new FsError('IO', (e as Error).message);
      d.failures++;
      d.retryAt = Date.now() + Math.min(60_000, 1000 * 2 ** Math.min(d.failures - 1, 6));
      this.stats.flushFailures++;
      // Every failure (retries back off to one a minute per file): warn, the data is safe in the journal.
      const hint = err.code === 'STALE' || err.code === 'BADHANDLE' ? ' (the file was removed on the server?)' : err.code === 'IO' ? ' (server unreachable?)' : '';
      log.warn(
        { ...this.about(d), code: err.code, reason: err.message, pending: d.backlog, failures: d.failures, retryInMs: d.retryAt - Date.now() },
        `cache: flush failed${hint}; the unflushed data stays in the journal until a flush succeeds or gvfs flush --discard drops it`,
      );
      d.error = { code: err.code, message: err.message, at: Date.now() };
      throw err;
    }
    const i = d.writes.indexOf(take[take.length - 1]);
    const gone = d.writes.splice(0, i + 1);
    d.extents.dropUpTo(last);
    d.backlog -= bytes;
    d.times.splice(0, i + 1);
    d.error = undefined;
    d.failures = 0;
    this.journal.release(gone);
    this.stats.flushedBytes += bytes;
    this.stats.flushRounds++;
    log.debug({ fh: d.key, bytes, records: gone.length }, 'cache: flushed');
  }

  /** [start, end) as the records up to `last` left it, if they cover all of it and no later record touches it (see FlushSink.flushed). */
  private async roundBytes(d: DirtyFile, last: number, start: number, end: number): Promise<Buffer | undefined> {
    const xs = d.extents.query(start, end);
    let at = start;
    for (const x of xs) {
      if (x.start !== at || x.seq > last) return undefined;
      at = x.end;
    }
    if (at !== end) return undefined;
    const buf = Buffer.allocUnsafe(end - start);
    for (const x of xs) this.journal.pin(x.seg);
    try {
      await Promise.all(xs.map((x) => this.journal.read(x.seg, x.pos, buf, x.start - start, x.end - x.start)));
    } finally {
      for (const x of xs) this.journal.unpin(x.seg);
    }
    return buf;
  }

  /** Send the records in order, merging neighbours; returns the verifier all WRITEs agreed on (undefined: they did not; null: nothing to send). */
  private async deliver(d: DirtyFile, take: JournalWrite[]): Promise<Buffer | undefined | null> {
    let verf: Buffer | undefined;
    let agreed = true;
    for (const run of runs(take, this.o.flushWriteBytes)) {
      const data = Buffer.alloc(run.end - run.start);
      for (const w of run.parts) this.journal.pin(w.seg);
      try {
        const parts = await Promise.all(
          run.parts.map(async (w) => {
            const b = Buffer.allocUnsafe(w.length);
            await this.journal.read(w.seg, w.pos, b, 0, w.length);
            return b;
          }),
        );
        run.parts.forEach((w, i) => parts[i].copy(data, w.offset - run.start));
      } finally {
        for (const w of run.parts) this.journal.unpin(w.seg);
      }
      for (let off = 0; off < data.length; ) {
        const n = Math.min(this.o.flushWriteBytes, data.length - off);
        const chunk = data.subarray(off, off + n);
        this.sink.writeStart(d.fh);
        let r: WriteResult;
        try {
          if (JITTER) await jitter();
          r = await this.sink.write(d.cred, d.fh, run.start + off, chunk);
          if (JITTER) await jitter();
        } catch (e) {
          this.sink.writeEnd(d.fh, run.start + off, n, (e as FsError).wcc, false);
          throw e;
        }
        this.sink.writeEnd(d.fh, run.start + off, r.count, r.wcc, true);
        if (r.count <= 0) throw new FsError('IO', 'the server wrote nothing');
        if (!verf) verf = Buffer.from(r.verf);
        else if (!verf.equals(r.verf)) agreed = false;
        off += r.count;
      }
    }
    if (!verf) return null;
    return agreed ? verf : undefined;
  }

  private tick(): void {
    const now = Date.now();
    for (const d of this.files.values()) {
      if (!d.writes.length || d.flushing || now < d.retryAt) continue;
      if (now - d.times[0] >= this.o.maxAgeMs) void this.flushFile(d.key).catch(() => undefined);
    }
  }

  /** Session end: deliver everything; what cannot be delivered stays journalled for the next start. */
  async close(): Promise<FlushReport> {
    this.closed = true;
    clearInterval(this.timer);
    const r = await this.flushAll();
    if (r.failed.length) log.error({ failed: r.failed }, 'cache: session ended with unflushed data; it stays in the journal (restart on this cache directory, or gvfs flush, delivers it)');
    return r;
  }
}

/** What the cache presents of a file with unflushed changes (see WriteBack.dirty). */
export interface Dirty {
  readonly maxEnd: number;
  readonly lastWriteAt: number;
  readonly attrs: Readonly<JournalSattr>;
  readonly attrsAt: number;
  readonly mtimeSet: boolean;
  /** Who made the file's latest change. */
  readonly cred: Credentials;
}

/** The journal did not take a record: the caller sends the change itself (NOSPC when its disk is full). */
function refusal(e: unknown): JournalRefused {
  const je = e as JournalError;
  return new JournalRefused(je.errno === 'ENOSPC' || je.errno === 'EDQUOT' ? 'NOSPC' : 'IO', `write-back journal: ${je.message}`);
}

interface Run {
  start: number;
  end: number;
  parts: JournalWrite[];
}

/** Consecutive records that touch or overlap, merged while the merged range stays within `max`. */
export function runs(ws: JournalWrite[], max: number): Run[] {
  const out: Run[] = [];
  let cur: Run | undefined;
  for (const w of ws) {
    const s = w.offset;
    const e = w.offset + w.length;
    if (cur && s <= cur.end && e >= cur.start && Math.max(cur.end, e) - Math.min(cur.start, s) <= max) {
      cur.start = Math.min(cur.start, s);
      cur.end = Math.max(cur.end, e);
      cur.parts.push(w);
    } else {
      cur = { start: s, end: e, parts: [w] };
      out.push(cur);
    }
  }
  return out;
}
