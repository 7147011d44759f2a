import type { Backend } from '../../backend/backend.js';
import { LOCAL_EXTENTS_MAX, type LocalExtent } from '../../backend/capabilities.js';
import type { Fattr3 } from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import type { DataCounters } from '../../util/counters.js';
import { logger } from '../../util/log.js';
import { BlockStore } from './block-store.js';
import type { FileState, FileTable } from './file-state.js';
import { FetchLimiter, SequentialDetector } from './read-ahead.js';
import { jitter, JITTER } from './test-jitter.js';
import { candidateTags, versionTag, type Lineage } from './versions.js';

const log = logger('cache');

/** Largest READ sent to the server (the wire's MAX_DATA): a fetch of consecutive blocks goes in pieces of this. */
export const MAX_READ = 1 << 20;
/** How often a file's cache directory is listed for blocks other processes stored. */
const DISCOVER_EVERY_MS = 1000;

/** A range of a block file, its descriptor held until `release`. */
export type HeldExtent = LocalExtent & { release: () => void };

/** The part of one block a client READ needs: block idx (blen bytes), [blockOff, blockOff+len) → buf[bufOff..]. */
interface Part {
  idx: number;
  blen: number;
  bufOff: number;
  blockOff: number;
  len: number;
}

/** Where bytes of a READ's buffer came from: buf[at, at+len) from the disk cache, or over the channel. */
export interface Seg {
  at: number;
  len: number;
  channel: boolean;
}

interface Fetched {
  data: Buffer;
  /** The bytes are the whole block of the version asked for. */
  ok: boolean;
  /** All bytes came, but the server's version moved meanwhile because of our own writes (the overlay covers them). */
  ownChange?: boolean;
}

/**
 * The read path of the cache: a file version's bytes from the disk cache
 * (block-store.ts), from fetches already on the wire, or from new fetches
 * of whole blocks — consecutive missing blocks in one READ — with
 * sequential read-ahead (read-ahead.ts). A fetched block goes to disk in
 * the background and is served from memory until it lands.
 */
export class BlockReader {
  /** Blocks fetched by READs to the server, and by read-ahead (bytes are in the session's DataCounters). */
  readonly c = { serverReads: 0, readAheadBlocks: 0 };
  /** No more blocks are stored (the cache is closing). */
  closing = false;
  private readonly limiter: FetchLimiter;
  private readonly inflight = new Map<string, Promise<Fetched>>();
  private readonly puts = new Set<Promise<void>>();
  /** Whole files being made, and wanted once their blocks are all on disk (by whole-file key). */
  private readonly making = new Map<string, Promise<void>>();
  private readonly wanted = new Map<string, { s: FileState; a: Fattr3 }>();
  /** Fetched blocks on their way to disk: served from memory meanwhile. */
  private readonly staged = new Map<string, Buffer>();
  private readonly stagedGen = new Map<string, number>();
  private readonly maxPuts: number;

  constructor(
    private readonly inner: Backend,
    private readonly store: BlockStore,
    private readonly files: FileTable,
    private readonly o: { blockSize: number; readAheadBytes: number; fetchBytesInFlight: number },
    private readonly counters: DataCounters,
  ) {
    this.limiter = new FetchLimiter(Math.max(4, Math.floor(o.fetchBytesInFlight / o.blockSize)));
    this.maxPuts = Math.max(4, Math.floor((32 << 20) / o.blockSize));
  }

  /** Server bytes [off, end) straight from the server, uncached (zeros past its end of file). */
  async fillDirect(cred: Credentials, s: FileState, buf: Buffer, off: number, end: number, segs: Seg[]): Promise<void> {
    let got = 0;
    segs.push({ at: 0, len: end - off, channel: true });
    while (off + got < end) {
      this.c.serverReads++;
      const r = await this.inner.read(cred, s.fh, off + got, Math.min(MAX_READ, end - off - got));
      r.data.copy(buf, got);
      r.release?.(); // copied: its record may be used again
      got += r.count;
      if (r.count === 0) break;
    }
    buf.fill(0, got, end - off);
  }

