import path from 'node:path';
import { logger } from '../../util/log.js';
import { diskRoom } from './disk-room.js';
import { SegmentedLru, type EvictionPolicyName } from './eviction.js';
import * as f from './fs-cb.js';
import { jitter, JITTER } from './test-jitter.js';

const log = logger('cache');

/**
 * Cached file blocks on local disk, one file per block:
 *
 *   DIR/blocks/<fk[0:2]>/<fk>/<index>.<tag>     (see versions.ts for fk and tag)
 *
 * A block file holds exactly the block's bytes. It is written to DIR/tmp and
 * renamed into place, so readers — in this process or any other sharing
 * DIR — see a whole block or none; it is never modified afterwards, so a
 * reader holding it open while another process evicts it still reads valid
 * bytes. A block that vanishes (evicted by another process) is a miss. A
 * block shorter than its version says is corrupt: it is deleted and missed.
 *
 * A version's *whole file* (DIR/blocks/<fk[0:2]>/<fk>/w.<tag>) holds all of
 * its bytes in one file, made from its blocks (makeWhole) for a reader that
 * needs one file (FUSE passthrough: the kernel reads it itself). Written and
 * renamed like a block, never modified, evicted like one; its blocks stay
 * (the other read paths and other processes read them).
 *
 * Capacity: each process evicts, by its policy, the blocks it knows — the
 * ones it stored or read, and those a scan of the directory found at start
 * and every `rescanMs`. Processes sharing a directory can therefore exceed
 * the limit by what the others stored since the last scan.
 */
export interface BlockStoreOptions {
  dir: string;
  /** Bytes of blocks allowed right now (the cache size minus the write-back journal). */
  limit: () => number;
  policy?: EvictionPolicyName;
  /**
   * Descriptors of block files kept open across reads. A warm read that
   * finds its block's descriptor open costs one pread; one that does not,
   * an open and a close more (measured ~20% of warm throughput). Default: a
   * quarter of the process's descriptor limit, 64 to 4096.
   */
  maxOpenFiles?: number;
}

interface Entry {
  size: number;
  /** Highest block-relative offset read so far: a read starting below it is a re-reference. */
  hi: number;
}

interface OpenFd {
  fd: number;
  refs: number;
  dead: boolean;
  /** The file's length once fstat has checked it (extent() hands out ranges of it without reading them). */
  size?: number;
}

export class BlockStore {
  readonly policy: SegmentedLru;
  private readonly index = new Map<string, Entry>();
  private readonly byFile = new Map<string, Set<string>>();
  private readonly fds = new Map<string, OpenFd>();
  private readonly opening = new Map<string, Promise<OpenFd | undefined>>();
  private readonly madeDirs = new Set<string>();
  /** Per file key: bumped whenever all blocks of a version are dropped, so a store racing the drop is undone. */
  private readonly gens = new Map<string, number>();
  /** Per block (`fk/idx`): bumped when our own writes drop that block (dropBlocks), so only stores of that block are undone. */
  private readonly blockGens = new Map<string, number>();
  /**
   * Reads of blocks still being stored (served from the staged bytes): their
   * high-water mark and whether one of them was already a re-reference,
   * both applied when the block lands.
   */
  private readonly early = new Map<string, { hi: number; reref: boolean }>();
  /** When each file's directory was last listed for blocks of other processes. */
  private readonly listing = new Map<string, { at: number; p?: Promise<void> }>();
  private tmpSeq = 0;
  private maxFds = 256;
  readonly blocksDir: string;
  readonly tmpDir: string;
  evictions = 0;
  corrupt = 0;

  constructor(private readonly o: BlockStoreOptions) {
    this.policy = new SegmentedLru(o.policy ?? 'slru');
    this.blocksDir = path.join(o.dir, 'blocks');
    this.tmpDir = path.join(o.dir, 'tmp');
  }

  static key(fk: string, idx: number, tag: string): string {
    return `${fk}/${idx}.${tag}`;
  }

  static wholeKey(fk: string, tag: string): string {
    return `${fk}/w.${tag}`;
  }

  /** Whether a name in a file's directory (or the part of a key after its '/') is a whole file's. */
  static isWhole(name: string): boolean {
    return name.startsWith('w.');
  }

  private pathOf(key: string): string {
    return path.join(this.blocksDir, key.slice(0, 2), key);
  }

  get used(): number {
    return this.policy.used;
  }
  get count(): number {
    return this.policy.count;
  }

