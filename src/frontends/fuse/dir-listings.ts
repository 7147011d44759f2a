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
 * failed change, it is dropped. A listing past its budget is kept (not
 * used): the directory's attributes in a later reply (a LOOKUP's, found or
 * not) renew it if they show the directory as the listing knew it, so a
 * loop that creates and removes names in one directory asks once per
 * budget, not once per name.
 */
export class DirListings {
  private readonly m = new Map<string, { names: Set<string>; stamp: string; at: number }>();

  /** `budgetMs`: the name budget as it is now (it may change while the mount runs). */
  constructor(private readonly budgetMs: () => number) {}

  /** The directory holds exactly `names` (MKDIR: none), as of attributes `dirAttr` from a call sent at `at` (performance.now()). */
  set(dirKey: string, names: Iterable<string>, dirAttr: Fattr3 | undefined, at: number): void {
    this.m.delete(dirKey);
    if (this.budgetMs() <= 0 || !dirAttr) return;
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
    const left = this.budgetMs() - (performance.now() - l.at);
    return left <= 0 || l.names.has(name) ? undefined : left;
  }

  /** The directory's attributes from a reply to a call sent at `at`: a listing they show unchanged holds from then. */
  renew(dirKey: string, dirAttr: Fattr3 | undefined, at: number): void {
    const l = this.m.get(dirKey);
    if (!l || !dirAttr) return;
    if (stampOf(dirAttr) !== l.stamp) this.m.delete(dirKey);
    else if (at > l.at) l.at = at;
  }

  /** Our change to the directory, sent at `at`: applied if the directory was as the listing knew it, else the listing goes. */
  changed(dirKey: string, wcc: WccData | undefined, at: number, add?: string, remove?: string): void {
    const l = this.m.get(dirKey);
    if (!l) return;
    if (!wcc?.before || !wcc.after || stampOf(wcc.before) !== l.stamp) {
      this.m.delete(dirKey);
      return;
    }
    if (remove !== undefined) l.names.delete(remove);
    if (add !== undefined) l.names.add(add);
    l.stamp = stampOf(wcc.after);
    l.at = Math.max(l.at, at);
  }

  drop(dirKey: string): void {
    this.m.delete(dirKey);
  }

  clear(): void {
    this.m.clear();
  }
}
