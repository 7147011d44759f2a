import { createHash } from 'node:crypto';
import type { Fattr3, NfsTime, WccAttr } from '../../nfs3/types.js';

/**
 * Which file version a cached block belongs to.
 *
 * A block is named by its *file key* — the server's identity, the block
 * size, and the file's fsid + fileid as the server reports them — and its
 * *version tag* — the file's size, mtime and ctime. Block files are
 * immutable: a block stored under a tag holds that version's bytes and
 * nothing else, so no race between processes, sessions or a restart can make
 * a reader see bytes of another version; a changed file simply finds no
 * blocks under its new tag.
 *
 * Why fsid + fileid and not the file handle: the proxy server gives each
 * session its own handles for the same file (they carry a session MAC), so
 * two sessions sharing a golden image would never share a handle. fsid +
 * fileid is NFS's identity of a file within one server; with the version
 * tag's nanosecond ctime, a reused inode number cannot alias an old file.
 *
 * The limit of NFSv3 itself applies: a change that leaves size, mtime and
 * ctime all unchanged (two writes within one timestamp tick of a server with
 * coarse timestamps) cannot be seen by any NFSv3 client; the cache's own
 * writes are handled by deleting the blocks they touch.
 */
export function fileKey(serverId: string, blockSize: number, a: Pick<Fattr3, 'fsid' | 'fileid'>): string {
  return createHash('sha256').update(`${serverId}\0${blockSize}\0${a.fsid}\0${a.fileid}`).digest('hex').slice(0, 32);
}

export function versionTag(a: Pick<Fattr3, 'size' | 'mtime' | 'ctime'>): string {
  const t = (x: NfsTime) => `${x.sec}.${x.nsec}`;
  return createHash('sha256').update(`${a.size}\0${t(a.mtime)}\0${t(a.ctime)}`).digest('hex').slice(0, 16);
}

export function sameVersion(a: WccAttr, b: WccAttr): boolean {
  return a.size === b.size && a.mtime.sec === b.mtime.sec && a.mtime.nsec === b.mtime.nsec && a.ctime.sec === b.ctime.sec && a.ctime.nsec === b.ctime.nsec;
}

/**
 * Lineage of a version produced by this cache's own writes: the blocks of
 * version `tag` that are byte-identical to blocks cached under an older tag.
 * Built only from a verified chain of the server's weak-cache-consistency
 * data (each WRITE's pre-op attributes equal the version before it, its
 * post-op attributes name the next); any gap and the file is invalidated
 * instead. `overrides` names, for blocks our writes touched since `base`, the
 * tag whose cached copy is current (the block's own new tag: fetched again).
 */
export interface Lineage {
  tag: string;
  base: string;
  overrides: Map<number, string>;
}

/** Tags to look for block `idx` of version `tag`, best first. */
export function candidateTags(tag: string, idx: number, lin?: Lineage): string[] {
  if (!lin || lin.tag !== tag) return [tag];
  const o = lin.overrides.get(idx);
  if (o !== undefined) return o === tag ? [tag] : [o, tag];
  return [lin.base, tag];
}

/**
 * The lineage after one of our writes took the file from version `fromTag`
 * (with lineage `lin`) to `toTag`, touching blocks `touched`.
 */
export function extendLineage(fromTag: string, toTag: string, touched: Iterable<number>, lin?: Lineage): Lineage {
  const base = lin && lin.tag === fromTag ? lin.base : fromTag;
  const overrides = new Map(lin && lin.tag === fromTag ? lin.overrides : []);
  for (const i of touched) overrides.set(i, toTag);
  return { tag: toTag, base, overrides };
}

/** Blocks whose bytes a write of [off, off+len) changes, including those whose length changes with the size. */
export function touchedBlocks(blockSize: number, off: number, len: number, sizeBefore: number, sizeAfter: number): number[] {
  const out = new Set<number>();
  const add = (s: number, e: number) => {
    if (e <= s) return;
    for (let i = Math.floor(s / blockSize); i <= Math.floor((e - 1) / blockSize); i++) out.add(i);
  };
  add(off, off + len);
  if (sizeBefore !== sizeAfter) add(Math.min(sizeBefore, sizeAfter), Math.max(sizeBefore, sizeAfter));
  return [...out];
}