  has(key: string): boolean {
    return this.index.has(key);
  }

  async init(): Promise<void> {
    await f.mkdir(this.blocksDir);
    await f.mkdir(this.tmpDir);
    this.maxFds = this.o.maxOpenFiles ?? Math.min(4096, Math.max(64, Math.floor((await openFileLimit()) / 4)));
  }

  /**
   * Copy [blockOff, blockOff+len) of block `key` (whose full length is
   * `size`) into buf at bufOff. False when the block is not cached.
   */
  async readInto(key: string, size: number, buf: Buffer, bufOff: number, blockOff: number, len: number): Promise<boolean> {
    const h = await this.acquire(key);
    if (!h) return false;
    let n: number;
    try {
      n = await f.readFully(h.fd, buf, bufOff, len, blockOff);
    } catch (e) {
      log.warn({ err: e, key }, 'cache: reading a block failed; treating it as a miss');
      n = -1;
    } finally {
      this.release(key, h);
    }
    if (n !== len) {
      this.dropCorrupt(key, len, n);
      return false;
    }
    this.readFrom(key, size, blockOff, blockOff + len);
    return true;
  }

  /** Block `key` holds fewer bytes than its version says (`want`, `got`): deleted, and every later read misses. */
  private dropCorrupt(key: string, want: number, got: number): void {
    this.corrupt++;
    log.warn({ key, want, got }, 'cache: block shorter than its version says; deleted');
    this.delete([key]);
  }

  /** [from, to) of block `key` (full length `size`) was read from its file. */
  private readFrom(key: string, size: number, from: number, to: number): void {
    if (!this.index.has(key)) this.add(key, { size, hi: 0 }, false); // stored by another process, or before a restart
    this.noteRead(key, from, to);
  }

  /**
   * [blockOff, blockOff+len) of block `key` (full length `size`) as its open
   * descriptor, for a reader that reads the file itself (a FUSE answer
   * spliced from it): undefined when the block is not cached. The length is
   * checked once per open descriptor (a block is never modified after its
   * rename), so a short block is found here, deleted and missed, as by
   * readInto. `release` once nothing reads the descriptor any more: until
   * then it stays open, even if the block is evicted meanwhile.
   */
  async extent(key: string, size: number, blockOff: number, len: number): Promise<{ fd: number; release: () => void } | undefined> {
    const h = await this.acquire(key);
    if (!h) return undefined;
    if (h.size === undefined) {
      try {
        h.size = (await f.fstat(h.fd)).size;
      } catch (e) {
        log.warn({ err: e, key }, 'cache: checking a block failed; treating it as a miss');
        h.size = -1;
      }
    }
    if (h.size !== size) {
      this.release(key, h);
      this.dropCorrupt(key, size, h.size);
      return undefined;
    }
    this.readFrom(key, size, blockOff, blockOff + len);
    let released = false;
    return {
      fd: h.fd,
      release: () => {
        if (released) return;
        released = true;
        this.release(key, h);
      },
    };
  }

  /**
   * Version `tag` of file `fk` as its whole file (`size` bytes), held open
   * like extent() — from this process's index or stored by another; or
   * undefined (none, or not `size` long: then deleted).
   */
  whole(fk: string, tag: string, size: number): Promise<{ fd: number; release: () => void } | undefined> {
    return this.extent(BlockStore.wholeKey(fk, tag), size, 0, size);
  }

