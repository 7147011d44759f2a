import type { Fattr3, WccAttr, WccData } from '../../nfs3/types.js';

/** Directories remembered at once (least recently set out first). */
const MAX_DIRS = 4096;
/** A directory with more names is not remembered (the memory would outweigh the LOOKUPs saved). */
const MAX_NAMES = 10_000;

/** What says a directory's entries are as they were: its mtime and ctime (a change of entries moves both). */
const stampOf = (a: Fattr3 | WccAttr) => `${a.mtime.sec}.${a.mtime.nsec}/${a.ctime.sec}.${a.ctime.nsec}`;

/** Two attribute sets of one directory with the same mtime and ctime: no entry changed between them. */
export const sameTimes = (a: Fattr3, b: Fattr3): boolean => stampOf(a) === stampOf(b);

/**
 * Complete listings of directories this mount made or read whole, so that
 * "that name is not there" needs no LOOKUP: `tar -x` looks up every name
 * before it creates it, one wide-area round trip per file otherwise.
 *
 * A listing holds for the attribute budget from when the call that produced
 * it was sent (a name made elsewhere shows within --attr-timeout, as any
 * change does). Our own changes keep it, and renew it, only when their
 * pre-operation attributes (wcc) show the directory exactly as the listing
 * knew it, i.e. nobody else changed it in between; otherwise, and on any
 * failed change, it is dropped.
 */
export class DirListings {
  private readonly m = new Map<string, { names: Set<string>; stamp: string; at: number }>();

  constructor(private readonly budgetMs: number) {}

  /** The directory holds exactly `names` (MKDIR: none), as of attributes `dirAttr` from a call sent at `at` (performance.now()). */
  set(dirKey: string, names: Iterable<string>, dirAttr: Fattr3 | undefined, at: number): void {
    this.m.delete(dirKey);
    if (this.budgetMs <= 0 || !dirAttr) return;
    const set = new Set<string>();
    for (const n of names) {
      if (set.size >= MAX_NAMES) return;
      set.add(n);
    }
    if (this.m.size >= MAX_DIRS) this.m.delete(this.m.keys().next().value!);
    this.m.set(dirKey, { names: set, stamp: stampOf(dirAttr), at });
  }

  /** ms left of the budget if a fresh listing says `name` is not in the directory; undefined if we must ask. */
  absent(dirKey: string, name: string): number | undefined {
    const l = this.m.get(dirKey);
    if (!l) return undefined;
    const left = this.budgetMs - (performance.now() - l.at);
    if (left <= 0) {
      this.m.delete(dirKey);
      return undefined;
    }
    return l.names.has(name) ? undefined : left;
  }

  /** Our change to the directory, sent at `at`: applied if the directory was as the listing knew it, else the listing goes. */
  changed(dirKey: string, wcc: WccData | undefined, at: number, add?: string, remove?: string): void {
    const l = this.m.get(dirKey);
    if (!l) return;
    if (!wcc?.before || !wcc.after || stampOf(wcc.before) !== l.stamp || performance.now() - l.at >= this.budgetMs) {
      this.m.delete(dirKey);
      return;
    }
    if (remove !== undefined) l.names.delete(remove);
    if (add !== undefined) l.names.add(add);
    l.stamp = stampOf(wcc.after);
    l.at = at;
  }

  drop(dirKey: string): void {
    this.m.delete(dirKey);
  }

  clear(): void {
    this.m.clear();
  }
}
