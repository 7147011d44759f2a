import { FType } from '../../nfs3/constants.js';
import type { Fattr3, WccAttr, WccData } from '../../nfs3/types.js';
import { logger } from '../../util/log.js';
import type { BlockStore } from './block-store.js';
import { extendLineage, fileKey, sameVersion, touchedBlocks, versionTag, type Lineage } from './versions.js';

const log = logger('cache');

/** Files whose state (attributes, version, read-ahead) is remembered. */
const MAX_FILES = 50_000;

/** What the cache knows of one file handle. */
export interface FileState {
  key: string;
  fh: Buffer;
  /** Last server attributes and when they came (Date.now()). */
  attr?: Fattr3;
  at: number;
  /** Block-store key of the file (regular files) and the version its blocks are named by. */
  fk?: string;
  tag?: string;
  lineage?: Lineage;
  /** Bumped at the start and end of each of our own WRITE/SETATTR on the server (and by invalidate). */
  epoch: number;
  /** FileTable.bumps at the last bump of `epoch`: a call sent before it may predate it (FileTable.crossed). */
  bumpedAt?: number;
  writing: number;
  /** Our writes' wcc (before → after) not yet chained to the version we know. */
  edges: Array<{ before: WccAttr; after: Fattr3; touched: number[] }>;
  /** Read-ahead state (read-ahead.ts). */
  seq?: import('./read-ahead.js').SequentialDetector;
  getattr?: Promise<Fattr3>;
  /** A READ of it was answered here: a re-taken read delegation asks for its bytes too (DELEGATE_READ). */
  readHere?: boolean;
  /** Per caller: write permission checked at. */
  writable?: Map<string, number>;
  /**
   * The invalidation generation (FileTable.gen) the call that brought
   * `attr` was sent in, if no invalidation crossed it; -1 otherwise. Only
   * such attributes are trusted by the poll model beyond the timeout.
   */
  pollGen?: number;
}

/**
 * The files the cache has seen, and how their versions move:
 * attributes from any server reply (`note`) and our own writes
 * (`writeStart` / `writeEnd`). A version change seen in attributes drops the
 * file's blocks of every other version; our own writes drop the blocks they
 * touch and, when the server's wcc data chains from the version we knew,
 * carry the rest over to the new version (the lineage, versions.ts).
 */
export class FileTable {
  private readonly files = new Map<string, FileState>();
  invalidations = 0;
  /** Bumped by every invalidation (a poll's list, an order): a call sent in an older generation may predate it. */
  gen = 0;

  constructor(
    private readonly o: {
      serverId: string;
      blockSize: number;
      store: BlockStore;
      /** A directory's mtime moved: its cached names are void. */
      dirChanged: (key: string) => void;
      /** The file has unflushed writes (never forgotten). */
      dirty: (key: string) => boolean;
      /** The table forgot the file (trimmed to its bound). */
      forgotten?: (s: FileState) => void;
    },
  ) {}

  get(fh: Buffer): FileState {
    const key = fh.toString('hex');
    let s = this.files.get(key);
    if (!s) {
      if (this.files.size >= MAX_FILES) this.trim();
      s = { key, fh: Buffer.from(fh), at: 0, epoch: 0, writing: 0, edges: [] };
      this.files.set(key, s);
    }
    return s;
  }

  private trim(): void {
    for (const [k, s] of this.files) {
      if (this.files.size < MAX_FILES * 0.9) break;
      if (s.writing || s.getattr || this.o.dirty(k)) continue;
      this.files.delete(k);
      this.o.forgotten?.(s);
    }
  }

  /** The file's state if it has any (nothing is created). */
  peek(key: string): FileState | undefined {
    return this.files.get(key);
  }

  all(): IterableIterator<FileState> {
    return this.files.values();
  }