  /**
   * Server bytes [off, end) of version `a` into buf; false if the version
   * changed meanwhile (`accept`: unless all bytes came, which a last attempt
   * settles for, as a READ racing a WRITE on any server would). Blocks come
   * from the disk cache, from a fetch already on the wire, or from new
   * fetches — consecutive missing blocks in one READ of up to MAX_READ.
   */
  async fill(cred: Credentials, s: FileState, a: Fattr3, buf: Buffer, off: number, end: number, accept: boolean, segs: Seg[]): Promise<boolean> {
    const bs = this.o.blockSize;
    const tag = s.tag!;
    const lin = s.lineage;
    const parts = this.parts(a, off, end);
    let missing = await this.fromCache(s, tag, lin, parts, buf, segs);
    if (!missing.length) return true;
    // Not known here: another process (or an earlier run) may have stored them.
    await this.discover(s, tag, a.size);
    missing = await this.fromCache(s, tag, lin, missing, buf, segs);
    if (!missing.length) return true;
    const fetches = new Map<number, Promise<Fetched>>();
    let run: number[] = [];
    const go = () => {
      if (run.length) for (const [i, p] of this.fetchRun(cred, s, tag, a.size, run[0], run.length, true)) fetches.set(i, p);
      run = [];
    };
    for (const p of missing) {
      const cur = this.inflight.get(BlockStore.key(s.fk!, p.idx, tag));
      if (cur) {
        go();
        fetches.set(p.idx, cur);
        continue;
      }
      if (run.length && (p.idx !== run[run.length - 1] + 1 || (run.length + 1) * bs > MAX_READ)) go();
      run.push(p.idx);
    }
    go();
    const ok = await Promise.all(
      missing.map(async (p) => {
        const r = await fetches.get(p.idx)!;
        // (A fetch of another length is of another version whatever its name: never copy less than the part.)
        if (r.data.length !== p.blen || (!r.ok && !(r.ownChange || accept))) return false;
        r.data.copy(buf, p.bufOff, p.blockOff, p.blockOff + p.len);
        if (r.ok) this.store.noteRead(BlockStore.key(s.fk!, p.idx, tag), p.blockOff, p.blockOff + p.len);
        segs.push({ at: p.bufOff, len: p.len, channel: true });
        return true;
      }),
    );
    return ok.every(Boolean);
  }

  private parts(a: Fattr3, off: number, end: number): Part[] {
    const bs = this.o.blockSize;
    const parts: Part[] = [];
    for (let i = Math.floor(off / bs); i * bs < end; i++) {
      const bStart = i * bs;
      const from = Math.max(off, bStart);
      const to = Math.min(end, bStart + bs);
      parts.push({ idx: i, blen: Math.min(bs, a.size - bStart), bufOff: from - off, blockOff: from - bStart, len: to - from });
    }
    return parts;
  }

  /** Bytes [off, end) of version `a` from the disk cache alone (nothing fetched); false if any block is missing. */
  async fillCached(s: FileState, a: Fattr3, buf: Buffer, off: number, end: number): Promise<boolean> {
    const tag = s.tag!;
    let missing = await this.fromCache(s, tag, s.lineage, this.parts(a, off, end), buf, []);
    if (!missing.length) return true;
    await this.discover(s, tag, a.size);
    missing = await this.fromCache(s, tag, s.lineage, missing, buf, []);
    return !missing.length;
  }

  /** Whether the disk cache is known to hold every block of [off, end) of version `a` (nothing asked, nothing read). */
  onDisk(s: FileState, a: Fattr3, off: number, end: number): boolean {
    if (end <= off || !s.fk || !s.tag) return false;
    return this.parts(a, off, end).every((p) => this.storedKeys(s.fk!, p.idx, s.tag!, s.lineage).length > 0);
  }

