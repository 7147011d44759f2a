import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Backend, DirPage, SourcedRead } from '../../backend/backend.js';
import { FsError, isFsError } from '../../backend/errors.js';
import { ACCESS3_EXTEND, ACCESS3_MODIFY, ACCESS3_READ, FType, StableHow } from '../../nfs3/constants.js';
import type { CreateHow, DirEntry, DirEntryPlus, Fattr3, MknodType, NewObject, NfsTime, Sattr3, WccData, WriteResult } from '../../nfs3/types.js';
import { credKey, type Credentials } from '../../rpc/types.js';
import { newCounters, snapshot, type CounterSnapshot, type DataCounters } from '../../util/counters.js';
import { logger } from '../../util/log.js';
import { PassthroughBackend } from '../passthrough.js';
import { AccessGate, accessKey } from './access-gate.js';
import { NameCache } from './name-cache.js';
import { PathBook } from './path-book.js';
import { BlockReader, MAX_READ, type Seg } from './block-reader.js';
import { BlockStore } from './block-store.js';
import { FileTable, type FileState } from './file-state.js';
import { startControlSocket } from './control-socket.js';
import * as f from './fs-cb.js';
import { Journal, type JournalSattr } from './journal.js';
import { resolveCacheOptions, type CacheOptions, type ResolvedCacheOptions } from './options.js';
import { lockSession, readSmallFile, sessionPath, writeFileAtomic } from './session-dir.js';
import { versionTag } from './versions.js';
import { JournalRefused, WriteBack, type FlushFailure, type FlushReport } from './write-back.js';
import { diskRoom, fitCapacity } from './disk-room.js';
import { inSecondHalf, type HeldAnswers, type Invalidated, type InvalidationSource, type LocalRead, type LocalReads, type WholeFile, type WholeFiles } from '../../backend/capabilities.js';
import type { ExtLink } from '../../ext/meta-client.js';
import { ChangePoller } from './change-poller.js';
import { DELEGATE_DATA_MAX, RecallStatus } from '../../ext/callback-codec.js';
import { HeldDelegations } from './held-delegations.js';
import { checkConsistency, checkPollMs, type ConsistencyModel } from './options.js';

/** How often the cache disk's free space is measured (ms). */
const SPARE_CHECK_MS = 2000;
/** Renewals ahead (ttl) in flight at most: each is one small call; a burst of hits beyond it waits for its answers to run out. */
const MAX_RENEWALS = 16;

const log = logger('cache');

/**
 * What `gvfs cache stats` prints and the agent, session service, tests and
 * benchmarks read: the session's data counters (util/counters.ts, where
 * every byte counter is defined) and the cache's own state.
 */
export interface CacheStats extends CounterSnapshot {
  dir: string;
  session: string;
  mode: 'write-back' | 'write-through';
  blockSize: number;
  capacity: number;
  /** Bytes of cached blocks this process accounts for, and the journal's bytes on disk. */
  used: number;
  blocks: number;
  journalBytes: number;
  /** READ calls sent to the server by the cache (demand, read-ahead, uncached), and blocks asked for by read-ahead. */
  serverReads: number;
  readAheadBlocks: number;
  /** Blocks our own writes left in the cache as clean blocks of the new version (a flush, write-through). */
  writtenBlocksKept: number;
  evictions: number;
  invalidations: number;
  attrHits: number;
  attrMisses: number;
  /** The ttl model: attributes and names renewed in the background, asked for in the second half of their trust (HeldAnswers). */
  renewals: number;
  /** The callback model: ACCESS answered from an earlier answer, under a delegation of the file. */
  accessHits: number;
  /** The callback model: file bytes that came with a read delegation (DELEGATE_READ) and were kept. */
  grantDataBytes: number;
  /** Write-back writes the journal refused (cache disk full), sent to the server directly. */
  writesAround: number;
  /** SETATTRs (mode, owner, times) journalled after a file's unflushed writes instead of sent at once. */
  setattrsJournalled: number;
  lookupHits: number;
  lookupMisses: number;
  /** Bytes whose newest data is only in the journal. */
  dirtyBytes: number;
  /** What a flush still has to send (journal records, in bytes). */
  flushBacklog: { files: number; records: number; bytes: number };
  flushedBytes: number;
  flushRounds: number;
  flushFailures: number;
  discardedBytes: number;
  flushErrors: FlushFailure[];
  consistency: ConsistencyModel;
  pollMs: number;
  /** The poll model: CHANGES_SINCE calls made, files they listed, drop-everything answers, failed polls; files dropped on orders. */
  polls: number;
  pollListed: number;
  pollResets: number;
  pollFailures: number;
  pollInSync: boolean;
  /** Exports the poll model asks about each round (one CHANGES_SINCE each). */
  pollExports: number;
  ordersInvalidated: number;
}

/**
 * The cache wrapper (proxy client: front end ∘ cache ∘ remote link).
 *
 * Reads (block-reader.ts): file data in blocks on local disk
 * (block-store.ts) named by file version (versions.ts, file-state.ts), so
 * nothing of an older version is ever served; a version is trusted for
 * `attrTimeoutMs`, then GETATTR checks it. Misses are fetched whole-block,
 * with read-ahead on sequential access. Reads of a file with unflushed
 * writes overlay them (read-your-writes) and GETATTR reports the size
 * including them.
 *
 * Writes: write-through (forwarded; blocks they touch are dropped, and the
 * server's wcc data carries the rest of the cache over to the new version),
 * or write-back (write-back.ts: journalled, acknowledged locally, flushed in
 * order). Namespace operations are write-through; a file's unflushed data is
 * flushed first when the operation could expose or lose it (SETATTR of a
 * dirty file, REMOVE of its name, RENAME over it).
 *
 * `ready` settles once the cache directory is locked, the journal recovered
 * and the control socket listening; every call waits for it.
 */
export class CacheBackend extends PassthroughBackend implements LocalReads {
  readonly opts: ResolvedCacheOptions;
  readonly ready: Promise<void>;
  readonly store: BlockStore;
  readonly sessionDir: string;
  private wb?: WriteBack;
  private journal?: Journal;
  private readonly files: FileTable;
  private readonly reader: BlockReader;
  private readonly names: NameCache;
  /** Handle → path as last seen, for log lines (never consulted to serve a call). */
  readonly paths = new PathBook();
  private readonly bootVerf = randomBytes(8);
  private control?: { path: string; close(): Promise<void> };
  private lock?: { release(): Promise<void> };
  private timers: NodeJS.Timeout[] = [];
  private scanning?: Promise<void>;
  private closing = false;
  private readonly c = { attrHits: 0, attrMisses: 0, renewals: 0, accessHits: 0, writesAround: 0, setattrsJournalled: 0, writtenBlocksKept: 0, ordersInvalidated: 0, grantDataBytes: 0 };
  /** The callback model: ACCESS answers per caller and file, with the delegation clock when each was asked. */
  private readonly accessSeen = new Map<string, { mask: number; access: number; sent: number }>();
  /** The poll model's client (absent: the link cannot call the GVFS extension program). */
  private readonly poller?: ChangePoller;
  private readonly listeners = new Set<(what: Invalidated) => void>();
  /** The mounts made through this cache: root handle and caller (paths of invalidation orders are resolved from them). */
  private readonly roots = new Map<string, { fh: Buffer; cred: Credentials }>();
  /** The session's data counters (util/counters.ts), shared with the layers above and below. */
  readonly counters: DataCounters;
  /** The channel's raw byte totals, when the stack knows them (shown with the counters). */
  channelTotals?: () => { bytesIn: number; bytesOut: number };
  /** Since when writes go around a journal that refuses them (0: the journal takes them). */
  private aroundSince = 0;
  /** Who the server has let read which file (access-gate.ts): cached bytes go only to them. */
  readonly gate = new AccessGate(
    // callback: through this cache's own ACCESS, which answers from an earlier answer while the file is delegated.
    (cred, fh, mask) => (this.opts.consistency === 'callback' ? this.access(cred, fh, mask) : this.inner.access(cred, fh, mask)),
    // The poll model trusts an answer until a poll lists the file (invalidate → gate.forget), as it does attributes.
    () => (this.opts.consistency === 'poll' ? (this.poller?.inSync() ? Infinity : 0) : this.opts.attrTimeoutMs),
  );

  /** The callback model: delegations this cache holds, its client id and lease (absent: no GVFS link). */
  readonly held?: HeldDelegations;
  private readonly ext?: ExtLink;

