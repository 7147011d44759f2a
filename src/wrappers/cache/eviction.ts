/**
 * Which cached blocks to drop when the cache is over its capacity.
 *
 * Segmented LRU ('slru', the default): a block enters the *probation*
 * segment; it moves to the *protected* segment only when it is referenced
 * again — the caller decides what counts as "again" (the cache counts a
 * read that starts at or before bytes of the block already read, so the
 * several client READs a sequential scan makes inside one block are one
 * reference). Victims come from the probation segment first; the protected
 * segment is capped at `protectedShare` of the limit, its overflow demoted to
 * the head of probation. A sequential scan of an image larger than the cache
 * only ever churns probation, so the hot set survives it.
 *
 * 'lru' (one segment, every hit moves to the head) exists so tests and
 * benchmarks can show the difference.
 *
 * Pure bookkeeping: keys and sizes, no I/O. Map insertion order is the LRU
 * order (oldest first), so every operation is O(1) amortized.
 */
export type EvictionPolicyName = 'slru' | 'lru';

export class SegmentedLru {
  private readonly probation = new Map<string, number>();
  private readonly prot = new Map<string, number>();
  private probationBytes = 0;
  private protectedBytes = 0;
  private limit = Infinity;

  constructor(
    readonly policy: EvictionPolicyName = 'slru',
    private readonly protectedShare = 0.75,
  ) {}

  get used(): number {
    return this.probationBytes + this.protectedBytes;
  }
  get count(): number {
    return this.probation.size + this.prot.size;
  }
  get protectedUsed(): number {
    return this.protectedBytes;
  }

  has(key: string): boolean {
    return this.probation.has(key) || this.prot.has(key);
  }

  isProtected(key: string): boolean {
    return this.prot.has(key);
  }

  /** A block now in the cache (fetched, read ahead, or found on disk). `hot`: straight into protected (restored hot set, or re-referenced before it landed). */
  insert(key: string, size: number, hot = false): void {
    this.remove(key);
    if (hot && this.policy === 'slru') {
      this.prot.set(key, size);
      this.protectedBytes += size;
      this.balance();
    } else {
      this.probation.set(key, size);
      this.probationBytes += size;
    }
  }

  /** A hit. `reref`: a genuine re-reference, which promotes a probation block. */
  touch(key: string, reref: boolean): void {
    const p = this.prot.get(key);
    if (p !== undefined) {
      this.prot.delete(key);
      this.prot.set(key, p);
      return;
    }
    const s = this.probation.get(key);
    if (s === undefined) return;
    this.probation.delete(key);
    if (this.policy === 'lru' || !reref) {
      this.probation.set(key, s);
      return;
    }
    this.probationBytes -= s;
    this.prot.set(key, s);
    this.protectedBytes += s;
    this.balance();
  }

  remove(key: string): boolean {
    let s = this.probation.get(key);
    if (s !== undefined) {
      this.probation.delete(key);
      this.probationBytes -= s;
      return true;
    }
    s = this.prot.get(key);
    if (s !== undefined) {
      this.prot.delete(key);
      this.protectedBytes -= s;
      return true;
    }
    return false;
  }

  /** Victims (removed from the policy), oldest probation first, until used <= limit. */
  evict(limit: number): string[] {
    this.limit = limit;
    this.balance();
    const out: string[] = [];
    while (this.used > limit) {
      const seg = this.probation.size ? this.probation : this.prot;
      const first = seg.keys().next();
      if (first.done) break;
      out.push(first.value);
      this.remove(first.value);
    }
    return out;
  }

  /** Keys of the protected segment, coldest first (persisted across restarts). */
  protectedKeys(): string[] {
    return [...this.prot.keys()];
  }

  /** Keep protected within its share: demote its coldest blocks to the head of probation. */
  private balance(): void {
    const cap = this.limit === Infinity ? Infinity : this.limit * this.protectedShare;
    while (this.protectedBytes > cap && this.prot.size) {
      const [k, s] = this.prot.entries().next().value as [string, number];
      this.prot.delete(k);
      this.protectedBytes -= s;
      this.probation.set(k, s);
      this.probationBytes += s;
    }
  }
}
