import path from 'node:path';
import { crc32 } from 'node:zlib';
import type { NfsTime, Sattr3 } from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import { AuthFlavor } from '../../rpc/types.js';
import { logger } from '../../util/log.js';
import * as f from './fs-cb.js';

const log = logger('cache');

/**
 * The write-back journal: an append-only log, in numbered segment files
 * (journal-00000001.log, ...) in the session's directory, of the WRITEs a
 * session acknowledged but has not yet delivered to the server.
 *
 * Record: a 24-byte header, then the payload (integers little-endian):
 *
 *   0  u32 magic 0x4A564756     4  u8 type, 3 bytes zero     8  u32 payload length
 *   12 u32 CRC-32 of bytes 4..12, 16..24 and the payload    16 u64 sequence number
 *
 *   FILE    u32 fileNo, u32 uid, u32 gid, u16 ngids, u16 fhlen, ngids x u32, fh
 *           (a file's handle and the credentials to flush it with; repeated in
 *           every segment that has WRITEs of the file, so a segment can be
 *           read without the ones before it)
 *   WRITE   u32 fileNo, u32 stable_how, u64 offset, data
 *   DONE    u32 fileNo, u64 upTo   (the file's WRITEs with seq <= upTo are on the
 *           server, committed)
 *   DISCARD u32 fileNo, u64 upTo   (dropped by `gvfs flush --discard`)
 *   SETATTR u32 fileNo, u32 fields (bit 0 mode, 1 uid, 2 gid, 3 atime, 4 mtime),
 *           u32 mode, u32 uid, u32 gid, u32 atime s, u32 atime ns, u32 mtime s,
 *           u32 mtime ns (a change of mode, owner or times the cache acknowledged
 *           after the file's WRITEs before it: delivered after them, before later
 *           ones; DONE covers it like a WRITE)
 *
 * Durability: a batch of records is written with one writev; when any of
 * them needs stability (FILE_SYNC / DATA_SYNC writes, COMMIT, DONE) the
 * segment is fdatasync'd before any is acknowledged. A kill -9 cannot tear an
 * acknowledged record (the write had returned); a machine crash can lose
 * only what was never fsync'd — UNSTABLE writes, which NFS clients resend
 * when the write verifier changes, as it does on every start. Recovery reads
 * each segment up to its first bad record (a torn tail, never acknowledged).
 * Before a new segment is started the old one is fsync'd, so a later segment
 * never outlives an earlier one. A failed append (disk full) is cut off again
 * with ftruncate; if even that fails the journal refuses further writes.
 *
 * Segments are deleted oldest first, once every WRITE in them and in all
 * older ones is DONE or DISCARDed (and they are not being appended to), so a
 * DONE mark never disappears before the WRITEs it covers. A WRITE that cannot
 * be delivered (server gone) therefore keeps newer segments too.
 */
const MAGIC = 0x4a564756;
const HDR = 24;
const enum RT {
  FILE = 1,
  WRITE = 2,
  DONE = 3,
  DISCARD = 4,
  SETATTR = 5,
}
const WRITE_HDR = 16;
const SETATTR_LEN = 36;
const MAX_PAYLOAD = 64 << 20;
const BATCH_RECORDS = 256;
/** A current segment whose WRITEs are all delivered is replaced once it holds this much. */
const ROLL_EMPTY_BYTES = 1 << 20;
/**
 * Disk kept back (a file of zeros) for DONE / DISCARD marks: on a full disk
 * the journal could otherwise not retire what it delivered, and so never
 * free a segment again. Released when a mark meets ENOSPC; until it can be
 * made again, the journal refuses WRITEs (the cache then writes through).
 */
const RESERVE_BYTES = 256 << 10;
const RESERVE_FILE = 'journal.reserve';
const isNoSpace = (e: unknown) => {
  const x = e as { code?: unknown; errno?: unknown } | undefined;
  return ['ENOSPC', 'EDQUOT'].some((c) => x?.code === c || x?.errno === c);
};

export interface JournalWrite {
  seq: number;
  fileNo: number;
  offset: number;
  length: number;
  seg: number;
  /** Journal file position of the data. */
  pos: number;
  /** A SETATTR record (length 0): the fields it sets (never a size, never the server's time). */
  sattr?: JournalSattr;
}