  /** The keys of block idx of version `tag` the disk cache knows, under each tag its lineage allows, in the order to try them. */
  private storedKeys(fk: string, idx: number, tag: string, lin: Lineage | undefined): string[] {
    return candidateTags(tag, idx, lin)
      .map((t) => BlockStore.key(fk, idx, t))
      .filter((k) => this.store.has(k));
  }

  /**
   * Bytes [off, end) of version `a` as ranges of block files on disk, when
   * the disk cache holds every block of them (blocks still being fetched or
   * stored do not count: they are in memory); undefined otherwise, with
   * nothing held. Each extent's `release` gives its descriptor back.
   */
  async localExtents(s: FileState, a: Fattr3, off: number, end: number): Promise<HeldExtent[] | undefined> {
    const tag = s.tag!;
    const parts = this.parts(a, off, end);
    // (Small blocks: a 1 MiB answer over 4 KiB blocks is more pieces than one local answer may have.)
    if (parts.length > LOCAL_EXTENTS_MAX) return undefined;
    const one = async (p: Part): Promise<HeldExtent | undefined> => {
      const x = await this.heldBlock(s, tag, p.idx, p.blen, p.blockOff, p.len);
      return x && { fd: x.fd, pos: p.blockOff, len: p.len, release: x.release };
    };
    let got = await Promise.all(parts.map(one));
    if (got.some((x) => !x)) {
      // Not known here: another process (or an earlier run) may have stored them.
      await this.discover(s, tag, a.size);
      got = await Promise.all(parts.map((p, i) => got[i] ?? one(p)));
    }
    if (got.every((x): x is HeldExtent => !!x)) return got;
    for (const x of got) x?.release();
    return undefined;
  }

  /**
   * Version `a` (the current one, `size` > 0) as one local file holding
   * exactly its bytes — its whole file, or its only block — held until
   * `release`; undefined when the disk cache does not hold it so. Nothing is
   * fetched: a whole file is made in the background from the blocks once
   * every one is on disk — now, or when the last of them lands — and a
   * later call finds it.
   */
  async wholeFile(s: FileState, a: Fattr3): Promise<{ fd: number; release: () => void } | undefined> {
    const fk = s.fk!;
    const tag = s.tag!;
    if (a.size <= 0) return undefined;
    if (a.size <= this.o.blockSize) return this.heldBlock(s, tag, 0, a.size, 0, a.size);
    const w = await this.store.whole(fk, tag, a.size);
    if (w || this.closing) return w;
    if (!this.onDisk(s, a, 0, a.size)) await this.discover(s, tag, a.size);
    if (!this.makeWhole(s, a)) {
      // Wanted once its blocks are all on disk (storeBlock): a few hundred files at most are waited for.
      const wk = BlockStore.wholeKey(fk, tag);
      this.wanted.delete(wk);
      this.wanted.set(wk, { s, a });
      if (this.wanted.size > 256) this.wanted.delete(this.wanted.keys().next().value!);
    }
    return undefined;
  }

  /** Start making version a's whole file from its blocks on disk; false if one is not on disk. */
  private makeWhole(s: FileState, a: Fattr3): boolean {
    const fk = s.fk!;
    const tag = s.tag!;
    const key = BlockStore.wholeKey(fk, tag);
    if (this.making.has(key)) return true;
    const keys: string[] = [];
    for (const p of this.parts(a, 0, a.size)) {
      const k = this.storedKeys(fk, p.idx, tag, s.lineage)[0];
      if (!k) return false;
      keys.push(k);
    }
    this.wanted.delete(key);
    const p = this.store
      .makeWhole(fk, tag, a.size, this.o.blockSize, keys)
      .then((made) => log.debug({ fk, tag, size: a.size, made }, 'cache: whole file'))
      .catch((e) => log.warn({ err: e, fk }, 'cache: making a whole file failed'))
      .finally(() => this.making.delete(key));
    this.making.set(key, p);
    return true;
  }