  /** `ext`: the link's GVFS extension calls (the poll model polls through it, the callback model delegates). */
  constructor(inner: Backend, o: CacheOptions, counters: DataCounters = newCounters(), ext?: ExtLink) {
    super(inner);
    this.ext = ext;
    this.counters = counters;
    this.opts = resolveCacheOptions(o);
    this.sessionDir = sessionPath(this.opts.dir, this.opts.session);
    // Also never more than keeps the disk's headroom free (disk-room.ts): the store gives way when others fill the disk.
    this.store = new BlockStore({
      dir: this.opts.dir,
      policy: this.opts.policy,
      limit: () => Math.min(this.opts.capacity - (this.journal?.diskBytes ?? 0), this.store.used + this.spare),
    });
    this.names = new NameCache(
      () => (this.opts.consistency === 'poll' ? (this.poller?.inSync() ? Infinity : 0) : this.opts.dirTimeoutMs),
      undefined,
      // callback: names found after the directory's delegation was granted hold until it is recalled.
      (dir, sent) => this.opts.consistency === 'callback' && (this.held?.grantedAt(dir) ?? Infinity) <= sent,
    );
    this.files = new FileTable({
      serverId: this.opts.serverId,
      blockSize: this.opts.blockSize,
      store: this.store,
      dirChanged: (k) => this.names.bump(k),
      dirty: (k) => !!this.wb?.dirty(k),
      // A file the cache forgets gives its delegation back.
      forgotten: (s) => void this.giveBack(s),
    });
    this.reader = new BlockReader(inner, this.store, this.files, this.opts, counters);
    if (ext) this.poller = new ChangePoller(ext, { invalidate: (fhs) => this.invalidate(fhs), invalidateAll: () => this.invalidateAll() }, () => this.opts.pollMs);
    if (ext)
      this.held = new HeldDelegations(ext, {
        drop: (fhs) => this.invalidate(fhs),
        restarted: async () => void (await this.wb?.flushAll()),
        dirty: () => !!this.wb?.backlog.files,
        cred: () => [...this.roots.values()][0]?.cred,
      });
    if ((this.opts.consistency === 'poll' || this.opts.consistency === 'callback') && !this.poller) throw new Error(`the ${this.opts.consistency} consistency model needs a link to a GVFS proxy server`);
    this.ready = this.open();
    this.ready.catch(() => undefined);
  }

  private async open(): Promise<void> {
    await f.mkdir(this.opts.dir);
    const fit = await fitCapacity(this.opts.dir, this.opts.capacity, !this.opts.capacityIsDefault, 16 * this.opts.blockSize);
    if (fit.shrunk) log.warn({ dir: this.opts.dir, asked: this.opts.capacity, capacity: fit.capacity }, 'cache: the default size does not fit the disk; using what it can hold');
    this.opts.capacity = fit.capacity;
    await this.checkSpare();
    this.lock = await lockSession(this.sessionDir);
    try {
      await this.store.init();
      // The journal is opened in either mode: a write-through session still owes the server what an earlier write-back run journalled.
      const { journal, files } = await Journal.open(this.sessionDir, this.opts.journal);
      this.journal = journal;
      this.wb = new WriteBack(
        journal,
        {
          write: async (cred, fh, off, data) => {
            // callback: journalled data goes to the server only under a trusted write delegation (a lost one is reclaimed: refused when fenced).
            // (An export the server delegates nothing of is written without one; a fenced client's WRITE is refused there anyway.)
            if (this.opts.consistency === 'callback' && !this.held!.holds(fh.toString('hex'), 'write')) await this.held!.take(cred, fh, 'reclaim');
            const r = await this.inner.write(cred, fh, off, data, StableHow.UNSTABLE);
            this.counters.flushBytes += r.count;
            return r;
          },
          commit: (cred, fh) => this.inner.commit(cred, fh, 0, 0),
          setattr: async (cred, fh, attrs) => {
            if (this.opts.consistency === 'callback' && !this.held!.holds(fh.toString('hex'), 'write')) await this.held!.take(cred, fh, 'reclaim');
            await this.sendSetattr(cred, this.file(fh), attrs);
          },
          writeStart: (fh) => this.files.writeStart(this.file(fh)),
          writeEnd: (fh, off, len, wcc, ok) => this.files.writeEnd(this.file(fh), off, len, wcc, ok),
          flushed: (fh, ranges, bytes) => this.keepFlushed(this.file(fh), ranges, bytes),
          discarded: (fh) => (this.file(fh).at = 0),
          describe: (fh) => this.describe(fh),
        },
        {
          dirtyLimit: this.opts.dirtyLimit,
          dirtyMax: this.opts.dirtyMax,
          maxAgeMs: this.opts.maxDirtyAgeMs,
          flushWriteBytes: this.opts.flushWriteBytes,
          roundBytes: 64 << 20,
          admitWaitMs: this.opts.admitWaitMs,
          flushParallel: 4,
        },
        files,
      );
      // The client id first: a recovered journal is flushed under reclaims that name it.
      if (this.held) await this.held.loadClientId(this.sessionDir);
      if (files.length) {
        const s = this.wb.recoveredSummary;
        log.warn({ files: s.files, bytes: s.bytes, dir: this.sessionDir }, 'cache: journal holds unflushed writes from an earlier run; flushing them now');
        void this.wb.flushAll().catch(() => undefined);
      }
      const hot = new Set((await readSmallFile(path.join(this.sessionDir, 'hot.list')))?.split('\n').filter(Boolean) ?? []);
      this.scanning = this.store
        .scan(hot)
        .catch((e) => log.warn({ err: e }, 'cache: scanning the cache directory failed'))
        .finally(() => (this.scanning = undefined));
      if (this.opts.controlSocket) {
        this.control = await startControlSocket(this.sessionDir, async (req) => {
          if (req.op === 'flush') return { report: await this.flush({ discard: !!req.discard }) };
          if (req.op === 'stats') return { stats: this.stats() };
          if (req.op === 'configure') return { stats: await this.configure(req) };
          if (req.op === 'invalidate') return { invalidated: await this.invalidateOrder(req.path) };
          const extra = this.controlOps.get(req.op);
          if (extra) return extra(req as Record<string, unknown>);
          throw new Error(`unknown request ${JSON.stringify(req.op)}`);
        });
      }
      const rescan = setInterval(() => {
        if (!this.scanning) this.scanning = this.store.scan().catch(() => undefined).finally(() => (this.scanning = undefined));
        void this.saveState();
      }, this.opts.rescanMs);
      rescan.unref();
      this.timers.push(rescan);
      const spare = setInterval(() => void this.checkSpare(), SPARE_CHECK_MS);
      spare.unref();
      this.timers.push(spare);
      if (this.opts.consistency === 'poll') this.poller!.start();
      if (this.opts.consistency === 'callback') this.held!.start();
      log.info({ consistency: this.opts.consistency, dir: this.opts.dir, session: this.opts.session, mode: this.opts.writeBack ? 'write-back' : 'write-through', capacity: this.opts.capacity, blockSize: this.opts.blockSize }, 'cache: ready');
    } catch (e) {
      await this.lock.release();
      throw e;
    }
  }

  /** What a log line about a file says: the session, the server and the path this session last saw it at. */
  describe(fh: Buffer): { session: string; peer: string; path?: string } {
    return { session: this.opts.session, peer: this.opts.peer, path: this.paths.pathOf(fh) };
  }

  /** Disk free beyond the headroom (negative: the disk is fuller than the headroom allows), as last measured. */
  private spare = Number.MAX_SAFE_INTEGER;

  /** Measure the disk again; when something else has eaten into the headroom, drop blocks to give it back. */
  private async checkSpare(): Promise<void> {
    try {
      const d = await diskRoom(this.opts.dir);
      this.spare = d.free - d.headroom;
      if (this.spare < 0) this.store.evict();
    } catch (e) {
      log.debug({ err: e }, 'cache: statfs of the cache directory failed');
    }
  }

  private async up(): Promise<void> {
    try {
      await this.ready;
    } catch (e) {
      throw new FsError('IO', `cache unavailable: ${(e as Error).message}`);
    }
  }

  // ---------------------------------------------------------------- state

  private file(fh: Buffer): FileState {
    return this.files.get(fh);
  }

  /** Server attributes, from the cache while younger than the attribute timeout. */
  private async attrs(cred: Credentials, s: FileState): Promise<Fattr3> {
    if (this.fresh(s)) {
      this.c.attrHits++;
      this.renewAttrs(cred, s);
      return s.attr!;
    }
    this.c.attrMisses++;
    if (this.opts.consistency === 'callback' && !this.held!.holds(s.key)) {
      await this.takeDelegation(cred, s, 'read');
      if (this.fresh(s)) return s.attr!; // the grant brought them
    }
    return this.fetchAttrs(cred, s);
  }

