/**
 * Large buffers used again instead of allocated again. A fresh 1 MiB
 * buffer is fresh memory from the allocator, and the kernel faults its 256
 * pages in one by one as the data is copied in: on this project's virtual
 * machines that cost a 1 MiB READ more time than the copy itself (16 218
 * page faults for 64 MiB read, 250 MiB/s). A buffer taken from here has
 * been written before, so its pages are already there.
 *
 * Ownership is explicit: `take` hands a buffer out, `give` returns it once
 * nothing refers to its bytes any more (a READ reply's bytes are on the
 * socket). A buffer never given back is simply collected: the pool only
 * keeps what it is given, up to `maxBytes`. A buffer given twice, or one
 * the pool never handed out, is ignored, so no two holders can ever share
 * one buffer.
 */
export class BufferPool {
  /** Free buffers by size class (the rounded size, `sizeClass`). */
  private readonly free = new Map<number, ArrayBuffer[]>();
  private freeBytes = 0;
  /** Buffers handed out and not yet given back. */
  private readonly out = new WeakSet<ArrayBuffer>();
  /** Buffers handed out that were taken from the free lists (tests, metrics). */
  reused = 0;

  constructor(
    /** Requests below this size are not pooled (take returns undefined): small buffers are cheap. */
    readonly minBytes: number,
    /** The largest buffer handed out. */
    readonly maxSize: number,
    /** Free bytes kept at most; more are left to the garbage collector. */
    readonly maxBytes: number,
  ) {}

  /** A buffer of exactly `n` bytes (contents undefined), or undefined when `n` is not a pooled size. */
  take(n: number): Buffer | undefined {
    if (n < this.minBytes || n > this.maxSize) return undefined;
    const cls = sizeClass(n);
    const list = this.free.get(cls);
    let ab = list?.pop();
    if (ab) {
      this.freeBytes -= ab.byteLength;
      this.reused++;
    } else {
      // Its own ArrayBuffer (not a slice of Node's shared pool), so giving it back gives back all of it.
      ab = Buffer.allocUnsafeSlow(cls).buffer as ArrayBuffer;
    }
    this.out.add(ab);
    return Buffer.from(ab, 0, n);
  }

  /** `b` (from take) is no longer referred to by anyone. */
  give(b: Buffer): void {
    const ab = b.buffer as ArrayBuffer;
    if (!this.out.delete(ab)) return;
    if (this.freeBytes + ab.byteLength > this.maxBytes) return;
    const cls = ab.byteLength;
    let list = this.free.get(cls);
    if (!list) this.free.set(cls, (list = []));
    list.push(ab);
    this.freeBytes += ab.byteLength;
  }

  /** Free bytes held now. */
  get held(): number {
    return this.freeBytes;
  }
}

/**
 * The size a request of `n` bytes is rounded up to: a multiple of an eighth
 * of its power of two (at least 4 KiB). A record is its payload plus a
 * header — a 1 MiB READ's reply is 1 MiB and ~120 bytes — and powers of two
 * would hand it 2 MiB; an eighth wastes at most 12.5%, and records of one
 * payload size still share a class.
 */
export function sizeClass(n: number): number {
  const step = 2 ** Math.max(12, Math.floor(Math.log2(n)) - 3);
  return Math.ceil(n / step) * step;
}
