import fs from 'node:fs/promises';
import path from 'node:path';
import {
  blockHash,
  decodeMeta,
  DEFAULT_BLOCK,
  encodeMeta,
  HASH_LEN,
  MAX_BLOCK,
  META_DIR,
  metaFileName,
  MIN_BLOCK,
  sameVersion,
  type FileMeta,
  type MetaVersion,
  type TransferHint,
} from './format.js';

export interface GenerateOptions {
  /** The directory the proxy server exports (where `.gvfs-meta/` lives); default: the nearest ancestor that has one. */
  root?: string;
  blockSize?: number;
  /** Default: the hint already recorded for the file, else 'ondemand'. */
  hint?: TransferHint;
  /** Keep a recorded prefetch order from earlier meta-data of the file (default true). */
  keepOrder?: boolean;
  /** Called after each block scanned with the bytes of this file scanned so far (progress display). */
  onProgress?: (bytes: number) => void;
}

export interface GenerateResult {
  file: string;
  metaPath: string;
  meta: FileMeta;
}

/** The version of a file as NFS attributes name it (fileid = inode, times to the nanosecond). */
export async function versionOf(file: string): Promise<MetaVersion> {
  const st = await fs.stat(file, { bigint: true });
  const t = (ns: bigint) => ({ sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) });
  return { fileid: st.ino, size: Number(st.size), mtime: t(st.mtimeNs), ctime: t(st.ctimeNs) };
}

/** The export root holding meta-data for `file`: `root` if given, else the nearest ancestor with a `.gvfs-meta` directory. */
export async function metaRootOf(file: string, root?: string): Promise<string> {
  if (root) return path.resolve(root);
  let dir = path.dirname(path.resolve(file));
  for (;;) {
    const st = await fs.stat(path.join(dir, META_DIR)).catch(() => undefined);
    if (st?.isDirectory()) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no ${META_DIR} directory above ${file}: give --root, the directory the proxy server exports`);
    dir = up;
  }
}

export async function metaPathOf(file: string, root?: string): Promise<string> {
  const r = await metaRootOf(file, root);
  insideRoot(file, r);
  return path.join(r, META_DIR, metaFileName((await versionOf(file)).fileid));
}

/** The file's path relative to the export root; an error if it is outside. */
function insideRoot(file: string, root: string): string {
  const rel = path.relative(root, path.resolve(file));
  if (rel === '' || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) throw new Error(`${file} is not inside the export ${root}`);
  return rel;
}

/** The file's meta-data, if any (stale or not: compare with versionOf). */
export async function readMetaOf(file: string, root?: string): Promise<{ metaPath: string; meta: FileMeta } | undefined> {
  const metaPath = await metaPathOf(file, root);
  const buf = await fs.readFile(metaPath).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  return buf && { metaPath, meta: decodeMeta(buf) };
}

/**
 * Scan a file (on the state server, where it lives) in blocks: which are all
 * zero, a hash of each, and write its meta-data into the export root's
 * `.gvfs-meta/` atomically. The file must not change during the scan: its
 * version is taken before and after, and a change fails the scan.
 */
export async function generateMeta(file: string, o: GenerateOptions = {}): Promise<GenerateResult> {
  const bs = o.blockSize ?? DEFAULT_BLOCK;
  if (bs < MIN_BLOCK || bs > MAX_BLOCK || bs % MIN_BLOCK) throw new Error(`block size must be a multiple of ${MIN_BLOCK} between ${MIN_BLOCK} and ${MAX_BLOCK}`);
  const root = o.root ? path.resolve(o.root) : await metaRootOf(file);
  const source = insideRoot(file, root);
  if (o.root) await fs.mkdir(path.join(root, META_DIR), { recursive: true, mode: 0o755 });
  const st = await fs.stat(file);
  if (!st.isFile()) throw new Error(`${file} is not a regular file`);
  const before = await versionOf(file);
  const n = Math.ceil(before.size / bs);
  const zeroMap = Buffer.alloc(Math.ceil(n / 8));
  const hashes = Buffer.alloc(n * HASH_LEN);
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(bs);
    for (let i = 0; i < n; i++) {
      const len = Math.min(bs, before.size - i * bs);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await fh.read(buf, got, len - got, i * bs + got);
        if (bytesRead === 0) throw new Error(`${file} shrank during the scan`);
        got += bytesRead;
      }
      const b = buf.subarray(0, len);
      if (allZero(b)) zeroMap[i >> 3] |= 1 << (i & 7);
      else blockHash(b).copy(hashes, i * HASH_LEN);
      o.onProgress?.(i * bs + len);
    }
  } finally {
    await fh.close();
  }
  const after = await versionOf(file);
  if (!sameVersion(before, after)) throw new Error(`${file} changed during the scan; run meta gen again when it is quiet`);
  const metaPath = path.join(root, META_DIR, metaFileName(before.fileid));
  const old = await readMetaOf(file, root).catch(() => undefined);
  const keep = o.keepOrder !== false && old && old.meta.blockSize === bs;
  const meta: FileMeta = {
    ...before,
    blockSize: bs,
    hint: o.hint ?? old?.meta.hint ?? 'ondemand',
    zeroMap,
    hashes,
    order: keep ? old.meta.order.filter((i) => i < n) : [],
    created: Date.now(),
    source,
  };
  await writeMetaFile(metaPath, encodeMeta(meta));
  return { file, metaPath, meta };
}

/** Write beside, fsync, rename over: a reader sees the old or the new meta-data, never a part. */
export async function writeMetaFile(metaPath: string, bytes: Buffer): Promise<void> {
  const tmp = `${metaPath}.${process.pid}.tmp`;
  const h = await fs.open(tmp, 'w', 0o644);
  try {
    await h.writeFile(bytes);
    await h.sync();
  } finally {
    await h.close();
  }
  await fs.rename(tmp, metaPath);
}

const ZEROS = Buffer.alloc(MAX_BLOCK);

/** memcmp against zeros: fast, and a block is at most MAX_BLOCK. */
export function allZero(b: Buffer): boolean {
  return b.equals(ZEROS.subarray(0, b.length));
}