  /** A GETATTR of `s` (one at a time per file: a second caller shares the one in flight), noted unless a change of ours crossed it. */
  private fetchAttrs(cred: Credentials, s: FileState): Promise<Fattr3> {
    if (!s.getattr) {
      const ep = s.epoch;
      const g = this.files.gen;
      const p: Promise<Fattr3> = this.inner.getattr(cred, s.fh).then(
        (a) => {
          if (s.getattr === p) s.getattr = undefined;
          if (!this.closing) this.files.note(s, a, ep, g);
          return a;
        },
        (e) => {
          if (s.getattr === p) s.getattr = undefined;
          throw e;
        },
      );
      s.getattr = p;
    }
    return s.getattr;
  }

  /**
   * May the file's attributes be answered without asking? ttl: while
   * younger than the attribute timeout. poll: until a poll (or an order)
   * drops them, while the poller is in sync (change-poller.ts) and no
   * invalidation crossed the call that brought them.
   */
  private fresh(s: FileState): boolean {
    return this.attrTrust(s) > 0;
  }

  /** How much longer (ms) `s`'s attributes are answered without asking (HeldAnswers.attrTrust). */
  private attrTrust(s: FileState): number {
    if (!s.attr || s.writing) return 0;
    if (this.opts.consistency === 'poll') return s.at > 0 && (s.pollGen ?? -1) >= 0 && !!this.poller?.inSync() ? Infinity : 0;
    // callback: trusted while a delegation is held (taken before the GETATTR that brought them; a recall drops both).
    if (this.opts.consistency === 'callback') return s.at > 0 && this.held!.holds(s.key) ? Infinity : 0;
    return Math.max(0, this.opts.attrTimeoutMs - (Date.now() - s.at));
  }

  // ---------------------------------------------------------------- renewing ahead (ttl)

  /** Renewals in flight (bounded: past it an answer is simply asked for when it runs out), and the names among them. */
  private renewing = 0;
  private readonly renewingNames = new Set<string>();

  /** A renewal may start for an answer with `left` ms of a `budget`'s trust: the ttl model, in its second half. */
  private renewable(left: number, budget: number): boolean {
    return this.opts.consistency === 'ttl' && !this.closing && inSecondHalf(left, budget) && this.renewing < MAX_RENEWALS;
  }

  /** Attributes answered in the second half of their trust: fetched again in the background (HeldAnswers). */
  private renewAttrs(cred: Credentials, s: FileState): void {
    if (s.getattr || !this.renewable(this.attrTrust(s), this.opts.attrTimeoutMs)) return;
    this.renewing++;
    this.c.renewals++;
    // (Started inside a promise: a call that throws at once ends here too, never in the hit that started it.)
    Promise.resolve()
      .then(() => this.fetchAttrs(cred, s))
      .catch((e: Error) => log.debug({ fh: s.key, err: e.message }, 'cache: renewing attributes failed; they run out as without'))
      .finally(() => this.renewing--);
  }

  /**
   * A name answered in the second half of its trust: looked up again in the
   * background, as a miss would (a reply that crossed a change of the
   * directory is not kept); a name gone from the server is dropped.
   */
  private renewName(cred: Credentials, dir: Buffer, dk: string, name: string): void {
    const k = `${dk}/${name}`;
    if (this.renewingNames.has(k) || this.wb?.dirty(dk) || !this.renewable(this.names.trustLeft(dk, name), this.opts.dirTimeoutMs)) return;
    this.renewing++;
    this.renewingNames.add(k);
    this.c.renewals++;
    const stamp = this.names.stamp(dk);
    const [g, since] = [this.files.gen, this.files.bumps];
    // (Started inside a promise: a call that throws at once ends here too, never in the hit that started it.)
    Promise.resolve()
      .then(() => this.inner.lookup(cred, dir, name))
      .then(
        (r) => {
          if (!this.closing) this.tookLookup(dir, dk, name, r, stamp, since, g);
        },
        (e: Error) => {
          if ((isFsError(e, 'NOENT') || isFsError(e, 'STALE')) && this.names.stamp(dk) === stamp) this.names.drop(dk, name);
          log.debug({ dir: dk, name, err: e.message }, 'cache: renewing a name failed; it runs out as without');
        },
      )
      .catch((e: Error) => log.warn({ dir: dk, name, err: e.message }, 'cache: renewing a name failed'))
      .finally(() => {
        this.renewing--;
        this.renewingNames.delete(k);
      });
  }

  /** Optional capability (backend/capabilities.ts): how long what this cache answers stays good without the server. */
  override get heldAnswers(): HeldAnswers {
    return {
      attrTrust: (fh) => {
        const s = this.files.peek(fh.toString('hex'));
        return s ? this.attrTrust(s) : 0;
      },
      nameTrust: (dir, name) => this.names.trustLeft(dir.toString('hex'), name),
      renewsAhead: () => this.opts.consistency === 'ttl',
      budgets: () => ({ attrMs: this.opts.attrTimeoutMs, nameMs: this.opts.dirTimeoutMs }),
    };
  }

  /** What clients see: the server's attributes, with unflushed writes' size and time and journalled SETATTRs' fields. */
  private present(s: FileState, a: Fattr3): Fattr3 {
    const d = this.wb?.dirty(s.key);
    if (!d) return a;
    const size = Math.max(a.size, d.maxEnd);
    const x = d.attrs;
    const mtime = d.mtimeSet && x.mtime ? x.mtime : d.lastWriteAt ? nfsTime(d.lastWriteAt) : a.mtime;
    const ctime = nfsTime(Math.max(d.lastWriteAt, d.attrsAt));
    return { ...a, size, used: Math.max(a.used, size), mode: x.mode ?? a.mode, uid: x.uid ?? a.uid, gid: x.gid ?? a.gid, atime: x.atime ?? a.atime, mtime, ctime };
  }

  /** `sentGen`: the invalidation generation when the call that brought `a` went out (FileState.pollGen). */
  private presentMaybe(fh: Buffer | undefined, a: Fattr3 | undefined, sentGen?: number): Fattr3 | undefined {
    if (!fh || !a) return a;
    const s = this.file(fh);
    this.files.note(s, a, s.epoch, sentGen);
    return this.present(s, a);
  }

  private noteWcc(fh: Buffer, wcc: WccData | undefined): void {
    if (wcc?.after) {
      const s = this.file(fh);
      this.files.note(s, wcc.after, s.epoch);
    }
  }

  // ---------------------------------------------------------------- reads

  /** The attributes a read is answered by (checked as attrs() checks them). */
  private async readVersion(cred: Credentials, s: FileState): Promise<Fattr3> {
    const a = await this.attrs(cred, s);
    // While our own writes are on the wire the chained version (s.attr) is the one the blocks are named by.
    return a.type === FType.REG && s.tag && s.attr ? s.attr : a;
  }

  override async read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead> {
    await this.up();
    const s = this.file(fh);
    count = Math.min(count, MAX_READ);
    for (let attempt = 0; ; attempt++) {
      // Unflushed bytes first (see WriteBack.overlay), then the server's version.
      const overlay = this.wb ? await this.wb.overlay(s.key, offset, offset + count) : [];
      const a = await this.readVersion(cred, s);
      if (a.type !== FType.REG) {
        const r = await this.inner.read(cred, fh, offset, count);
        return { ...r, attr: this.presentMaybe(fh, r.attr) };
      }
      // No version to name blocks by (our own writes are on the wire and no chain is known): read uncached, still overlaid.
      const cached = !!(s.tag && s.fk);
      // Cached bytes only for a caller the server has let read the file (access-gate.ts). Asked alongside the
      // fetch (over a WAN a file just changed elsewhere would otherwise pay the ACCESS and the READ one after
      // the other); nothing read is returned before the answer.
      const allowed = cached ? this.gate.check(cred, fh) : undefined;
      allowed?.catch(() => undefined); // (awaited below; an attempt given up on drops it)
      const size = Math.max(a.size, this.wb?.dirty(s.key)?.maxEnd ?? 0);
      if (offset >= size || count === 0) {
        await allowed;
        return { count: 0, eof: offset >= size, data: Buffer.alloc(0), attr: this.present(s, a), from: {} };
      }
      s.readHere = true;
      const end = Math.min(offset + count, size);
      const buf = Buffer.allocUnsafe(end - offset);
      const srvEnd = Math.min(end, a.size);
      // Where this attempt's server bytes came from (an attempt given up on counts nothing).
      const segs: Seg[] = [];
      if (srvEnd > offset && !cached) await this.reader.fillDirect(cred, s, buf, offset, srvEnd, segs);
      else if (srvEnd > offset && !(await this.reader.fill(cred, s, a, buf, offset, srvEnd, attempt >= 2, segs))) {
        if (attempt < 3) continue; // the file changed under the read: read it again, all of one version
        throw new FsError('IO', 'the file keeps shrinking on the server during the read');
      }
      if (srvEnd < end) buf.fill(0, Math.max(0, srvEnd - offset));
      for (const p of overlay) {
        if (p.start >= end) continue;
        p.data.copy(buf, p.start - offset, 0, Math.min(p.data.length, end - p.start));
      }
      await allowed;
      if (cached) this.reader.readAhead(cred, s, a, offset, end);
      return { count: buf.length, eof: end >= size, data: buf, attr: this.present(s, a), from: sources(segs, overlay, offset, end, Math.max(offset, srvEnd)) };
    }
  }