  /** Block `key` landed on disk: a whole file waiting for it may be made now. */
  private landed(key: string): void {
    if (!this.wanted.size || this.closing) return;
    const fk = key.slice(0, key.indexOf('/'));
    const tag = key.slice(key.lastIndexOf('.') + 1);
    const w = this.wanted.get(BlockStore.wholeKey(fk, tag));
    if (w && w.s.tag === tag && this.onDisk(w.s, w.a, 0, w.a.size)) this.makeWhole(w.s, w.a);
  }

  /**
   * Block idx (`blen` bytes) of version `tag`, [off, off+len) of it held
   * open from the first copy on disk under a tag its lineage allows
   * (BlockStore.extent); undefined when none is there.
   */
  private async heldBlock(s: FileState, tag: string, idx: number, blen: number, off: number, len: number): Promise<{ fd: number; release: () => void } | undefined> {
    for (const k of this.storedKeys(s.fk!, idx, tag, s.lineage)) {
      const x = await this.store.extent(k, blen, off, len);
      if (x) return x;
    }
    return undefined;
  }

  /** Whether every block of [off, end) of version `a` is cached or on its way (nothing is read or fetched). */
  async hasCached(s: FileState, a: Fattr3, off: number, end: number): Promise<boolean> {
    const tag = s.tag!;
    const all = () => this.parts(a, off, end).every((p) => this.cachedOrComing(s, p.idx, tag));
    if (all()) return true;
    await this.discover(s, tag, a.size);
    return all();
  }

  /** Block idx of version `tag` is in the disk cache (under a tag its lineage allows), being fetched, or being stored. */
  private cachedOrComing(s: FileState, idx: number, tag: string): boolean {
    const key = BlockStore.key(s.fk!, idx, tag);
    return this.storedKeys(s.fk!, idx, tag, s.lineage).length > 0 || this.inflight.has(key) || this.staged.has(key);
  }

  /**
   * Whole blocks of version `a` (the current one) that another path fetched
   * and verified (the meta-data wrapper's bulk transfers): stored like
   * fetched blocks, served from memory until they are on disk. `off` is
   * block-aligned; a trailing partial block (not the file's last) is left out.
   */
  offer(s: FileState, a: Fattr3, off: number, data: Buffer): number {
    const bs = this.o.blockSize;
    if (off % bs) return 0;
    const tag = s.tag!;
    let stored = 0;
    for (let at = 0; at < data.length; at += bs) {
      const idx = (off + at) / bs;
      const blen = Math.min(bs, a.size - idx * bs);
      if (blen <= 0 || data.length - at < blen) break;
      const key = BlockStore.key(s.fk!, idx, tag);
      if (this.store.has(key) || this.staged.has(key)) continue;
      this.storeBlock(key, data.subarray(at, at + blen), 0, this.store.gen(s.fk!, idx));
      stored++;
    }
    return stored;
  }

  /**
   * Bytes [off, off+data.length) our own write just put on the server,
   * whose wcc data names version `after`: every block they cover whole (the
   * file's last block: up to its end) is stored as a clean block of that
   * version — the lineage (versions.ts) finds it there once the version
   * chains. Copied: the caller's buffer is its own again once the write settles.
   */
  keepWritten(s: FileState, after: Fattr3, off: number, data: Buffer): number {
    const bs = this.o.blockSize;
    if (!s.fk || this.closing) return 0;
    const tag = versionTag(after);
    let kept = 0;
    for (let idx = Math.ceil(off / bs); idx * bs < Math.min(off + data.length, after.size); idx++) {
      const bStart = idx * bs;
      const blen = Math.min(bs, after.size - bStart);
      if (blen <= 0 || bStart + blen > off + data.length) break;
      const key = BlockStore.key(s.fk, idx, tag);
      if (this.store.has(key) || this.staged.has(key)) continue;
      this.storeBlock(key, Buffer.from(data.subarray(bStart - off, bStart - off + blen)), 0, this.store.gen(s.fk, idx));
      kept++;
    }
    return kept;
  }