/** What a SETATTR record can carry: sattr3 without size, with times given by the client. */
export type JournalSattr = Omit<Sattr3, 'size' | 'atime' | 'mtime'> & { atime?: NfsTime; mtime?: NfsTime };

export interface RecoveredFile {
  fileNo: number;
  fh: Buffer;
  cred: Credentials;
  /** Pending WRITEs (and SETATTRs) in order. */
  writes: JournalWrite[];
}

export interface JournalOptions {
  segmentBytes?: number;
  /** Tests: called before each append; an error returned is thrown as if the write failed (ENOSPC). */
  failAppend?: (bytes: number) => NodeJS.ErrnoException | undefined;
}

interface Segment {
  no: number;
  file: string;
  fd: number;
  size: number;
  live: number;
  pins: number;
  deleted: boolean;
  /** fileNo → credentials key of the FILE record already in this segment. */
  declared: Map<number, string>;
}

interface Req {
  /** A WRITE (data) rather than a mark: refused while the journal is short of disk (see `reserve`). */
  data?: boolean;
  /** Lay the record(s) out at `pos` in segment `seg`; returns the buffers. */
  build: (seg: Segment, pos: number, declared: Map<number, string>) => Buffer[];
  sync: boolean;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class JournalError extends Error {
  override name = 'JournalError';
  constructor(
    message: string,
    readonly errno?: string,
  ) {
    super(message);
  }
}

export class Journal {
  private readonly segs = new Map<number, Segment>();
  private cur!: Segment;
  private seq = 0;
  private nextFileNo = 1;
  /** The highest segment number met on disk or started: numbers are never reused (a finished segment's unlink may still be on its way). */
  private lastSegNo = 0;
  private readonly fileNos = new Map<string, number>();
  private queue: Req[] = [];
  private draining = false;
  private broken?: Error;
  private rollSoon = false;
  private readonly segmentBytes: number;
  /** The mark reserve is released: WRITEs are refused until it can be made again. */
  private short = false;

  private constructor(
    readonly dir: string,
    private readonly o: JournalOptions,
  ) {
    this.segmentBytes = o.segmentBytes ?? 64 << 20;
  }

  /** Open (creating) the journal in `dir` and recover what it holds. */
  static async open(dir: string, o: JournalOptions = {}): Promise<{ journal: Journal; files: RecoveredFile[] }> {
    await f.mkdir(dir);
    const j = new Journal(dir, o);
    const files = await j.recover();
    await j.startSegment();
    j.short = !(await j.makeReserve());
    return { journal: j, files };
  }

  /** What a journal directory holds, read-only (no process needs to own it): the unflushed backlog. */
  static async inspect(dir: string): Promise<{ files: number; records: number; bytes: number; diskBytes: number }> {
    const names = (await f.readdir(dir).catch(() => [] as string[])).filter((n) => /^journal-\d{8}\.log$/.test(n)).sort();
    const writes = new Map<number, Array<{ seq: number; len: number }>>();
    const done = new Map<number, number>();
    let diskBytes = 0;
    for (const name of names) {
      const fd = await f.open(path.join(dir, name), 'r').catch(() => undefined);
      if (fd === undefined) continue;
      try {
        const size = (await f.fstat(fd)).size;
        diskBytes += size;
        await scanSegment(fd, size, (rec) => {
          const fileNo = rec.payload.readUInt32LE(0);
          if (rec.type === RT.WRITE || rec.type === RT.SETATTR) {
            let l = writes.get(fileNo);
            if (!l) writes.set(fileNo, (l = []));
            l.push({ seq: rec.seq, len: rec.type === RT.WRITE ? rec.length - WRITE_HDR : 0 });
          } else if (rec.type === RT.DONE || rec.type === RT.DISCARD) done.set(fileNo, Math.max(done.get(fileNo) ?? 0, readU64(rec.payload, 4)));
        });
      } finally {
        await f.close(fd);
      }
    }
    let files = 0;
    let records = 0;
    let bytes = 0;
    for (const [fileNo, l] of writes) {
      const live = l.filter((w) => w.seq > (done.get(fileNo) ?? 0));
      if (!live.length) continue;
      files++;
      records += live.length;
      bytes += live.reduce((n, w) => n + w.len, 0);
    }
    return { files, records, bytes, diskBytes };
  }