  /**
   * Make version `tag`'s whole file (`size` bytes) from its blocks `keys`,
   * in order, each `blockSize` long but the last: read one at a time into
   * one buffer, written to DIR/tmp, synced and renamed into place. Not made
   * (false) when a block is missing or short, when any of them was dropped
   * meanwhile (their generations, as put checks), or when there is no room:
   * the cache's size must hold it beside its blocks, and the disk it.
   */
  async makeWhole(fk: string, tag: string, size: number, blockSize: number, keys: string[]): Promise<boolean> {
    const key = BlockStore.wholeKey(fk, tag);
    if (this.index.has(key) || keys.length !== Math.ceil(size / blockSize)) return false;
    // (Taken now, in the turn the caller chose the blocks: a drop from here on undoes the whole file.)
    const gens = keys.map((k) => this.genOfKey(k));
    const undropped = () => keys.every((k, i) => this.genOfKey(k) === gens[i]);
    // Beside its blocks within the cache's size, and within what the disk has free beyond its headroom (disk-room.ts).
    const room = await diskRoom(this.o.dir).catch(() => undefined);
    if (2 * size > this.o.limit() || !room || room.free - room.headroom < size) {
      log.debug({ key, size, limit: this.o.limit(), free: room?.free }, 'cache: no room for a whole file');
      return false;
    }
    const tmp = path.join(this.tmpDir, `${process.pid}-${++this.tmpSeq}`);
    const out = await f.open(tmp, 'w');
    let ok = true;
    try {
      const buf = Buffer.allocUnsafe(blockSize);
      for (let i = 0; ok && i < keys.length; i++) {
        const len = Math.min(blockSize, size - i * blockSize);
        const h = await this.acquire(keys[i]);
        if (!h) {
          ok = false;
          break;
        }
        try {
          ok = (await f.readFully(h.fd, buf, 0, len, 0)) === len;
        } finally {
          this.release(keys[i], h);
        }
        if (ok) await f.writeAll(out, buf.subarray(0, len), i * blockSize);
      }
      // Synced before the rename: after a crash, a whole file is there whole or not at all.
      if (ok) await f.fsync(out);
    } catch (e) {
      log.warn({ err: e, key }, 'cache: making a whole file failed');
      ok = false;
    } finally {
      await f.close(out).catch(() => undefined);
    }
    ok &&= undropped() && !this.index.has(key);
    if (ok) {
      try {
        await f.rename(tmp, this.pathOf(key));
      } catch (e) {
        log.warn({ err: e, key }, 'cache: could not put a whole file in place');
        ok = false;
      }
    }
    if (!ok) {
      await f.unlink(tmp).catch(() => undefined);
      return false;
    }
    if (!undropped()) {
      await f.unlink(this.pathOf(key)).catch(() => undefined); // dropped while it was renamed
      return false;
    }
    this.add(key, { size, hi: 0 }, false);
    this.evict();
    return true;
  }

  /**
   * A client read [from, to) of the block (from disk, or from the fetch that
   * is being stored): a read starting below what was read before is a
   * re-reference for the eviction policy.
   */
  noteRead(key: string, from: number, to: number): void {
    const e = this.index.get(key);
    if (!e) {
      // Judged now, like a read of a stored block: by the time the block lands, the order of the reads is lost.
      const r = this.early.get(key);
      if (r) {
        r.reref ||= from < r.hi;
        r.hi = Math.max(r.hi, to);
      } else this.early.set(key, { hi: to, reref: false });
      return;
    }
    const reref = from < e.hi;
    e.hi = Math.max(e.hi, to);
    this.policy.touch(key, reref);
  }

  /**
   * Adopt blocks of file `fk` stored by other processes (or before a
   * restart): list the file's directory — at most once per `maxAgeMs`, a
   * cold read must not pay a failed open per block — and take the blocks
   * whose tag is in `tags` (a block's length follows from its version: `size(idx, tag)`).
   */
  discover(fk: string, tags: Set<string>, size: (idx: number, tag: string) => number, maxAgeMs: number): Promise<void> {
    const cur = this.listing.get(fk);
    if (cur && (cur.p || Date.now() - cur.at < maxAgeMs)) return cur.p ?? Promise.resolve();
    const e = { at: Date.now(), p: undefined as Promise<void> | undefined };
    e.p = (async () => {
      const names = await f.readdir(path.join(this.blocksDir, fk.slice(0, 2), fk)).catch(() => [] as string[]);
      if (JITTER) await jitter();
      for (const n of names) {
        const dot = n.indexOf('.');
        const tag = n.slice(dot + 1);
        if (dot < 0 || !tags.has(tag) || BlockStore.isWhole(n)) continue; // (whole files are found by whole())
        const key = `${fk}/${n}`;
        if (!this.index.has(key)) this.add(key, { size: size(Number(n.slice(0, dot)), tag), hi: 0 }, false);
      }
    })().finally(() => {
      e.at = Date.now();
      e.p = undefined;
    });
    this.listing.set(fk, e);
    if (this.listing.size > 10_000) for (const k of this.listing.keys()) if (k !== fk) { this.listing.delete(k); break; }
    return e.p;
  }

  /**
   * Block idx's drop generation (see put): the file's plus the block's own.
   * Both only grow, so the sum changes whenever either does.
   */
  gen(fk: string, idx: number): number {
    return (this.gens.get(fk) ?? 0) + (this.blockGens.get(`${fk}/${idx}`) ?? 0);
  }