  /** Copy what the disk cache (or a block on its way there) has; returns the parts it did not have, in order. */
  private async fromCache(s: FileState, tag: string, lin: Lineage | undefined, parts: Part[], buf: Buffer, segs: Seg[]): Promise<Part[]> {
    const fk = s.fk!;
    const got = await Promise.all(
      parts.map(async (p) => {
        for (const k of this.storedKeys(fk, p.idx, tag, lin)) {
          if (await this.store.readInto(k, p.blen, buf, p.bufOff, p.blockOff, p.len)) return this.hit(p, segs);
        }
        const primary = BlockStore.key(fk, p.idx, tag);
        const st = this.staged.get(primary);
        if (st && st.length === p.blen && this.stagedGen.get(primary) === this.store.gen(fk, p.idx)) {
          st.copy(buf, p.bufOff, p.blockOff, p.blockOff + p.len);
          this.store.noteRead(primary, p.blockOff, p.blockOff + p.len);
          return this.hit(p, segs);
        }
        return false;
      }),
    );
    return parts.filter((_, i) => !got[i]);
  }

  /** Blocks of this version other processes stored (see BlockStore.discover). */
  private discover(s: FileState, tag: string, size: number): Promise<void> {
    const bs = this.o.blockSize;
    const tags = new Set([tag]);
    if (s.lineage && s.lineage.tag === tag) {
      tags.add(s.lineage.base);
      for (const t of s.lineage.overrides.values()) tags.add(t);
    }
    return this.store.discover(s.fk!, tags, (idx) => Math.min(bs, size - idx * bs), DISCOVER_EVERY_MS);
  }

  private hit(p: Part, segs: Seg[]): true {
    segs.push({ at: p.bufOff, len: p.len, channel: false });
    return true;
  }

  /**
   * Fetch blocks first..first+n-1 of version `tag` in as few READs as the
   * wire allows, each block registered as in flight so no one fetches it
   * twice; a block is stored only if the server's attributes after the READ
   * still name that version and none of our own writes to the file crossed it.
   */
  private fetchRun(cred: Credentials, s: FileState, tag: string, size: number, first: number, n: number, demand: boolean): Map<number, Promise<Fetched>> {
    const run = this.doFetchRun(cred, s, tag, size, first, n, demand);
    const out = new Map<number, Promise<Fetched>>();
    for (let i = 0; i < n; i++) {
      const key = BlockStore.key(s.fk!, first + i, tag);
      const p: Promise<Fetched> = run.then((rs) => rs[i]);
      void p.catch(() => undefined).finally(() => {
        if (this.inflight.get(key) === p) this.inflight.delete(key);
      });
      this.inflight.set(key, p);
      out.set(first + i, p);
    }
    return out;
  }

  private async doFetchRun(cred: Credentials, s: FileState, tag: string, size: number, first: number, n: number, demand: boolean): Promise<Fetched[]> {
    const bs = this.o.blockSize;
    const start = first * bs;
    const len = Math.min(n * bs, size - start);
    const ep = s.epoch;
    const sentGen = this.files.gen;
    const gens = Array.from({ length: n }, (_, i) => this.store.gen(s.fk!, first + i));
    const clean = s.writing === 0;
    let data: Buffer | undefined;
    let got = 0;
    let same = true;
    await this.limiter.run(demand, async () => {
      while (got < len) {
        this.c.serverReads++;
        if (JITTER) await jitter();
        const r = await this.inner.read(cred, s.fh, start + got, Math.min(MAX_READ, len - got));
        if (JITTER) await jitter();
        // The usual case, one READ for the whole run: keep its bytes (a view of the reply, ours now) without a copy.
        // (Its record is never given back: the blocks are views of it.)
        if (got === 0 && r.count === len) data = r.data;
        else {
          r.data.copy((data ??= Buffer.allocUnsafe(len)), got);
          r.release?.(); // copied: its record may be used again
        }
        got += r.count;
        if (!demand) this.counters.readAheadBytes += r.count;
        if (r.attr) {
          if (versionTag(r.attr) !== tag) same = false;
          this.files.note(s, r.attr, ep, sentGen);
        } else same = false;
        if (r.count === 0) break;
      }
    });
    data ??= Buffer.alloc(0);
    const keep = same && clean && s.epoch === ep && s.tag === tag && !this.closing;
    const out: Fetched[] = [];
    for (let i = 0; i < n; i++) {
      const bStart = i * bs;
      const blen = Math.min(bs, len - bStart);
      const bytes = data.subarray(Math.min(bStart, got), Math.min(bStart + blen, got));
      if (bytes.length < blen || !same) {
        out.push({ data: bytes, ok: false, ownChange: !clean || s.epoch !== ep });
        continue;
      }
      if (keep) this.storeBlock(BlockStore.key(s.fk!, first + i, tag), bytes, 0, gens[i]);
      out.push({ data: bytes, ok: true });
    }
    return out;
  }