  get diskBytes(): number {
    let n = 0;
    for (const s of this.segs.values()) if (!s.deleted) n += s.size;
    return n;
  }

  get segments(): number {
    return this.segs.size;
  }

  fileNoFor(fh: Buffer): number {
    const k = fh.toString('hex');
    let n = this.fileNos.get(k);
    if (n === undefined) this.fileNos.set(k, (n = this.nextFileNo++));
    return n;
  }

  /**
   * Append a WRITE; resolves when it is in the journal (and on disk, if `sync`).
   * `onAppended` runs synchronously as the record is taken, before any other
   * code can run (a promise continuation would come later): the caller's
   * bookkeeping then can never miss a record that a DONE mark made after it covers.
   */
  write(fileNo: number, fh: Buffer, cred: Credentials, offset: number, data: Buffer, stable: number, sync: boolean, onAppended?: (w: JournalWrite) => void): Promise<JournalWrite> {
    const p = Buffer.alloc(WRITE_HDR);
    p.writeUInt32LE(fileNo, 0);
    p.writeUInt32LE(stable, 4);
    writeU64(p, 8, offset);
    return this.append1({ seq: 0, fileNo, offset, length: data.length, seg: 0, pos: 0 }, fh, cred, RT.WRITE, [p, data], WRITE_HDR, sync, onAppended);
  }

  /** Append a SETATTR (see the record layout); as `write`, with `onAppended`. */
  setattr(fileNo: number, fh: Buffer, cred: Credentials, sattr: JournalSattr, sync: boolean, onAppended?: (w: JournalWrite) => void): Promise<JournalWrite> {
    return this.append1({ seq: 0, fileNo, offset: 0, length: 0, seg: 0, pos: 0, sattr }, fh, cred, RT.SETATTR, [encodeSattr(fileNo, sattr)], SETATTR_LEN, sync, onAppended);
  }

  /** One record of a file's changes (after the file's FILE record where the segment lacks it); `w` is filled in as it is laid out. */
  private append1(w: JournalWrite, fh: Buffer, cred: Credentials, type: RT, payload: Buffer[], head: number, sync: boolean, onAppended?: (w: JournalWrite) => void): Promise<JournalWrite> {
    return new Promise((resolve, reject) => {
      const ck = credKey(cred);
      this.enqueue({
        data: true,
        sync,
        build: (seg, pos, declared) => {
          const out: Buffer[] = [];
          if (declared.get(w.fileNo) !== ck) {
            const r = fileRecord(++this.seq, w.fileNo, fh, cred);
            out.push(r);
            pos += r.length;
            declared.set(w.fileNo, ck);
          }
          w.seq = ++this.seq;
          out.push(header(type, w.seq, payload), ...payload);
          w.seg = seg.no;
          w.pos = pos + HDR + head;
          return out;
        },
        resolve: () => {
          this.segs.get(w.seg)!.live++;
          onAppended?.(w);
          resolve(w);
        },
        reject,
      });
    });
  }