  /**
   * Attributes from the server (a reply of any kind). `epoch`: the file's
   * epoch when the call went out; `sentGen`: the invalidation generation
   * then (absent: unknown, so the poll model does not trust them).
   */
  note(s: FileState, a: Fattr3, epoch?: number, sentGen?: number): void {
    if (epoch !== undefined && epoch !== s.epoch) return; // the call crossed one of our writes: may predate it
    if (s.writing) return;
    s.pollGen = sentGen !== undefined && sentGen === this.gen ? sentGen : -1;
    if (a.type === FType.REG) {
      s.fk ??= fileKey(this.o.serverId, this.o.blockSize, a);
      const tag = versionTag(a);
      if (s.tag !== tag) {
        if (s.tag !== undefined) {
          this.invalidations++;
          log.debug({ fh: s.key, from: s.tag, to: tag }, 'cache: file changed on the server; its cached blocks are dropped');
        }
        // Blocks of any other version of this file can never be served again.
        this.o.store.dropFile(s.fk, new Set([tag]));
        s.tag = tag;
        s.lineage = undefined;
        s.edges = [];
      }
    } else if (a.type === FType.DIR && s.attr && (s.attr.mtime.sec !== a.mtime.sec || s.attr.mtime.nsec !== a.mtime.nsec)) {
      this.o.dirChanged(s.key);
    }
    s.attr = a;
    s.at = Date.now();
  }

  /**
   * The file changed elsewhere: its attributes are asked again, and a
   * GETATTR or other reply in flight is not taken (it may predate the
   * change). Blocks stay: they are named by version, and the new
   * attributes drop every other version's (note). Unflushed writes are not
   * touched.
   */
  invalidate(s: FileState): void {
    this.bump(s);
    s.at = 0;
    s.pollGen = -1;
    s.getattr = undefined;
    s.writable = undefined;
  }

  writeStart(s: FileState): void {
    s.writing++;
    this.bump(s);
  }

  /** Epoch bumps of every file so far: taken before a call whose reply names files not known yet (a LOOKUP). */
  bumps = 0;

  private bump(s: FileState): void {
    s.epoch++;
    s.bumpedAt = ++this.bumps;
  }

  /** Whether a write of ours to file `key` is in flight, or its epoch moved since `bumps` was `since`. */
  crossed(key: string, since: number): boolean {
    const s = this.files.get(key);
    return !!s && (s.writing > 0 || (s.bumpedAt ?? 0) > since);
  }

  /**
   * One of our writes (WRITE, or SETATTR) ended. The blocks it touched are
   * dropped whatever their version; if the server's wcc data chains from the
   * version we know, the new version inherits the other blocks (lineage),
   * otherwise the file is checked again.
   */
  writeEnd(s: FileState, off: number, len: number, wcc: WccData | undefined, ok: boolean): void {
    s.writing--;
    this.bump(s);
    const sizes = [s.attr?.size ?? 0, wcc?.before?.size ?? 0, wcc?.after?.size ?? 0];
    const touched = touchedBlocks(this.o.blockSize, off, len, Math.min(...sizes), Math.max(...sizes));
    if (s.fk) this.o.store.dropBlocks(s.fk, touched);
    if (!ok || !wcc?.before || !wcc.after || !s.tag || !s.attr) {
      s.at = 0;
      s.edges = [];
      if (!s.writing) s.lineage = undefined;
      return;
    }
    s.edges.push({ before: wcc.before, after: wcc.after, touched });
    for (let moved = true; moved; ) {
      moved = false;
      const i = s.edges.findIndex((e) => sameVersion(e.before, s.attr!));
      if (i < 0) break;
      const e = s.edges.splice(i, 1)[0];
      const tag = versionTag(e.after);
      s.lineage = extendLineage(s.tag, tag, e.touched, s.lineage);
      s.tag = tag;
      s.attr = e.after;
      s.at = Date.now();
      moved = true;
    }
    if (!s.writing && s.edges.length) {
      // Someone else's change is in between: start over from the server's word.
      this.invalidations++;
      s.edges = [];
      s.lineage = undefined;
      s.tag = undefined;
      s.attr = undefined;
      s.at = 0;
      if (s.fk) this.o.store.dropFile(s.fk);
    }
  }
}