  /**
   * Optional capability (backend/capabilities.ts): the answer `read` would
   * give now, as ranges of block files, when all of it is the server's
   * version in the disk cache — no write-back bytes over it, no zeros past
   * the server's end of file, no block still in memory; undefined otherwise
   * (then `read`). The same attribute check, access gate and read-ahead as
   * read (no read-ahead with `readAhead: false`).
   */
  get localReads(): LocalReads {
    return this;
  }

  async readLocal(cred: Credentials, fh: Buffer, offset: number, count: number, o?: { readAhead?: boolean }): Promise<LocalRead | undefined> {
    await this.up();
    const s = this.file(fh);
    count = Math.min(count, MAX_READ);
    // Not all on disk under the version last seen: read() fetches it. Asked before anything else, so a read
    // that goes on to read() pays its attribute check once (with attrTimeoutMs 0, each check is a GETATTR).
    const seen = s.attr;
    if (!seen || seen.type !== FType.REG || !this.reader.onDisk(s, seen, offset, Math.min(offset + count, seen.size))) return undefined;
    if (this.wb && (await this.wb.overlay(s.key, offset, offset + count)).length) return undefined;
    const a = await this.readVersion(cred, s);
    if (a.type !== FType.REG || !s.tag || !s.fk) return undefined;
    const size = Math.max(a.size, this.wb?.dirty(s.key)?.maxEnd ?? 0);
    const end = Math.min(offset + count, size);
    if (end <= offset || end > a.size) return undefined;
    const allowed = this.gate.check(cred, fh);
    allowed.catch(() => undefined); // (awaited below)
    const xs = await this.reader.localExtents(s, a, offset, end);
    if (!xs) return undefined; // read() asks the gate again, and answers a refusal
    const release = () => {
      for (const x of xs) x.release();
    };
    try {
      await allowed;
    } catch (e) {
      release();
      throw e;
    }
    s.readHere = true;
    if (o?.readAhead !== false) this.reader.readAhead(cred, s, a, offset, end);
    const n = end - offset;
    return { extents: xs.map((x) => ({ fd: x.fd, pos: x.pos, len: x.len })), count: n, eof: end >= size, attr: this.present(s, a), from: { cache: n, channel: 0, journal: 0 }, release };
  }

  /**
   * Optional capability (backend/capabilities.ts): the current version as
   * one local file, when it is the server's version all on disk — checked as
   * readLocal checks (no write-back bytes over it, our own writes not on the
   * wire, the access gate) — its whole file or its only block. See
   * BlockReader.wholeFile for when a whole file is made.
   */
  get wholeFiles(): WholeFiles {
    return this;
  }

  async wholeFile(cred: Credentials, fh: Buffer): Promise<WholeFile | undefined> {
    await this.up();
    const s = this.file(fh);
    const a = await this.readVersion(cred, s);
    if (a.type !== FType.REG || !this.current(s, a) || a.size <= 0) return undefined;
    await this.gate.check(cred, fh);
    const x = await this.reader.wholeFile(s, a);
    if (!x) return undefined;
    // (Checked again: a write may have started while the file was looked for.)
    if (!this.current(s, a)) {
      x.release();
      return undefined;
    }
    s.readHere = true;
    return { fd: x.fd, size: a.size, release: x.release };
  }

  // ------------------------------------------------ other fetch paths (meta-data wrapper)

  /** Whether blocks of version `a` may be read from or added to the cache now (none of our own writes pending on it). */
  private current(s: FileState, a: Fattr3): boolean {
    return !!s.fk && s.tag === versionTag(a) && !s.writing && !this.wb?.dirty(s.key);
  }

  /** Bytes [off, end) of version `a` if the disk cache holds every block of them; nothing is fetched. */
  async cachedRead(fh: Buffer, a: Fattr3, off: number, end: number): Promise<Buffer | undefined> {
    await this.up();
    const s = this.file(fh);
    if (!this.current(s, a)) return undefined;
    const buf = Buffer.allocUnsafe(end - off);
    return (await this.reader.fillCached(s, a, buf, off, end)) && this.current(s, a) ? buf : undefined;
  }

  /** Whether the disk cache holds (or is storing) every block of [off, end) of version `a`; nothing is read. */
  async hasCached(fh: Buffer, a: Fattr3, off: number, end: number): Promise<boolean> {
    await this.up();
    const s = this.file(fh);
    return this.current(s, a) && (await this.reader.hasCached(s, a, off, end));
  }

  /** Whole blocks of version `a`, fetched and verified by another path, into the disk cache; returns how many were taken. */
  async offer(fh: Buffer, a: Fattr3, off: number, data: Buffer): Promise<number> {
    await this.up();
    const s = this.file(fh);
    return this.current(s, a) ? this.reader.offer(s, a, off, data) : 0;
  }

  /** Requests on the control socket beyond the cache's own (the meta-data wrapper's). */
  readonly controlOps = new Map<string, (req: Record<string, unknown>) => Promise<object>>();

  // ---------------------------------------------------------------- writes