  /** Append DONE (or DISCARD) for a file's WRITEs up to `upTo`. */
  mark(kind: 'done' | 'discard', fileNo: number, upTo: number, sync: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      this.enqueue({
        sync,
        build: () => {
          const p = Buffer.alloc(12);
          p.writeUInt32LE(fileNo, 0);
          writeU64(p, 4, upTo);
          return [header(kind === 'done' ? RT.DONE : RT.DISCARD, ++this.seq, [p]), p];
        },
        resolve,
        reject,
      });
    });
  }

  /** Make everything appended so far durable. */
  sync(): Promise<void> {
    return new Promise((resolve, reject) => this.enqueue({ sync: true, build: () => [], resolve, reject }));
  }

  /** These WRITEs are delivered (or discarded): their segments may go. */
  release(writes: Iterable<JournalWrite>): void {
    for (const w of writes) {
      const s = this.segs.get(w.seg);
      if (!s) continue;
      s.live--;
    }
    this.collect();
    // A finished segment of some size is worth its disk space back: start a new one so it can go.
    if (this.cur.live === 0 && this.cur.size >= ROLL_EMPTY_BYTES && !this.rollSoon) {
      this.rollSoon = true;
      this.enqueue({ sync: false, build: () => [], resolve: () => undefined, reject: () => undefined });
    }
  }

  /** Keep a segment readable (not closed) while data is read from it. */
  pin(seg: number): void {
    const s = this.segs.get(seg);
    if (s) s.pins++;
  }
  unpin(seg: number): void {
    const s = this.segs.get(seg);
    if (!s) return;
    s.pins--;
    this.closeIfDone(s);
  }

  /** Read journalled data (the caller has pinned the segment). */
  async read(seg: number, pos: number, buf: Buffer, off: number, len: number): Promise<void> {
    const s = this.segs.get(seg);
    if (!s) throw new JournalError(`journal segment ${seg} is gone`);
    const n = await f.readFully(s.fd, buf, off, len, pos);
    if (n !== len) throw new JournalError(`journal segment ${seg}: short read at ${pos}`);
  }

  private enqueue(r: Req): void {
    if (this.broken) {
      r.reject(this.broken);
      return;
    }
    this.queue.push(r);
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length) {
        let batch = this.queue.splice(0, BATCH_RECORDS);
        if (this.broken) {
          for (const r of batch) r.reject(this.broken);
          continue;
        }
        if (this.short && batch.some((r) => r.data)) {
          if (await this.makeReserve()) {
            this.short = false;
            log.info('cache: the journal has disk again; it takes writes');
          } else {
            const refused = new JournalError('the cache disk is full (the journal keeps its last space for retiring delivered writes)', 'ENOSPC');
            for (const r of batch) if (r.data) r.reject(refused);
            batch = batch.filter((r) => !r.data);
            if (!batch.length) continue;
          }
        }
        try {
          if (this.cur.size >= this.segmentBytes || (this.rollSoon && this.cur.live === 0 && this.cur.size > 0)) await this.roll();
          this.rollSoon = false;
        } catch (e) {
          for (const r of batch) r.reject(asJournalError(e, 'starting a new journal segment'));
          continue;
        }
        let err = await this.tryBatch(batch);
        if (err && isNoSpace(err) && batch.some((r) => !r.data)) {
          // The disk is full: the marks still go in (they retire delivered writes, which frees segments), the data does not.
          for (const r of batch) if (r.data) r.reject(err);
          batch = batch.filter((r) => !r.data);
          err = await this.tryBatch(batch);
          if (err && isNoSpace(err) && (await this.releaseReserve())) err = await this.tryBatch(batch);
        }
        if (err) for (const r of batch) r.reject(err);
        else for (const r of batch) r.resolve();
      }
    } finally {
      this.draining = false;
    }
  }

  /** Append one batch to the current segment; on failure cut the segment back and return the error (nothing of the batch counts). */
  private async tryBatch(batch: Req[]): Promise<JournalError | undefined> {
    const seg = this.cur;
    const start = seg.size;
    const declared = new Map(seg.declared);
    const bufs: Buffer[] = [];
    let pos = start;
    const seqBefore = this.seq;
    for (const r of batch) {
      for (const b of r.build(seg, pos, declared)) {
        bufs.push(b);
        pos += b.length;
      }
    }
    try {
      await this.append(seg, bufs, start, pos, batch);
    } catch (e) {
      this.seq = seqBefore;
      const err = asJournalError(e, 'appending to the journal');
      if (isNoSpace(e)) log.warn({ segment: seg.file, bytes: pos - start }, 'cache: journal append failed, the cache disk is full; nothing in this batch was acknowledged');
      else log.error({ err: e, segment: seg.file, bytes: pos - start }, 'cache: journal append failed; nothing in this batch was acknowledged');
      try {
        await f.ftruncate(seg.fd, start);
      } catch (e2) {
        this.broken = new JournalError(`journal ${seg.file} could not be cut back after a failed append (${(e2 as Error).message}); refusing further writes`, 'EIO');
        log.error({ err: e2 }, 'cache: journal is broken; write-back refuses new writes, recorded data stays for recovery');
      }
      return err;
    }
    seg.size = pos;
    seg.declared = declared;
    return undefined;
  }

  private async append(seg: Segment, bufs: Buffer[], start: number, end: number, batch: Req[]): Promise<void> {
    const inject = this.o.failAppend?.(end - start);
    if (inject) throw inject;
    if (bufs.length) await writevAll(seg.fd, bufs, start);
    if (batch.some((r) => r.sync)) await f.fdatasync(seg.fd);
  }

  /** Write the reserve file (true if it is there in full). */
  private async makeReserve(): Promise<boolean> {
    const file = path.join(this.dir, RESERVE_FILE);
    let fd: number | undefined;
    try {
      fd = await f.open(file, 'w');
      await f.writeAll(fd, Buffer.alloc(RESERVE_BYTES), 0);
      await f.fdatasync(fd);
      return true;
    } catch (e) {
      if (!isNoSpace(e)) log.warn({ err: e, file }, 'cache: could not write the journal reserve');
      await f.unlink(file).catch(() => undefined);
      return false;
    } finally {
      if (fd !== undefined) await f.close(fd).catch(() => undefined);
    }
  }

  /** Give the reserve back to the disk (true if there was one); WRITEs are refused until it is made again. */
  private async releaseReserve(): Promise<boolean> {
    if (this.short) return false;
    this.short = true;
    log.warn({ dir: this.dir }, 'cache: the cache disk is full; the journal uses its reserve to retire delivered writes and refuses new ones until segments free space');
    try {
      await f.unlink(path.join(this.dir, RESERVE_FILE));
      return true;
    } catch {
      return false;
    }
  }

  private async roll(): Promise<void> {
    const old = this.cur;
    await f.fdatasync(old.fd);
    await this.startSegment();
    if (old.live === 0) this.collect();
  }

  private async startSegment(): Promise<void> {
    // After the highest ever met, not the highest still held: recovery (or collect) may have just dropped every
    // segment, whose files' unlinks are still running, and the same name would then be EEXIST (a flaky open).
    const no = (this.lastSegNo = Math.max(this.lastSegNo, ...this.segs.keys()) + 1);
    const file = path.join(this.dir, `journal-${String(no).padStart(8, '0')}.log`);
    const fd = await f.open(file, 'wx+');
    await f.syncDir(this.dir);
    const s: Segment = { no, file, fd, size: 0, live: 0, pins: 0, deleted: false, declared: new Map() };
    this.segs.set(no, s);
    this.cur = s;
  }

  /**
   * Delete finished segments, oldest first, stopping at the first one still
   * needed: a segment holding DONE marks may go only after the segments with
   * the WRITEs they cover, or recovery would bring those WRITEs back.
   */
  private collect(): void {
    for (const s of [...this.segs.values()].sort((a, b) => a.no - b.no)) {
      if (s === this.cur || s.live > 0) break;
      if (!s.deleted) {
        s.deleted = true;
        f.unlink(s.file).catch((e) => log.warn({ err: e, file: s.file }, 'cache: could not delete a finished journal segment'));
      }
      this.closeIfDone(s);
    }
  }

  private closeIfDone(s: Segment): void {
    if (s.deleted && s.pins === 0 && this.segs.get(s.no) === s) {
      this.segs.delete(s.no);
      void f.close(s.fd).catch(() => undefined);
    }
  }

  private async recover(): Promise<RecoveredFile[]> {
    const names = (await f.readdir(this.dir)).filter((n) => /^journal-\d{8}\.log$/.test(n)).sort();
    const files = new Map<number, RecoveredFile>();
    const done = new Map<number, number>();
    for (const name of names) {
      const no = Number(name.slice(8, 16));
      this.lastSegNo = Math.max(this.lastSegNo, no);
      const file = path.join(this.dir, name);
      const fd = await f.open(file, 'r+');
      const size = (await f.fstat(fd)).size;
      const seg: Segment = { no, file, fd, size, live: 0, pins: 0, deleted: false, declared: new Map() };
      this.segs.set(no, seg);
      const end = await scanSegment(fd, size, (rec) => {
        this.seq = Math.max(this.seq, rec.seq);
        if (rec.type === RT.FILE) {
          const fi = parseFile(rec.payload);
          this.nextFileNo = Math.max(this.nextFileNo, fi.fileNo + 1);
          this.fileNos.set(fi.fh.toString('hex'), fi.fileNo);
          const e = files.get(fi.fileNo);
          if (e) e.cred = fi.cred;
          else files.set(fi.fileNo, { fileNo: fi.fileNo, fh: fi.fh, cred: fi.cred, writes: [] });
        } else if (rec.type === RT.WRITE) {
          const fileNo = rec.payload.readUInt32LE(0);
          const e = files.get(fileNo);
          if (!e) throw new JournalError(`${name}: WRITE of file ${fileNo} before its FILE record`);
          e.writes.push({ seq: rec.seq, fileNo, offset: readU64(rec.payload, 8), length: rec.length - WRITE_HDR, seg: no, pos: rec.pos + HDR + WRITE_HDR });
        } else if (rec.type === RT.SETATTR) {
          const fileNo = rec.payload.readUInt32LE(0);
          const e = files.get(fileNo);
          if (!e) throw new JournalError(`${name}: SETATTR of file ${fileNo} before its FILE record`);
          e.writes.push({ seq: rec.seq, fileNo, offset: 0, length: 0, seg: no, pos: rec.pos + HDR + SETATTR_LEN, sattr: decodeSattr(rec.payload) });
        } else if (rec.type === RT.DONE || rec.type === RT.DISCARD) {
          const fileNo = rec.payload.readUInt32LE(0);
          done.set(fileNo, Math.max(done.get(fileNo) ?? 0, readU64(rec.payload, 4)));
        }
      });
      if (end < size) log.warn({ segment: file, at: end, dropped: size - end }, 'cache: journal segment ends in a torn record (never acknowledged); ignoring its tail');
      seg.size = end;
    }
    const out: RecoveredFile[] = [];
    for (const fi of files.values()) {
      const upTo = done.get(fi.fileNo) ?? 0;
      fi.writes = fi.writes.filter((w) => w.seq > upTo);
      for (const w of fi.writes) this.segs.get(w.seg)!.live++;
      if (fi.writes.length) out.push(fi);
    }
    // The newest segment is not "current" yet: a fresh one is started after recovery.
    this.cur = undefined as unknown as Segment;
    this.collect();
    return out;
  }

  async close(): Promise<void> {
    await this.sync().catch(() => undefined);
    for (const s of this.segs.values()) await f.close(s.fd).catch(() => undefined);
    this.segs.clear();
    // Keep the journal directory tidy: an empty current segment need not survive.
    if (this.cur && this.cur.size === 0 && this.cur.live === 0) await f.unlink(this.cur.file).catch(() => undefined);
  }
}

