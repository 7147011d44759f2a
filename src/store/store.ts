/**
 * An object store: a flat namespace of keys ("images/x", "chunks/ab…") to
 * immutable byte strings. Two implementations: S3 (s3-store.ts, tested
 * against Ceph radosgw) and a plain directory (file-store.ts).
 *
 * Contract:
 * - Objects are small (a chunk, at most a few MiB compressed; a manifest),
 *   so `get` and `put` take and return whole Buffers: memory stays bounded
 *   by the chunk size times the calls in flight, which callers bound.
 * - `get`/`head` of a missing key reject with StoreError 'NOT_FOUND'.
 * - `put` with `ifAbsent` stores only if the key does not exist yet and
 *   rejects with 'EXISTS' otherwise (S3 If-None-Match: *; O_EXCL + link for
 *   a directory). Without it, it replaces the object atomically: a reader
 *   sees the old bytes or the new ones, never a mix.
 * - `list(prefix)` yields every key under the prefix with its size and
 *   modification time, paging internally.
 * - `delete` of a missing key succeeds (S3 semantics).
 */
export interface ObjectInfo {
  key: string;
  size: number;
  mtime: Date;
}

export type StoreErrorCode = 'NOT_FOUND' | 'EXISTS' | 'IO';

export class StoreError extends Error {
  override name = 'StoreError';
  constructor(
    readonly code: StoreErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function isStoreError(e: unknown, code?: StoreErrorCode): e is StoreError {
  return e instanceof StoreError && (code === undefined || e.code === code);
}

export interface ObjectStore {
  /** For messages: s3://bucket/prefix or file:///dir. */
  readonly url: string;
  get(key: string): Promise<Buffer>;
  head(key: string): Promise<ObjectInfo>;
  put(key: string, data: Buffer, opts?: { ifAbsent?: boolean }): Promise<void>;
  list(prefix: string): AsyncIterable<ObjectInfo>;
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}

/** Keys are relative paths of safe segments; checked in one place so no store can be steered outside its root. */
export function checkKey(key: string): void {
  if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(key) || key.split('/').some((s) => s === '.' || s === '..')) {
    throw new StoreError('IO', `bad object key ${JSON.stringify(key)}`);
  }
}