  private genOfKey(key: string): number {
    const slash = key.indexOf('/');
    return this.gen(key.slice(0, slash), Number(key.slice(slash + 1, key.lastIndexOf('.'))));
  }

  /**
   * Store a whole block (bytes of version `tag`); `readTo`: how much of it
   * the caller has read; `gen`: the block's drop generation when the bytes
   * were fetched — if the block was dropped since, it is not kept.
   */
  async put(key: string, data: Buffer, readTo: number, gen: number): Promise<void> {
    if (this.index.has(key) || this.genOfKey(key) !== gen) return;
    if (this.early.size > 10_000) this.early.clear();
    const tmp = path.join(this.tmpDir, `${process.pid}-${++this.tmpSeq}`);
    const dest = this.pathOf(key);
    const fd = await f.open(tmp, 'w');
    try {
      await f.writeAll(fd, data, 0);
    } catch (e) {
      await f.close(fd).catch(() => undefined);
      await f.unlink(tmp).catch(() => undefined);
      throw e;
    }
    await f.close(fd);
    const dir = path.dirname(dest);
    try {
      if (!this.madeDirs.has(dir)) await f.mkdir(dir);
      this.madeDirs.add(dir);
      await f.rename(tmp, dest);
    } catch (e) {
      await f.unlink(tmp).catch(() => undefined);
      if (!f.isNoEnt(e)) throw e;
      // The directory went away under us (cache wiped): make it and try once more.
      this.madeDirs.delete(dir);
      return;
    }
    const r = this.early.get(key);
    this.early.delete(key);
    const hi = Math.max(readTo, r?.hi ?? 0);
    if (this.genOfKey(key) !== gen) {
      // Dropped while it was being written: it may hold bytes our own write has since changed.
      await f.unlink(dest).catch(() => undefined);
      return;
    }
    // Re-referenced while it was being stored: it lands where that re-reference would have moved it (protected).
    this.add(key, { size: data.length, hi }, r?.reref ?? false);
    this.evict();
  }

  private add(key: string, e: Entry, hot: boolean): void {
    this.index.set(key, e);
    const fk = key.slice(0, key.indexOf('/'));
    let s = this.byFile.get(fk);
    if (!s) this.byFile.set(fk, (s = new Set()));
    s.add(key);
    this.policy.insert(key, e.size, hot);
  }

  /** Drop blocks over the current limit. */
  evict(): void {
    const victims = this.policy.evict(Math.max(0, this.o.limit()));
    if (victims.length) {
      this.evictions += victims.length;
      this.delete(victims, true);
    }
  }

  /** Delete blocks of file `fk` whose tag is not in `keep` (a version that is gone). */
  dropFile(fk: string, keep: Set<string> = new Set()): number {
    this.bump(fk);
    const s = this.byFile.get(fk);
    if (!s) return 0;
    const gone = [...s].filter((k) => !keep.has(k.slice(k.lastIndexOf('.') + 1)));
    this.delete(gone);
    return gone.length;
  }

  /** Delete the given blocks of file `fk`, whatever their tag (our own writes changed them). */
  dropBlocks(fk: string, idxs: Iterable<number>): void {
    const want = new Set([...idxs].map(String));
    if (this.blockGens.size > 100_000) this.blockGens.clear(); // (as for gens below)
    for (const i of want) this.blockGens.set(`${fk}/${i}`, (this.blockGens.get(`${fk}/${i}`) ?? 0) + 1);
    const s = this.byFile.get(fk);
    if (!s) return;
    // (A whole file holds every block of its version.)
    this.delete([...s].filter((k) => want.has(k.slice(k.indexOf('/') + 1, k.lastIndexOf('.'))) || BlockStore.isWhole(k.slice(k.indexOf('/') + 1))));
  }

  private bump(fk: string): void {
    this.gens.set(fk, (this.gens.get(fk) ?? 0) + 1);
    if (this.gens.size > 100_000) this.gens.clear(); // (a cleared map restarts at 0: only stores already in flight could slip; rare and bounded)
  }