function header(type: RT, seq: number, payload: Buffer[]): Buffer {
  const h = Buffer.alloc(HDR);
  h.writeUInt32LE(MAGIC, 0);
  h[4] = type;
  h.writeUInt32LE(payload.reduce((n, b) => n + b.length, 0), 8);
  writeU64(h, 16, seq);
  let c = crc32(h.subarray(4, 12));
  c = crc32(h.subarray(16, 24), c);
  for (const b of payload) c = crc32(b, c);
  h.writeUInt32LE(c >>> 0, 12);
  return h;
}

function fileRecord(seq: number, fileNo: number, fh: Buffer, cred: Credentials): Buffer {
  const gids = cred.gids.slice(0, 16);
  const p = Buffer.alloc(16 + gids.length * 4 + fh.length);
  p.writeUInt32LE(fileNo, 0);
  p.writeUInt32LE(cred.uid >>> 0, 4);
  p.writeUInt32LE(cred.gid >>> 0, 8);
  p.writeUInt16LE(gids.length, 12);
  p.writeUInt16LE(fh.length, 14);
  gids.forEach((g, i) => p.writeUInt32LE(g >>> 0, 16 + i * 4));
  fh.copy(p, 16 + gids.length * 4);
  return Buffer.concat([header(RT.FILE, seq, [p]), p]);
}

