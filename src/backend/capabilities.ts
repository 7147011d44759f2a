import type { Credentials } from '../rpc/types.js';
import type { Fattr3 } from '../nfs3/types.js';
import type { ReadSources } from '../util/counters.js';
import type { Backend, SourcedRead } from './backend.js';

/**
 * Optional capabilities: what only some layers can do, declared here so a
 * front end or wrapper asks for the capability, never for a concrete class.
 * A wrapper that keeps handles unchanged passes a capability of the layer
 * below through (PassthroughBackend does); one that translates handles
 * (the proxy server's ProxyExports) does not.
 */

/** What a cache dropped: one file's attributes / names / blocks (its handle, as this backend issues it), or everything. */
export type Invalidated = Buffer | 'all';

/**
 * Invalidations: a layer that caches (the proxy client's cache wrapper)
 * tells its subscribers whenever it drops what it knew of a file because
 * the file changed elsewhere (a poll of the proxy server's change log, an
 * order of the session service) — so a front end with caches of its own
 * (the kernel's page and attribute caches under FUSE) drops the same.
 * Listeners run synchronously, after the layer has dropped its own state;
 * they must not throw (what they throw is logged and ignored).
 */
export interface InvalidationSource {
  /** Subscribe; returns the unsubscribe function. */
  onInvalidate(listener: (what: Invalidated) => void): () => void;
}

/** The backend's invalidation events, if it (or a layer below that shares its handles) has any. */
export function invalidationsOf(b: Backend): InvalidationSource | undefined {
  return (b as Partial<{ invalidations: InvalidationSource | undefined }>).invalidations;
}

/**
 * Meta-data a backend carries itself (a store's signed manifest: hint,
 * block hashes, prefetch order), encoded as meta/format.ts describes, so
 * the proxy server's meta-data procedures serve it as they serve a local
 * export's `.gvfs-meta/` file. `fh` is the backend's own handle; undefined:
 * no meta-data for this file. Errors are FsErrors.
 */
export interface MetaSource {
  fileMeta(fh: Buffer): Promise<Buffer | undefined>;
}

export function metaSourceOf(b: Backend): MetaSource | undefined {
  const m = b as Partial<MetaSource>;
  return typeof m.fileMeta === 'function' ? (b as unknown as MetaSource) : undefined;
}

/** A stored file's image (StoredFiles.storedFile). */
export interface StoredFileInfo {
  image: string;
  /** The file's path in the image. */
  path: string;
  /** SHA-256 of the manifest's bytes: the image version. */
  digest: Buffer;
  /** The signed manifest envelope as stored (image/signature.ts), for a reader to verify itself. */
  envelope: Buffer;
}

/**
 * Content-addressed files (the store backend): what a compute host needs
 * to read a file by chunk hash and verify every byte itself (the chunk
 * procedures, ext/chunks-codec.ts). Handles are the backend's own; no
 * permission is checked here (the caller checks READ through its stack).
 */
export interface StoredFiles {
  /** The image holding file `fh`; undefined: `fh` is not a stored regular file. Throws FsError for a bad handle. */
  storedFile(fh: Buffer): Promise<StoredFileInfo | undefined>;
  /**
   * Chunk `hash` (hex) of file `fh` as stored (codec byte + payload),
   * checked against its hash before it is returned. undefined: (hash, len)
   * is not an extent of that file. Throws FsError IO when the store has no
   * usable copy.
   */
  fileChunk(fh: Buffer, hash: string, len: number): Promise<Buffer | undefined>;
}

/** The backend's stored files, if it is content-addressed (only the store backend today). */
export function storedFilesOf(b: Backend): StoredFiles | undefined {
  return (b as Partial<{ storedFiles: StoredFiles | undefined }>).storedFiles;
}

/**
 * READ into the caller's buffer: `into.length` bytes from `offset` (fewer
 * only at the end of the file), the result's `data` a view of `into`. The
 * caller owns `into` before and after; the backend keeps no reference to it
 * once the promise settles, so the caller may use it again (the NFS front
 * end's buffer pool, util/buffer-pool.ts). Only a layer that reads into
 * memory it does not keep declares this, on its own class: a wrapper never
 * inherits it (PassthroughBackend does not pass it through), because
 * readInto would bypass what the wrapper's read does.
 */
export interface ReadInto {
  readInto(cred: Credentials, fh: Buffer, offset: number, into: Buffer): Promise<SourcedRead>;
}

export function readIntoOf(b: Backend): ReadInto | undefined {
  const r = b as Partial<ReadInto>;
  return typeof r.readInto === 'function' ? (b as unknown as ReadInto) : undefined;
}

/**
 * WRITE's arguments lent, not given: `write` keeps no reference to the
 * handle or data buffers it is passed once its promise settles, and its
 * result refers to neither. The NFS front end then lets the RPC server use
 * a WRITE's record buffer again (Procedure.lendsArgs). The backend
 * contract promises this for `data` only; a handle may be kept (a cache's
 * key), so a layer says so on its own class, and wrappers never inherit it.
 */
export interface LendsWriteArgs {
  readonly writeKeepsNoArgs: true;
}

export function writeKeepsNoArgs(b: Backend): boolean {
  return (b as Partial<LendsWriteArgs>).writeKeepsNoArgs === true;
}

/** `len` bytes at `pos` of the open local file `fd`. */
export interface LocalExtent {
  fd: number;
  pos: number;
  len: number;
}

/** Most extents one local answer may have (the native layer's limit: native/src/fuse_ll.c FD_MAX_EXTENTS). */
export const LOCAL_EXTENTS_MAX = 64;

