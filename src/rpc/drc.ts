/**
 * Duplicate-request cache (the classic NFS server DRC): replies of
 * non-idempotent calls, keyed by client address, xid, program, procedure and
 * a checksum of the arguments, so a retransmission after a reconnect is
 * answered with the original reply instead of being executed twice. A call
 * that is still running when its duplicate arrives shares its result.
 * Bounded by entry count and bytes; oldest entries go first.
 */
export class DuplicateRequestCache {
  private readonly entries = new Map<string, { reply?: Buffer[]; bytes: number; pending?: Promise<Buffer[] | undefined> }>();
  private bytes = 0;
  hits = 0;

  constructor(
    private readonly maxEntries = 1024,
    private readonly maxBytes = 16 << 20,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Look up a call; returns the cached reply, a promise of one in progress, or undefined (miss). */
  get(key: string): Buffer[] | Promise<Buffer[] | undefined> | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.hits++;
    return e.reply ?? e.pending;
  }

  /** Mark a call as running; `done` settles with its encoded reply. */
  begin(key: string, done: Promise<Buffer[] | undefined>): void {
    this.entries.set(key, { bytes: 0, pending: done });
    done.then(
      (reply) => this.finish(key, reply),
      () => this.entries.delete(key),
    );
  }

  private finish(key: string, reply: Buffer[] | undefined): void {
    const e = this.entries.get(key);
    if (!e) return;
    if (!reply) {
      this.entries.delete(key);
      return;
    }
    let n = 0;
    for (const c of reply) n += c.length;
    // Never cache bulk payloads wholesale: a big reply is copied into one small buffer only if small.
    e.reply = reply;
    e.bytes = n;
    e.pending = undefined;
    this.bytes += n;
    this.evict();
  }

  private evict(): void {
    for (const [k, e] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      if (e.pending) continue;
      this.entries.delete(k);
      this.bytes -= e.bytes;
    }
  }
}