function parseFile(p: Buffer): { fileNo: number; fh: Buffer; cred: Credentials } {
  const n = p.readUInt16LE(12);
  const fhLen = p.readUInt16LE(14);
  const gids = Array.from({ length: n }, (_, i) => p.readUInt32LE(16 + i * 4));
  const fh = Buffer.from(p.subarray(16 + n * 4, 16 + n * 4 + fhLen));
  return { fileNo: p.readUInt32LE(0), fh, cred: { flavor: AuthFlavor.AUTH_SYS, uid: p.readUInt32LE(4), gid: p.readUInt32LE(8), gids } };
}

const enum SF {
  MODE = 1,
  UID = 2,
  GID = 4,
  ATIME = 8,
  MTIME = 16,
}

function encodeSattr(fileNo: number, a: JournalSattr): Buffer {
  const p = Buffer.alloc(SETATTR_LEN);
  p.writeUInt32LE(fileNo, 0);
  const put = (bit: SF, off: number, ...vs: number[]) => {
    p.writeUInt32LE(p.readUInt32LE(4) | bit, 4);
    vs.forEach((v, i) => p.writeUInt32LE(v >>> 0, off + 4 * i));
  };
  if (a.mode !== undefined) put(SF.MODE, 8, a.mode);
  if (a.uid !== undefined) put(SF.UID, 12, a.uid);
  if (a.gid !== undefined) put(SF.GID, 16, a.gid);
  if (a.atime) put(SF.ATIME, 20, a.atime.sec, a.atime.nsec);
  if (a.mtime) put(SF.MTIME, 28, a.mtime.sec, a.mtime.nsec);
  return p;
}