/** A READ's answer as pieces of local files (LocalReads.readLocal): `extents` in order, `count` bytes in all. */
export interface LocalRead {
  extents: LocalExtent[];
  count: number;
  eof: boolean;
  attr?: Fattr3;
  from?: ReadSources;
  /**
   * Call once, when nothing reads the descriptors any more (until then they
   * stay open): `answered`, whether the bytes went to the caller. Layers that
   * count answers count a local one here, so one whose files could not be
   * read (and was read again the plain way) is counted once.
   */
  release(answered: boolean): void;
}

/**
 * READ answered with where the bytes already are on local disk (the cache's
 * block files), so a front end can move them to the kernel without copying
 * them through JS memory (FUSE: fuse_ll.c replyFds). The answer is the one
 * `read` would give this caller now — the same checks, version and counts —
 * or undefined when it is not all in local files (then call `read`).
 * Only a layer that answers reads from local files declares this, on its own
 * class; a wrapper passes it on (its own `localReads`, present only when
 * the layer below has them) only with what its own `read` would have done
 * to the answer (TopMeter: counting; MetaBackend: see there):
 * PassthroughBackend does not, like readInto.
 */
export interface LocalReads {
  /** `readAhead: false`: the caller fetches ahead itself (meta-data's prefetch: zero blocks are never read from the server). */
  readLocal(cred: Credentials, fh: Buffer, offset: number, count: number, o?: { readAhead?: boolean }): Promise<LocalRead | undefined>;
}

/**
 * The backend's local reads, if it (or the stack below it, through wrappers
 * that pass them on) can answer any: a layer declares them with a
 * `localReads` getter — undefined where there are none — so a front end sees
 * the capability only over a stack that has a layer with local files.
 */
export function localReadsOf(b: Backend): LocalReads | undefined {
  return (b as Partial<{ localReads: LocalReads | undefined }>).localReads;
}

/**
 * Answers a caching layer holds and gives again without asking the server
 * (the disk cache's attributes and names). A front end that caches answers
 * once more (the kernel, under FUSE) must count its own trust from when the
 * server said them, not from when this layer answered: a name the cache
 * found 0.9 s ago, passed on with a whole 1 s budget, would hide a change
 * made elsewhere for 1.9 s. Read synchronously, right after the call that
 * answered (lookup, getattr).
 *
 * Each returns how much longer (ms) this layer gives the answer without the
 * server: 0 when it would ask (it holds none); Infinity while a model other
 * than a timeout keeps it (poll, callback: an invalidation says when it
 * goes). While `renewsAhead()`, a finite trust is renewed ahead: asked for
 * an answer in the second half of its trust, the layer renews it from the
 * server in the background, so a front end that asks again before the
 * trust runs out (at most half the budget later) finds it renewed, and an
 * answer kept in use is never waited for. "Second half": see inSecondHalf.
 */
export interface HeldAnswers {
  /** The attributes getattr (or lookup's `attr`) answers for `fh`. */
  attrTrust(fh: Buffer): number;
  /** The handle lookup answers for `name` in `dir`. */
  nameTrust(dir: Buffer, name: string): number;
  /** Whether answers with a finite trust are renewed ahead now (the disk cache: under the ttl model). */
  renewsAhead(): boolean;
  /**
   * The budgets (ms) finite trusts run down from, as they are now: the
   * layer's attribute and name timeouts, which may change while it runs (a
   * session's live reconfiguration reaches the disk cache alone). A front
   * end that caches too takes them as its own, so the whole mount keeps to
   * the budget in force and renews ahead in step with the layer.
   */
  budgets(): { attrMs: number; nameMs: number };
}

export function heldAnswersOf(b: Backend): HeldAnswers | undefined {
  return (b as Partial<{ heldAnswers: HeldAnswers | undefined }>).heldAnswers;
}

/** A file's current version as one local file (WholeFiles.wholeFile). */
export interface WholeFile {
  /** Open descriptor of a file holding exactly the version's bytes, `size` of them; never written while held. */
  fd: number;
  size: number;
  /** Call once nothing uses the descriptor any more (it stays open until then, even if the layer drops the file). */
  release(): void;
}

/**
 * A file's current version as one local file, for a front end that hands
 * the file to the kernel to read itself (FUSE passthrough): the same
 * attribute check, version and access check (READ, as the caller) as a
 * read's. undefined when the layer does not hold it so — it may start
 * making it then, for a later call. Nothing is fetched. Declared only by a
 * layer whose reads are its local files' bytes; a wrapper passes it on only
 * where its own read would answer the same bytes and do nothing besides.
 */
export interface WholeFiles {
  wholeFile(cred: Credentials, fh: Buffer): Promise<WholeFile | undefined>;
}

export function wholeFilesOf(b: Backend): WholeFiles | undefined {
  return (b as Partial<{ wholeFiles: WholeFiles | undefined }>).wholeFiles;
}

/**
 * Whether an answer with `left` ms of a `budget`'s trust is in the second
 * half of it, where a layer that renews ahead renews it — counted from a
 * little before the halfway mark (a twentieth of the budget, at most
 * 100 ms). A front end that caches too keeps an answer at most half the
 * budget and asks again when that runs out; the kernel measures that in
 * its own ticks, so its ask can come a moment before the halfway mark by
 * our clock. Not renewed then, the answer was passed on with the rest of
 * its trust, and the next ask found it run out (a miss, now and then, of a
 * file kept in use).
 */
export function inSecondHalf(left: number, budget: number): boolean {
  return left <= budget / 2 + Math.min(budget / 20, 100);
}
