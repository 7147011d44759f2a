import { dirStamp } from '../../nfs3/dir-stamp.js';
import type { Fattr3, WccData } from '../../nfs3/types.js';

/** Directories remembered (the least recently changed or looked in goes first). */
const MAX_DIRS = 1024;
/** Names remembered over all directories: past it, whole directories go, oldest first. */
const MAX_NAMES = 32_768;

interface Dir {
  /** The directory's mtime and ctime as of the last reply that showed it (dirStamp). */
  stamp: string;
  /** name → the handle it led to as of `stamp`. */
  names: Map<string, Buffer>;
}

/**
 * What names of a directory lead to, kept while every change of the
 * directory since is one seen here: a change's pre-operation attributes
 * (its wcc "before") must show the directory as the memo last knew it,
 * else what the memo held of the directory goes (a change by anyone else
 * moves the directory's mtime and ctime). So the change log can tell which
 * object a REMOVE or RENAME takes off a name without a LOOKUP first — one
 * round trip to the upstream server per call — and can tell, from the
 * REMOVE's own wcc, whether the memo was still right when it ran.
 *
 * The one blind spot is that of every NFS client's wcc checks and the
 * mount's listings (frontends/fuse/dir-listings.ts): a change by someone
 * else within the same timestamp tick as ours leaves the times as they
 * were. Bounded: MAX_DIRS directories, MAX_NAMES names in all.
 */
export class NameMemo {
  private readonly dirs = new Map<string, Dir>();
  private count = 0;

  /** The handle `name` led to when `dir` was last seen here, or undefined. */
  get(dir: Buffer, name: string): Buffer | undefined {
    return this.dirs.get(dir.toString('latin1'))?.names.get(name);
  }

  /** The directory's stamp as this memo knows it (undefined: not known). */
  stampOf(dir: Buffer): string | undefined {
    return this.dirs.get(dir.toString('latin1'))?.stamp;
  }

  /**
   * Names found in `dir` (LOOKUP, READDIRPLUS), with the directory's
   * attributes from the same reply. Attributes that differ from what the
   * memo knew start the directory afresh from this reply; none: nothing
   * is learnt.
   */
  found(dir: Buffer, dirAttr: Fattr3 | undefined, names: Iterable<[string, Buffer]>): void {
    if (!dirAttr) return;
    const k = dir.toString('latin1');
    const stamp = dirStamp(dirAttr);
    let d = this.dirs.get(k);
    if (!d || d.stamp !== stamp) d = this.fresh(k, stamp);
    for (const [name, fh] of names) this.set(d, name, fh);
    this.touch(k, d);
    this.trim(k);
  }

  /**
   * Our change of `dir` (its reply's wcc), which made each of `names` lead
   * to a handle (undefined: to nothing). Returns whether the directory was
   * as the memo knew it just before the change: only then does what the
   * memo held of it still stand.
   */
  changed(dir: Buffer, wcc: WccData | undefined, names: Array<[string, Buffer | undefined]>): boolean {
    const k = dir.toString('latin1');
    const d0 = this.dirs.get(k);
    const held = !!d0 && !!wcc?.before && dirStamp(wcc.before) === d0.stamp;
    if (!wcc?.after) {
      this.forget(dir);
      return held;
    }
    const d = held ? d0! : this.fresh(k, dirStamp(wcc.after));
    d.stamp = dirStamp(wcc.after);
    for (const [name, fh] of names) {
      if (fh) this.set(d, name, fh);
      else if (d.names.delete(name)) this.count--;
    }
    this.touch(k, d);
    this.trim(k);
    return held;
  }

  /** Forget what the memo holds of `dir` (changed by someone else, or a change whose outcome is unknown). */
  forget(dir: Buffer): void {
    this.drop(dir.toString('latin1'));
  }

  clear(): void {
    this.dirs.clear();
    this.count = 0;
  }

  /** Names held over all directories. */
  get size(): number {
    return this.count;
  }

  private fresh(k: string, stamp: string): Dir {
    this.drop(k);
    const d: Dir = { stamp, names: new Map() };
    this.dirs.set(k, d);
    return d;
  }

  /** Most recently seen last: the eviction order. */
  private touch(k: string, d: Dir): void {
    this.dirs.delete(k);
    this.dirs.set(k, d);
  }

  private set(d: Dir, name: string, fh: Buffer): void {
    if (!d.names.has(name)) this.count++;
    d.names.set(name, Buffer.from(fh));
  }

  private drop(k: string): void {
    const d = this.dirs.get(k);
    if (!d) return;
    this.count -= d.names.size;
    this.dirs.delete(k);
  }

  /** Over a bound: the oldest directories go, `keep` (the one just seen) last. */
  private trim(keep: string): void {
    for (const k of this.dirs.keys()) {
      if (this.dirs.size <= MAX_DIRS && this.count <= MAX_NAMES) return;
      if (k !== keep) this.drop(k);
    }
    if (this.count > MAX_NAMES) this.drop(keep); // a directory with more names than the memo holds
  }
}