function decodeSattr(p: Buffer): JournalSattr {
  const fields = p.readUInt32LE(4);
  const a: JournalSattr = {};
  if (fields & SF.MODE) a.mode = p.readUInt32LE(8);
  if (fields & SF.UID) a.uid = p.readUInt32LE(12);
  if (fields & SF.GID) a.gid = p.readUInt32LE(16);
  if (fields & SF.ATIME) a.atime = { sec: p.readUInt32LE(20), nsec: p.readUInt32LE(24) };
  if (fields & SF.MTIME) a.mtime = { sec: p.readUInt32LE(28), nsec: p.readUInt32LE(32) };
  return a;
}

const credKey = (c: Credentials) => `${c.uid}:${c.gid}:${c.gids.slice(0, 16).join(',')}`;

function writeU64(b: Buffer, off: number, v: number): void {
  b.writeUInt32LE(v % 0x1_0000_0000, off);
  b.writeUInt32LE(Math.floor(v / 0x1_0000_0000), off + 4);
}
function readU64(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readUInt32LE(off + 4) * 0x1_0000_0000;
}

async function writevAll(fd: number, bufs: Buffer[], pos: number): Promise<void> {
  const total = bufs.reduce((n, b) => n + b.length, 0);
  const n = await f.writev(fd, bufs, pos);
  if (n < total) await f.writeAll(fd, Buffer.concat(bufs).subarray(n), pos + n);
}

function asJournalError(e: unknown, what: string): JournalError {
  if (e instanceof JournalError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  return new JournalError(`${what}: ${(e as Error).message}`, code);
}

interface RawRecord {
  type: RT;
  seq: number;
  pos: number;
  length: number;
  /** The payload; for WRITE only its 16-byte head (the data stays on disk). */
  payload: Buffer;
}

/** Walk a segment's valid records; returns where the valid part ends. */
async function scanSegment(fd: number, size: number, on: (r: RawRecord) => void): Promise<number> {
  const h = Buffer.alloc(HDR);
  const chunk = Buffer.allocUnsafe(1 << 20);
  let pos = 0;
  while (pos + HDR <= size) {
    if ((await f.readFully(fd, h, 0, HDR, pos)) !== HDR) break;
    if (h.readUInt32LE(0) !== MAGIC) break;
    const type = h[4] as RT;
    const len = h.readUInt32LE(8);
    if (type < RT.FILE || type > RT.SETATTR || len > MAX_PAYLOAD || pos + HDR + len > size) break;
    let c = crc32(h.subarray(4, 12));
    c = crc32(h.subarray(16, 24), c);
    let head: Buffer | undefined;
    for (let done = 0; done < len; ) {
      const n = Math.min(chunk.length, len - done);
      if ((await f.readFully(fd, chunk, 0, n, pos + HDR + done)) !== n) return pos;
      if (done === 0) head = Buffer.from(chunk.subarray(0, Math.min(n, type === RT.WRITE ? WRITE_HDR : n)));
      c = crc32(chunk.subarray(0, n), c);
      done += n;
    }
    if (c >>> 0 !== h.readUInt32LE(12)) break;
    const payload = head ?? Buffer.alloc(0);
    const least = type === RT.WRITE ? WRITE_HDR : type === RT.FILE ? 16 : type === RT.SETATTR ? SETATTR_LEN : 12;
    if (payload.length < least) break;
    on({ type, seq: readU64(h, 16), pos, length: len, payload });
    pos += HDR + len;
  }
  return pos;
}