  override async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    await this.up();
    const s = this.file(fh);
    // callback: write-back data is kept only under a write delegation (other sessions' calls recall it: we flush);
    // an export the server delegates nothing of (not watched) is written through.
    const through =
      !this.opts.writeBack ||
      (this.opts.consistency === 'callback' && !this.held!.holds(s.key, 'write') && !(await this.takeDelegation(cred, s, 'write')) && !this.held!.holds(s.key, 'write'));
    if (through) {
      if (this.wb!.dirty(s.key)) await this.flushOne(s);
      this.files.writeStart(s);
      let r: WriteResult;
      try {
        r = await this.inner.write(cred, fh, offset, data, stable);
      } catch (e) {
        this.files.writeEnd(s, offset, data.length, (e as FsError).wcc, false);
        throw e;
      }
      this.wrote(s, offset, r.count, r.wcc, true, data);
      return r;
    }
    // The server unreachable: the journal still takes writes of a file we know (attributes older than the timeout).
    const a = await this.attrs(cred, s).catch((e) => {
      if (s.attr && isFsError(e, 'IO')) return s.attr;
      throw e;
    });
    if (a.type === FType.DIR) throw new FsError('ISDIR', 'write to a directory', { wcc: { after: a } });
    if (a.type !== FType.REG) return this.inner.write(cred, fh, offset, data, stable);
    if (offset + data.length > Number.MAX_SAFE_INTEGER) throw new FsError('FBIG', 'offset too large');
    await this.checkWritable(cred, s);
    const pre = this.present(s, a);
    if (data.length) {
      try {
        await this.wb!.write(cred, fh, offset, data, stable, stable !== StableHow.UNSTABLE);
        if (this.aroundSince) {
          log.info({ ms: Date.now() - this.aroundSince }, 'cache: the write-back journal takes writes again');
          this.aroundSince = 0;
        }
      } catch (e) {
        if (!(e instanceof JournalRefused)) throw e;
        return this.writeAround(cred, s, offset, data, e);
      }
    }
    return {
      wcc: { before: { size: pre.size, mtime: pre.mtime, ctime: pre.ctime }, after: this.present(s, s.attr ?? a) },
      count: data.length,
      committed: stable === StableHow.UNSTABLE ? StableHow.UNSTABLE : StableHow.FILE_SYNC,
      verf: this.bootVerf,
    };
  }

  /**
   * A write the journal refused (its disk full, or broken) goes to the
   * server at once, FILE_SYNC (the write-back COMMIT only syncs the
   * journal, so nothing else would make it durable there), after the file's
   * journalled writes so that the server sees them in order. It is
   * acknowledged only once the server has it: nothing is lost if the cache
   * disk fills; if the server fails too, the error goes to the program.
   */
  private async writeAround(cred: Credentials, s: FileState, offset: number, data: Buffer, why: JournalRefused): Promise<WriteResult> {
    this.c.writesAround++;
    if (!this.aroundSince) {
      this.aroundSince = Date.now();
      log.warn({ ...this.describe(s.fh), dir: this.sessionDir, reason: why.message }, 'cache: the write-back journal cannot take writes; sending them to the server directly (write-through) until it can');
    }
    try {
      await this.flushOne(s);
    } catch (e) {
      // Its journalled writes cannot go first (server unreachable?): the write is refused as the journal refused it.
      log.debug({ err: (e as Error).message }, 'cache: cannot write around the journal: flushing the file first failed');
      throw why;
    }
    this.files.writeStart(s);
    let r: WriteResult;
    try {
      r = await this.inner.write(cred, s.fh, offset, data, StableHow.FILE_SYNC);
    } catch (e) {
      this.files.writeEnd(s, offset, data.length, (e as FsError).wcc, false);
      throw e;
    }
    this.wrote(s, offset, r.count, r.wcc, true, data);
    return { ...r, wcc: { before: r.wcc.before, after: r.wcc.after && this.present(s, r.wcc.after) }, verf: this.bootVerf };
  }

  /**
   * A write-back write is checked against the server's permissions once per caller per attribute timeout; the
   * writes of one caller that come together (write-behind keeps several in flight) share one ACCESS.
   */
  private checkWritable(cred: Credentials, s: FileState): Promise<void> {
    const who = credKey(cred);
    const at = s.writable?.get(who);
    if (at !== undefined && Date.now() - at < Math.max(this.opts.attrTimeoutMs, 1000)) return Promise.resolve();
    const k = `${s.key}:${who}`;
    let p = this.writableAsked.get(k);
    if (!p) {
      p = (async () => {
        let r;
        try {
          r = await this.inner.access(cred, s.fh, ACCESS3_MODIFY | ACCESS3_EXTEND);
        } catch (e) {
          if (at !== undefined && isFsError(e, 'IO')) return; // allowed before, server unreachable now
          throw e;
        }
        if (!(r.access & (ACCESS3_MODIFY | ACCESS3_EXTEND))) throw new FsError('ACCES', 'no write permission', { wcc: { after: r.attr } });
        (s.writable ??= new Map()).set(who, Date.now());
      })().finally(() => this.writableAsked.delete(k));
      this.writableAsked.set(k, p);
    }
    return p;
  }
  /** checkWritable's ACCESS calls in flight, by file and caller. */
  private readonly writableAsked = new Map<string, Promise<void>>();

  override async commit(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<{ wcc: WccData; verf: Buffer }> {
    await this.up();
    const s = this.file(fh);
    // callback: a file the server would not delegate was written through; its COMMIT goes there too.
    if (!this.opts.writeBack || (this.opts.consistency === 'callback' && this.held!.notDelegable(s.key) && !this.wb!.dirty(s.key))) {
      if (this.wb!.dirty(s.key)) await this.flushOne(s);
      return this.inner.commit(cred, fh, offset, count);
    }
    await this.wb!.commit();
    const a = s.attr ?? (await this.attrs(cred, s));
    return { wcc: { after: this.present(s, a) }, verf: this.bootVerf };
  }

  /**
   * One of our writes went straight to the server (write-through, or around
   * a full journal), or failed. The read cache follows (FileTable.writeEnd);
   * then the blocks the write covered whole are kept as clean blocks of the
   * version the server's wcc data names: what was just written is read back
   * from the cache, not fetched.
   */
  private wrote(s: FileState, off: number, len: number, wcc: WccData | undefined, ok: boolean, data?: Buffer): void {
    this.files.writeEnd(s, off, len, wcc, ok);
    // Only when the server's wcc data chained to the version we now know and no other of our writes is in flight:
    // a WRITE racing ours to the same block could be in the post-op attributes but not in our bytes.
    if (ok && data && wcc?.after && wcc.after.type === FType.REG && s.fk && !this.closing && !s.writing && s.tag === versionTag(wcc.after)) {
      this.c.writtenBlocksKept += this.reader.keepWritten(s, wcc.after, off, data.subarray(0, len));
    }
  }

  /**
   * A write-back round is on the server: every block its records wrote
   * whole (see FlushSink.flushed) is kept as a clean block of the version
   * the file is now known at — the last flush WRITE's, chained by
   * FileTable.writeEnd; if the chain broke, nothing is kept.
   */
  private async keepFlushed(s: FileState, ranges: Array<[number, number]>, bytes: (start: number, end: number) => Promise<Buffer | undefined>): Promise<void> {
    const bs = this.opts.blockSize;
    const a = s.attr;
    if (!s.fk || !s.tag || !a || s.writing || this.closing || versionTag(a) !== s.tag) return;
    const idxs = new Set<number>();
    for (const [from, to] of ranges) for (let i = Math.floor(from / bs); i * bs < Math.min(to, a.size); i++) idxs.add(i);
    for (const idx of [...idxs].sort((x, y) => x - y)) {
      const start = idx * bs;
      const end = Math.min(a.size, start + bs);
      const data = await bytes(start, end).catch(() => undefined);
      // (Checked again after the await: a write or a change seen meanwhile makes s.tag another version.)
      if (data && s.tag === versionTag(a)) this.c.writtenBlocksKept += this.reader.keepWritten(s, a, start, data);
    }
  }

  private async flushOne(s: FileState): Promise<void> {
    await this.wb!.flushFile(s.key);
  }

  /** A call that names directory `dir` (looks in it, changes its entries, lists it): its journalled SETATTR goes first. */
  private async settled(dir: Buffer): Promise<void> {
    if (this.wb?.dirty(dir.toString('hex'))) await this.flushOne(this.file(dir));
  }

  /** Directories this cache made, and for whom (credKey): their SETATTRs may be journalled (mayJournal). */
  private readonly madeDirs = new Map<string, string>();

  // ---------------------------------------------------------------- attributes and names

  override async getattr(cred: Credentials, fh: Buffer): Promise<Fattr3> {
    await this.up();
    const s = this.file(fh);
    return this.present(s, await this.attrs(cred, s));
  }

  override async setattr(cred: Credentials, fh: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<WccData> {
    await this.up();
    const s = this.file(fh);
    const j = this.mayJournal(cred, s, attrs, guard);
    if (j) {
      const pre = this.present(s, s.attr!);
      try {
        await this.wb!.setattr(cred, fh, j, s.attr!.type === FType.DIR);
        this.c.setattrsJournalled++;
        return { before: { size: pre.size, mtime: pre.mtime, ctime: pre.ctime }, after: this.present(s, s.attr!) };
      } catch (e) {
        if (!(e instanceof JournalRefused)) throw e; // else: sent now, as any other SETATTR
      }
    }
    // Unflushed data first: a truncate must land after it, and a flush after a chmod/utimes would undo the times.
    if (this.wb!.dirty(s.key)) await this.flushOne(s);
    return this.sendSetattr(cred, s, attrs, guard);
  }

  /** A SETATTR to the server (a program's, or a journalled one flushed), the read cache following it as our own write. */
  private async sendSetattr(cred: Credentials, s: FileState, attrs: Sattr3, guard?: NfsTime): Promise<WccData> {
    const old = s.attr?.size ?? 0;
    this.files.writeStart(s);
    try {
      const wcc = await this.inner.setattr(cred, s.fh, attrs, guard);
      const size = attrs.size ?? old;
      this.files.writeEnd(s, Math.min(old, size), attrs.size !== undefined ? Math.abs(old - size) : 0, wcc, true);
      return wcc;
    } catch (e) {
      this.files.writeEnd(s, 0, 0, undefined, false);
      throw e;
    }
  }

  /**
   * A SETATTR that may wait in the journal (tar's chown, chmod and utimes of each file and directory it made:
   * three round trips each otherwise): one the server cannot refuse. Of a file, behind its unflushed writes, by
   * the caller who made them (the server took their permission); of a directory this cache made for the caller
   * (MKDIR: the session may create there), delivered before any call that names the directory (settled).
   * The caller owns it (only an owner may chmod or set times); no size (truncates order against reads), no server
   * time, no set-id or sticky bit (the server's policy may strip them), an owner or group only as it is (a no-op
   * the owner may make). Anything else is sent at once, after what is owed. Returns the fields to journal, or
   * undefined.
   */
  private mayJournal(cred: Credentials, s: FileState, attrs: Sattr3, guard: NfsTime | undefined): JournalSattr | undefined {
    if (!this.opts.writeBack || guard || attrs.size !== undefined || attrs.atime === 'server' || attrs.mtime === 'server') return undefined;
    const d = this.wb!.dirty(s.key);
    if (!s.attr || (d && credKey(d.cred) !== credKey(cred))) return undefined;
    if (s.attr.type === FType.REG) {
      if (!d) return undefined;
      if (this.opts.consistency === 'callback' && !this.held!.holds(s.key, 'write')) return undefined;
    } else if (s.attr.type === FType.DIR) {
      // callback: no write delegation of a directory exists to hold the change under.
      if (this.opts.consistency === 'callback' || this.madeDirs.get(s.key) !== credKey(cred)) return undefined;
    } else return undefined;
    const cur = this.present(s, s.attr);
    if (cred.uid !== cur.uid) return undefined;
    if (attrs.mode !== undefined && (attrs.mode & ~0o777) !== 0) return undefined;
    if ((attrs.uid !== undefined || attrs.gid !== undefined) && (cur.mode & 0o6000) !== 0) return undefined; // a chown clears set-id bits
    if ((attrs.uid !== undefined && attrs.uid !== cur.uid) || (attrs.gid !== undefined && attrs.gid !== cur.gid)) return undefined;
    const j: JournalSattr = {};
    if (attrs.mode !== undefined) j.mode = attrs.mode;
    if (attrs.uid !== undefined) j.uid = attrs.uid;
    if (attrs.gid !== undefined) j.gid = attrs.gid;
    if (attrs.atime) j.atime = attrs.atime as NfsTime;
    if (attrs.mtime) j.mtime = attrs.mtime as NfsTime;
    return j; // (fields left out, not undefined: records merge by spreading)
  }

  override async lookup(cred: Credentials, dir: Buffer, name: string): Promise<{ fh: Buffer; attr?: Fattr3; dirAttr?: Fattr3 }> {
    await this.up();
    const dk = dir.toString('hex');
    const cached = this.names.get(dk, name);
    if (cached) {
      const s = this.file(cached);
      this.renewName(cred, dir, dk, name);
      if (!this.fresh(s)) return { fh: cached };
      this.renewAttrs(cred, s);
      return { fh: cached, attr: this.present(s, s.attr!) };
    }
    await this.settled(dir);
    // callback: a read delegation of the directory first, so the name found can be trusted until a change recalls it.
    if (this.opts.consistency === 'callback' && !this.held!.holds(dk)) {
      await this.takeDelegation(cred, this.file(dir), 'read').catch((e: Error) => log.debug({ err: e.message }, 'cache: no delegation of the directory; names by the timeout'));
    }
    const stamp = this.names.stamp(dk);
    const [g, since] = [this.files.gen, this.files.bumps];
    const sent = this.held?.now();
    const r = await this.inner.lookup(cred, dir, name);
    return { fh: r.fh, ...this.tookLookup(dir, dk, name, r, stamp, since, g, this.opts.consistency === 'callback' ? sent : undefined) };
  }

  /**
   * What a LOOKUP of `name` in `dir` says, sent when the directory's stamp
   * was `stamp` and FileTable.bumps `since`: the name (kept under that stamp,
   * so a change of the directory's names since retires it), and the
   * directory's and the file's attributes unless a change of ours crossed
   * the call (a change of the directory's names, a write or SETATTR of
   * either) — then they are neither kept nor answered (the caller asks).
   */
  private tookLookup(dir: Buffer, dk: string, name: string, r: { fh: Buffer; attr?: Fattr3; dirAttr?: Fattr3 }, stamp: number, since: number, g: number, sent?: number): { attr?: Fattr3; dirAttr?: Fattr3 } {
    this.names.set(dk, name, r.fh, stamp, sent);
    this.paths.note(dk, name, r.fh);
    if (this.names.stamp(dk) !== stamp || this.files.crossed(dk, since) || this.files.crossed(r.fh.toString('hex'), since)) return {};
    if (r.dirAttr) this.files.note(this.file(dir), r.dirAttr, undefined, g);
    return { attr: this.presentMaybe(r.fh, r.attr, g), dirAttr: r.dirAttr };
  }

  override async access(cred: Credentials, fh: Buffer, mask: number): Promise<{ access: number; attr?: Fattr3 }> {
    await this.up();
    if (this.files.peek(fh.toString('hex'))?.attr?.type === FType.DIR) await this.settled(fh); // (a file's unflushed writes need not go first)
    const callback = this.opts.consistency === 'callback';
    const k = callback ? accessKey(cred, fh) : '';
    if (callback) {
      // Permissions change only by a SETATTR (or ACL change) of the file, which recalls its delegation first.
      const granted = this.held!.grantedAt(fh.toString('hex'));
      const e = this.accessSeen.get(k);
      if (granted !== undefined && e && e.sent >= granted && (e.mask & mask) === mask) {
        this.c.accessHits++;
        const s = this.file(fh);
        return { access: e.access & mask, attr: this.fresh(s) ? this.present(s, s.attr!) : undefined };
      }
    }
    const at = Date.now();
    const g = this.files.gen;
    const sent = this.held?.now() ?? 0;
    const r = await this.inner.access(cred, fh, mask);
    this.gate.note(cred, fh, mask, r.access, at);
    if (callback) {
      if (this.accessSeen.size >= 20_000) this.accessSeen.clear();
      this.accessSeen.set(k, { mask, access: r.access, sent });
    }
    return { ...r, attr: this.presentMaybe(fh, r.attr, g) };
  }

  override async readlink(cred: Credentials, fh: Buffer): Promise<{ path: string; attr?: Fattr3 }> {
    await this.up();
    return this.inner.readlink(cred, fh);
  }

  private created(dir: Buffer, name: string, r: NewObject): NewObject {
    const dk = dir.toString('hex');
    this.names.drop(dk, name);
    if (r.fh) {
      this.names.set(dk, name, r.fh);
      this.paths.note(dk, name, r.fh);
    }
    this.noteWcc(dir, r.dirWcc);
    return { ...r, attr: this.presentMaybe(r.fh, r.attr) };
  }

  /**
   * A namespace call that failed may still have run on the server: after a
   * failover an IO error ("may have run on A, not resent to B") or a
   * deadline says nothing about what the first server did. The cache never
   * replays such a call (a second run can hit EXIST or NOENT, or undo a
   * change made since); the caller gets the error. What the cache believed
   * about the names and files involved is forgotten instead, so the next
   * lookup, GETATTR or READDIR asks the server which way it went. (A
   * definite NFS error changed nothing; forgetting costs one lookup.)
   */
  private async unsure<T>(names: Array<[Buffer, string]>, files: Buffer[], call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (e) {
      for (const [dir, name] of names) {
        this.names.drop(dir.toString('hex'), name);
        this.file(dir).at = 0;
      }
      for (const fh of files) this.file(fh).at = 0;
      if (!isFsError(e) || e.code === 'IO') log.warn({ names: names.map(([, n]) => n), err: (e as Error).message }, 'cache: a namespace call failed and may have run on the server: not replayed; the names it touched are asked again');
      throw e;
    }
  }

  override async create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    await this.up();
    const dk = dir.toString('hex');
    // CREATE UNCHECKED with a size truncates an existing file: its unflushed data must land first.
    const old = how.mode !== 'exclusive' ? this.names.get(dk, name) : undefined;
    if (old && this.wb!.dirty(old.toString('hex'))) await this.flushOne(this.file(old));
    await this.settled(dir);
    const r = await this.unsure([[dir, name]], old ? [old] : [], () => this.inner.create(cred, dir, name, how));
    if (r.fh) {
      const s = this.file(r.fh);
      s.at = 0;
      if (s.fk) this.store.dropFile(s.fk);
      // Its creator owns it with write permission: the server lets the owner write (no ACCESS before its first write).
      if (r.attr?.type === FType.REG && r.attr.uid === cred.uid && r.attr.mode & 0o200) (s.writable ??= new Map()).set(credKey(cred), Date.now());
    }
    return this.created(dir, name, r);
  }
  override async mkdir(cred: Credentials, dir: Buffer, name: string, attrs: Sattr3): Promise<NewObject> {
    await this.up();
    await this.settled(dir);
    const r = await this.unsure([[dir, name]], [], () => this.inner.mkdir(cred, dir, name, attrs));
    if (r.fh && r.attr?.uid === cred.uid) {
      if (this.madeDirs.size >= 10_000) this.madeDirs.delete(this.madeDirs.keys().next().value!);
      this.madeDirs.set(r.fh.toString('hex'), credKey(cred));
    }
    return this.created(dir, name, r);
  }
  override async symlink(cred: Credentials, dir: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject> {
    await this.up();
    await this.settled(dir);
    return this.created(dir, name, await this.unsure([[dir, name]], [], () => this.inner.symlink(cred, dir, name, target, attrs)));
  }
  override async mknod(cred: Credentials, dir: Buffer, name: string, what: MknodType): Promise<NewObject> {
    await this.up();
    await this.settled(dir);
    return this.created(dir, name, await this.unsure([[dir, name]], [], () => this.inner.mknod(cred, dir, name, what)));
  }

  /** The handle a name in a directory leads to, if any file with unflushed data might be it. */
  private async dirtyTarget(cred: Credentials, dir: Buffer, name: string): Promise<FileState | undefined> {
    if (!this.wb!.backlog.files) return undefined;
    const dk = dir.toString('hex');
    const fh = this.names.get(dk, name) ?? (await this.inner.lookup(cred, dir, name).then((r) => r.fh, () => undefined));
    return fh && this.wb!.dirty(fh.toString('hex')) ? this.file(fh) : undefined;
  }

  override async remove(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    await this.up();
    // Other links may keep the file: its data must be on the server before a name goes.
    const t = await this.dirtyTarget(cred, dir, name);
    if (t) await this.flushOne(t);
    await this.settled(dir);
    const dk = dir.toString('hex');
    const fh = this.names.get(dk, name);
    const wcc = await this.unsure([[dir, name]], fh ? [fh] : [], () => this.inner.remove(cred, dir, name));
    this.names.drop(dk, name);
    if (fh) this.file(fh).at = 0;
    this.noteWcc(dir, wcc);
    return wcc;
  }

  override async rmdir(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    await this.up();
    // A SETATTR owed to the directory removed goes first (made before the rmdir; its handle is dead after).
    const t = await this.dirtyTarget(cred, dir, name);
    if (t) await this.flushOne(t);
    await this.settled(dir);
    const wcc = await this.unsure([[dir, name]], [], () => this.inner.rmdir(cred, dir, name));
    this.names.drop(dir.toString('hex'), name);
    this.noteWcc(dir, wcc);
    return wcc;
  }

  override async rename(cred: Credentials, fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<{ fromWcc: WccData; toWcc: WccData }> {
    await this.up();
    const t = await this.dirtyTarget(cred, toDir, toName);
    if (t) await this.flushOne(t);
    await this.settled(fromDir);
    await this.settled(toDir);
    const fk = fromDir.toString('hex');
    const tk = toDir.toString('hex');
    const moved = this.names.get(fk, fromName);
    const r = await this.unsure(
      [
        [fromDir, fromName],
        [toDir, toName],
      ],
      [...(moved ? [moved] : []), ...(t ? [t.fh] : [])],
      () => this.inner.rename(cred, fromDir, fromName, toDir, toName),
    );
    this.names.drop(fk, fromName);
    this.names.drop(tk, toName);
    if (moved) {
      this.names.set(tk, toName, moved);
      this.paths.note(tk, toName, moved);
      this.file(moved).at = 0;
    }
    if (t) t.at = 0;
    this.noteWcc(fromDir, r.fromWcc);
    this.noteWcc(toDir, r.toWcc);
    return r;
  }

  override async link(cred: Credentials, fh: Buffer, dir: Buffer, name: string): Promise<{ attr?: Fattr3; dirWcc: WccData }> {
    await this.up();
    await this.settled(dir);
    const r = await this.unsure([[dir, name]], [fh], () => this.inner.link(cred, fh, dir, name));
    this.names.set(dir.toString('hex'), name, fh);
    this.paths.note(dir, name, fh);
    this.file(fh).at = 0;
    this.noteWcc(dir, r.dirWcc);
    return { ...r, attr: r.attr && this.present(this.file(fh), r.attr) };
  }

  override async readdir(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, count: number): Promise<DirPage<DirEntry>> {
    await this.up();
    await this.settled(dir);
    return super.readdir(cred, dir, cookie, verf, count);
  }

  override async readdirplus(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>> {
    await this.up();
    await this.settled(dir);
    const dk = dir.toString('hex');
    const stamp = this.names.stamp(dk);
    const g = this.files.gen;
    const page = await this.inner.readdirplus(cred, dir, cookie, verf, dircount, maxcount);
    if (page.dirAttr) this.files.note(this.file(dir), page.dirAttr, undefined, g);
    const entries = page.entries.map((e) => {
      if (!e.fh) return e;
      this.names.set(dk, e.name, e.fh, stamp);
      this.paths.note(dk, e.name, e.fh);
      return e.attr ? { ...e, attr: this.presentMaybe(e.fh, e.attr, g) } : e;
    });
    return { ...page, entries };
  }

  // ---------------------------------------------------------------- consistency

  /**
   * callback: ask the proxy server for a delegation (it recalls conflicting
   * holders first). A write delegation for a file with unflushed data is a
   * RECLAIM (the data was written under a delegation since lost: refused if
   * this client was fenced); a plain WRITE lifts a fence, so it is asked
   * only with nothing unflushed.
   */
  private async takeDelegation(cred: Credentials, s: FileState, mode: 'read' | 'write'): Promise<boolean> {
    const wasHeld = this.held!.has(s.key);
    const [ep, g, at] = [s.epoch, this.files.gen, Date.now()];
    // A small file read here before (recalled since: another session changed it) is wanted again: its bytes come with the grant.
    const dataMax = mode === 'read' && s.readHere && s.attr?.type === FType.REG ? Math.min(DELEGATE_DATA_MAX, this.opts.blockSize) : 0;
    const got = await this.held!.take(cred, s.fh, mode === 'write' && this.wb?.dirty(s.key) ? 'reclaim' : mode, dataMax);
    // One of our writes or an invalidation crossed the DELEGATE: its attributes may predate it.
    const crossed = s.epoch !== ep;
    // Trust lapsed (or never was): what was cached under the old delegation is asked again.
    if (wasHeld) this.files.invalidate(s);
    // The grant's attributes were taken after it: trusted as a GETATTR sent after the grant would be (the GETATTR it saves).
    if (got.attr && !crossed && this.held!.holds(s.key)) {
      this.files.note(s, got.attr, s.epoch, g);
      // Its bytes are that version's, read as this caller: kept as the file's block, and the caller may read it (the gate's ACCESS).
      if (got.data && got.data.length === got.attr.size && this.current(s, got.attr)) {
        this.c.grantDataBytes += got.data.length;
        this.reader.keepWritten(s, got.attr, 0, got.data);
        this.gate.note(cred, s.fh, ACCESS3_READ, ACCESS3_READ, at);
      }
    }
    return got.granted;
  }

  /** callback: the proxy server recalls `fh` (another session's call conflicts): flush its journal, drop it, answer. */
  async recall(fh: Buffer): Promise<RecallStatus> {
    await this.up();
    const wasHeld = this.held?.recalled(fh) ?? false;
    const s = this.file(fh);
    const dirty = !!this.wb?.dirty(s.key);
    if (!wasHeld && !dirty) return RecallStatus.NOT_HELD;
    let status = RecallStatus.OK;
    if (dirty) {
      try {
        await this.flushOne(s);
      } catch (e) {
        log.warn({ ...this.describe(fh), reason: (e as Error).message }, 'cache: flush on recall failed; the data stays in the journal');
        status = RecallStatus.FLUSH_FAILED;
      }
    }
    this.held?.drop(fh);
    this.invalidate([fh]);
    return status;
  }

  /** callback: the cache drops a file (forgotten, an order): its delegation goes back, once its data is on the server. */
  private async giveBack(s: FileState): Promise<void> {
    if (this.opts.consistency !== 'callback' || !this.held?.has(s.key) || this.wb?.dirty(s.key)) return;
    await this.held.giveBack(s.fh);
  }

  /** callback: give back every delegation whose file has nothing unflushed (session end, leaving the model). */
  private async giveBackAll(): Promise<void> {
    if (!this.held) return;
    await Promise.all(this.held.heldHandles().filter((fh) => !this.wb?.dirty(fh.toString('hex'))).map((fh) => this.held!.giveBack(fh)));
  }

  override async mount(p: string, cred: Credentials): Promise<{ fh: Buffer; authFlavors: number[] }> {
    await this.up();
    const r = await this.inner.mount(p, cred);
    this.roots.set(r.fh.toString('hex'), { fh: Buffer.from(r.fh), cred });
    this.paths.root(r.fh, p);
    // The poll model polls every export mounted through the cache (from now, even while the model is ttl).
    this.poller?.add(r.fh, cred);
    return r;
  }

  /** Optional capability (backend/capabilities.ts): what this cache drops because it changed elsewhere. */
  override get invalidations(): InvalidationSource {
    return {
      onInvalidate: (l) => {
        this.listeners.add(l);
        return () => void this.listeners.delete(l);
      },
    };
  }

  private emit(what: Invalidated): void {
    for (const l of this.listeners) {
      try {
        l(what);
      } catch (e) {
        log.warn({ err: e }, 'cache: an invalidation listener threw');
      }
    }
  }

  /**
   * These files changed elsewhere: their attributes, the names cached in
   * them (directories), what the access gate saw of them, and any reply in
   * flight about them are dropped; their blocks are dropped once the new
   * attributes name another version (blocks are named by version). Unflushed
   * write-back data is never touched: it still goes to the server as the
   * flush rules say, and reads still overlay it.
   */
  invalidate(fhs: Buffer[]): void {
    this.files.gen++;
    for (const fh of fhs) {
      const key = fh.toString('hex');
      const s = this.files.peek(key);
      // Names live under directories (and handles whose type we never learnt): a regular file's bump would only grow the table.
      if (!s?.attr || s.attr.type === FType.DIR) this.names.bump(key);
      this.gate.forget(fh);
      if (s) this.files.invalidate(s);
    }
    for (const fh of fhs) this.emit(fh);
  }

  /** Everything may have changed (the change log cannot tell what): drop every attribute and name, as invalidate does per file. */
  invalidateAll(): void {
    this.files.gen++;
    this.names.clear();
    this.gate.forget();
    for (const s of this.files.all()) this.files.invalidate(s);
    this.emit('all');
  }

  /**
   * An order of the session service (control socket `invalidate`): every
   * file, or the file at `path` under the mounted export (resolved on the
   * server, as the mount's caller). Returns how many files were dropped.
   */
  async invalidateOrder(path?: string): Promise<number> {
    await this.up();
    if (path === undefined || path === '' || path === '/') {
      const n = [...this.files.all()].length;
      this.invalidateAll();
      await this.giveBackAll();
      this.c.ordersInvalidated += n;
      return n;
    }
    if (this.roots.size !== 1) throw new Error(`invalidate by path needs exactly one mounted export (${this.roots.size} mounted)`);
    const { fh: root, cred } = [...this.roots.values()][0];
    let fh = root;
    const hit: Buffer[] = [root];
    for (const name of path.split('/').filter(Boolean)) {
      if (name === '..' || name === '.') throw new Error('invalidate: the path may not contain "." or ".."');
      fh = (await this.inner.lookup(cred, fh, name)).fh;
      hit.push(fh);
    }
    // The file itself and the directory holding its name (a name that now leads elsewhere).
    this.invalidate(hit.slice(-2));
    for (const fh of hit.slice(-2)) await this.giveBack(this.file(fh));
    this.c.ordersInvalidated += 1;
    return 1;
  }

  /** Poll the change log now (tests; an order to catch up before a session event). */
  async pollNow(): Promise<void> {
    await this.poller?.pollAll();
  }

  // ---------------------------------------------------------------- control

  stats(): CacheStats {
    const wb = this.wb;
    return {
      dir: this.opts.dir,
      session: this.opts.session,
      mode: this.opts.writeBack ? 'write-back' : 'write-through',
      blockSize: this.opts.blockSize,
      capacity: this.opts.capacity,
      used: this.store.used,
      blocks: this.store.count,
      journalBytes: this.journal?.diskBytes ?? 0,
      ...snapshot(this.counters, this.channelTotals?.()),
      ...this.reader.c,
      ...this.c,
      invalidations: this.files.invalidations,
      evictions: this.store.evictions,
      lookupHits: this.names.hits,
      lookupMisses: this.names.misses,
      dirtyBytes: wb?.dirtyBytes ?? 0,
      flushBacklog: wb?.backlog ?? { files: 0, records: 0, bytes: 0 },
      flushedBytes: wb?.stats.flushedBytes ?? 0,
      flushRounds: wb?.stats.flushRounds ?? 0,
      flushFailures: wb?.stats.flushFailures ?? 0,
      discardedBytes: wb?.stats.discardedBytes ?? 0,
      flushErrors: wb?.errors ?? [],
      consistency: this.opts.consistency,
      pollMs: this.opts.pollMs,
      polls: this.poller?.c.polls ?? 0,
      pollListed: this.poller?.c.listed ?? 0,
      pollResets: this.poller?.c.resets ?? 0,
      pollFailures: this.poller?.c.pollFailures ?? 0,
      pollInSync: this.poller?.inSync() ?? false,
      pollExports: this.poller?.exports ?? 0,
    };
  }

  /** Deliver every unflushed write; with `discard`, drop (with a warning) what cannot be delivered. */
  async flush(o: { discard?: boolean } = {}): Promise<FlushReport> {
    await this.up();
    const r = await this.wb!.flushAll();
    if (o.discard && r.failed.length) {
      r.discardedBytes = await this.wb!.discard(r.failed.map((x) => x.fh));
      r.failed = [];
    }
    return r;
  }

  /**
   * Change the policies that can change while the session runs: write-back
   * or write-through (to write-through: everything journalled is flushed
   * before this returns; a write that finds its file still dirty flushes it
   * first anyway), and the attribute timeout.
   */
  async configure(o: { writeBack?: boolean; attrTimeoutMs?: number; consistency?: string; pollMs?: number }): Promise<CacheStats> {
    await this.up();
    if (o.pollMs !== undefined) this.opts.pollMs = checkPollMs(o.pollMs);
    if (o.consistency !== undefined) {
      const m = checkConsistency(o.consistency);
      if (m !== 'ttl' && !this.poller) throw new Error(`the ${m} consistency model needs a link to a GVFS proxy server`);
      if (m !== this.opts.consistency) {
        const was = this.opts.consistency;
        // To poll: nothing is trusted until the first poll (a drop-everything answer) is in. To ttl: the timeout takes over.
        if (m === 'poll') this.poller!.start();
        else await this.poller!.stop();
        // To callback: nothing is trusted until a delegation is taken. From it: its data is delivered and its delegations given back.
        if (m === 'callback') {
          this.invalidateAll();
          this.held!.start();
        }
        this.opts.consistency = m;
        if (was === 'callback') {
          this.held!.stop();
          await this.wb!.flushAll();
          await Promise.all(this.held!.heldHandles().filter((fh) => !this.wb?.dirty(fh.toString('hex'))).map((fh) => this.held!.giveBack(fh)));
        }
        log.info({ session: this.opts.session, consistency: m, pollMs: this.opts.pollMs }, 'cache: consistency model changed');
      }
    }
    if (o.attrTimeoutMs !== undefined) {
      if (!(Number.isInteger(o.attrTimeoutMs) && o.attrTimeoutMs >= 0)) throw new Error(`attribute timeout must be a whole number of ms >= 0, got ${o.attrTimeoutMs}`);
      this.opts.attrTimeoutMs = o.attrTimeoutMs;
      // Names follow (as at start, where the directory timeout defaults to the attribute timeout): a changed timeout covers both.
      this.opts.dirTimeoutMs = o.attrTimeoutMs;
    }
    if (o.writeBack !== undefined && o.writeBack !== this.opts.writeBack) {
      this.opts.writeBack = o.writeBack;
      if (!o.writeBack) {
        const r = await this.wb!.flushAll();
        if (r.failed.length) throw new Error(`now write-through, but ${r.failed.length} file(s) could not be flushed: ${r.failed.map((x) => `${x.code}: ${x.message}`).join('; ')}`);
      }
      log.info({ session: this.opts.session, mode: o.writeBack ? 'write-back' : 'write-through' }, 'cache: mode changed');
    }
    return this.stats();
  }

  /** Wait until blocks being fetched and stored are on disk (tests and benchmarks). */
  settle(): Promise<void> {
    return this.reader.settle();
  }

  private async saveState(): Promise<void> {
    try {
      await writeFileAtomic(path.join(this.sessionDir, 'hot.list'), this.store.policy.protectedKeys().join('\n') + '\n');
      await writeFileAtomic(path.join(this.sessionDir, 'stats.json'), JSON.stringify({ ...this.stats(), savedAt: new Date().toISOString(), pid: process.pid }) + '\n');
    } catch (e) {
      log.warn({ err: e }, 'cache: could not save the hot list / stats');
    }
  }

  override async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.reader.closing = true;
    try {
      await this.ready;
    } catch {
      await this.inner.close();
      return;
    }
    for (const t of this.timers) clearInterval(t);
    await this.poller?.stop();
    await this.wb!.close();
    // Delegations go back once their data is on the server (a file still dirty keeps its own: the next run reclaims it).
    this.held?.stop();
    if (this.opts.consistency === 'callback') await this.giveBackAll();
    await this.reader.settle();
    await this.scanning;
    await this.saveState();
    await this.control?.close();
    await this.store.close();
    await this.journal!.close();
    await this.lock!.release();
    await this.inner.close();
  }
}

/**
 * Where the bytes of one cached READ's answer [offset, end) came from:
 * unflushed writes (overlay) and the zeros past the server's end of file
 * (srvEnd) count as the journal's; the rest as the segments the block
 * reader filled say (cache or channel), minus what the overlay covered.
 * Each part is counted from what it is, not as what is left, so a
 * miscounted segment shows as sources that do not add up.
 */
export function sources(segs: Seg[], overlay: Array<{ start: number; data: Buffer }>, offset: number, end: number, srvEnd: number): { cache: number; channel: number; journal: number } {
  const ov = overlay
    .map((p) => ({ s: Math.max(p.start, offset) - offset, e: Math.min(p.start + p.data.length, end) - offset }))
    .filter((x) => x.e > x.s);
  const covered = (s: number, e: number) => ov.reduce((n, x) => n + Math.max(0, Math.min(e, x.e) - Math.max(s, x.s)), 0);
  let cache = 0;
  let channel = 0;
  for (const g of segs) {
    const n = g.len - covered(g.at, g.at + g.len);
    if (g.channel) channel += n;
    else cache += n;
  }
  const serverBytes = srvEnd - offset - covered(0, srvEnd - offset);
  return { cache, channel, journal: end - offset - serverBytes };
}

function nfsTime(ms: number): NfsTime {
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}