  private delete(keys: string[], evicted = false): void {
    for (const key of keys) {
      if (!evicted) this.policy.remove(key);
      this.index.delete(key);
      const fk = key.slice(0, key.indexOf('/'));
      const s = this.byFile.get(fk);
      if (s) {
        s.delete(key);
        if (!s.size) this.byFile.delete(fk);
      }
      const h = this.fds.get(key);
      if (h) {
        this.fds.delete(key);
        h.dead = true;
        if (h.refs === 0) void f.close(h.fd).catch(() => undefined);
      }
      const j = jitter();
      (j ? j.then(() => f.unlink(this.pathOf(key))) : f.unlink(this.pathOf(key))).catch((e) => {
        if (!f.isNoEnt(e)) log.warn({ err: e, key }, 'cache: could not delete a block');
      });
    }
  }

  private async acquire(key: string): Promise<OpenFd | undefined> {
    let h = this.fds.get(key);
    if (!h) {
      let p = this.opening.get(key);
      if (!p) {
        p = f.open(this.pathOf(key), 'r').then(
          (fd) => {
            const n: OpenFd = { fd, refs: 0, dead: false };
            this.fds.set(key, n);
            this.trimFds();
            return n;
          },
          (e) => {
            // Gone (another process evicted it): forget it. Anything else (EMFILE ...) is a miss this time only.
            if (f.isNoEnt(e)) {
              if (this.index.has(key)) this.delete([key]);
            } else log.warn({ err: e, key }, 'cache: could not open a block; served from the server instead');
            return undefined;
          },
        );
        this.opening.set(key, p);
        void p.finally(() => this.opening.delete(key));
      }
      h = await p;
      if (!h) return undefined;
    } else {
      // Most recently used last.
      this.fds.delete(key);
      this.fds.set(key, h);
    }
    h.refs++;
    return h;
  }

  private release(_key: string, h: OpenFd): void {
    h.refs--;
    if (h.dead && h.refs === 0) void f.close(h.fd).catch(() => undefined);
  }

  private trimFds(): void {
    const max = this.maxFds;
    for (const [k, h] of this.fds) {
      if (this.fds.size <= max) break;
      this.fds.delete(k);
      h.dead = true;
      if (h.refs === 0) void f.close(h.fd).catch(() => undefined);
    }
  }

  /**
   * Learn the blocks already in DIR (after a restart, or stored by other
   * processes): coldest first by mtime, `hot` keys straight into protected.
   * Also removes temp files left by dead processes.
   */
  async scan(hot: Set<string> = new Set()): Promise<void> {
    const found: Array<{ key: string; size: number; mtime: number }> = [];
    for (const d1 of await f.readdir(this.blocksDir).catch(() => [] as string[])) {
      const p1 = path.join(this.blocksDir, d1);
      for (const fk of await f.readdir(p1).catch(() => [] as string[])) {
        const p2 = path.join(p1, fk);
        this.madeDirs.add(p2);
        const names = await f.readdir(p2).catch(() => [] as string[]);
        // Bounded concurrency: stat a directory's blocks 32 at a time.
        for (let i = 0; i < names.length; i += 32) {
          await Promise.all(
            names.slice(i, i + 32).map(async (n) => {
              if (!/^(\d+|w)\.[0-9a-f]{16}$/.test(n)) return;
              const key = `${fk}/${n}`;
              if (this.index.has(key)) return;
              const st = await f.stat(path.join(p2, n)).catch(() => undefined);
              if (st) found.push({ key, size: st.size, mtime: st.mtimeMs });
            }),
          );
        }
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    for (const b of found) if (!this.index.has(b.key)) this.add(b.key, { size: b.size, hi: 0 }, hot.has(b.key));
    this.evict();
    for (const t of await f.readdir(this.tmpDir).catch(() => [] as string[])) {
      const pid = Number(t.split('-')[0]);
      if (pid === process.pid || (pid > 0 && alive(pid))) continue;
      await f.unlink(path.join(this.tmpDir, t)).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    for (const [k, h] of this.fds) {
      this.fds.delete(k);
      h.dead = true;
      if (h.refs === 0) await f.close(h.fd).catch(() => undefined);
    }
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The soft limit on open files (from /proc/self/limits; 1024 when it cannot be read). */
async function openFileLimit(): Promise<number> {
  try {
    const fd = await f.open('/proc/self/limits', 'r');
    try {
      const b = Buffer.alloc(8192);
      const n = await f.readFully(fd, b, 0, b.length, 0);
      const m = /^Max open files\s+(\d+)/m.exec(b.subarray(0, n).toString());
      return m ? Number(m[1]) : 1024;
    } finally {
      await f.close(fd);
    }
  } catch {
    return 1024;
  }
}