  private storeBlock(key: string, data: Buffer, readTo: number, gen: number): void {
    this.staged.set(key, data);
    this.stagedGen.set(key, gen);
    const p = (async () => {
      while (this.puts.size > this.maxPuts) await Promise.race(this.puts);
      if (JITTER) await jitter();
      await this.store.put(key, data, readTo, gen);
    })().catch((e) => log.warn({ err: e, key }, 'cache: storing a block failed (disk full?); it will be fetched again'));
    this.puts.add(p);
    void p.finally(() => {
      this.puts.delete(p);
      if (this.staged.get(key) === data) {
        this.staged.delete(key);
        this.stagedGen.delete(key);
      }
      this.landed(key);
    });
  }

  /** On sequential access, fetch the next blocks ahead of the reader, concurrently. */
  readAhead(cred: Credentials, s: FileState, a: Fattr3, off: number, end: number): void {
    const bs = this.o.blockSize;
    s.seq ??= new SequentialDetector(Math.max(2, Math.ceil((1 << 20) / bs)), Math.max(2, Math.floor(this.o.readAheadBytes / bs)));
    const n = s.seq.onRead(off, end);
    if (!n || a.size === 0) return;
    const last = Math.floor((a.size - 1) / bs);
    const cur = Math.floor((end - 1) / bs);
    const to = Math.min(last, cur + n);
    // The blocks' lengths follow from `a`: fetch them under a's own tag only. The caller's version may be
    // older than the file's by now (a flush of ours landed while the READ waited for its ACCESS check):
    // blocks of the newer tag fetched with the older size would be cut short at the old end of file, and a
    // READ joining such a fetch would return the rest of its buffer unfilled.
    const tag = versionTag(a);
    if (s.tag !== tag) return;
    const from = Math.max(cur + 1, s.seq.next);
    s.seq.next = Math.max(s.seq.next, to + 1);
    if (from > to) return;
    void (async () => {
      await this.discover(s, tag, a.size);
      if (s.tag !== tag) return;
      let run: number[] = [];
      const go = () => {
        if (!run.length) return;
        this.c.readAheadBlocks += run.length;
        for (const p of this.fetchRun(cred, s, tag, a.size, run[0], run.length, false).values()) p.catch((e) => log.debug({ err: e }, 'cache: read-ahead failed'));
        run = [];
      };
      for (let i = from; i <= to; i++) {
        if (this.cachedOrComing(s, i, tag)) {
          go();
          continue;
        }
        if (run.length && (run.length + 1) * bs > MAX_READ) go();
        run.push(i);
      }
      go();
    })().catch((e) => log.debug({ err: e }, 'cache: read-ahead failed'));
  }

  /** Wait until blocks being stored are on disk (tests and benchmarks). */
  async settle(): Promise<void> {
    while (this.puts.size || this.inflight.size || this.making.size) await Promise.allSettled([...this.puts, ...this.inflight.values(), ...this.making.values()]);
  }
}
