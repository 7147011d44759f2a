import { pad } from './reader.js';

const ZEROS = Buffer.alloc(4);

/**
 * Opaques at least this long are kept as their own chunk (the socket
 * writes them with writev) instead of being copied into the scratch buffer:
 * a 4 KiB READ reply then costs no copy and no scratch growth. The caller
 * must not change such a buffer until the message has been written (READ
 * data and WRITE payloads are not reused).
 */
export const ZERO_COPY_BYTES = 1024;

/**
 * XDR encoder (RFC 4506). Small values go into a growing scratch buffer;
 * large opaque payloads (READ data) are kept as separate chunks so they are
 * never copied: `chunks()` hands the list to a socket writer.
 */
export class XdrWriter {
  private buf: Buffer;
  private pos = 0;
  private done: Buffer[] = [];
  private doneBytes = 0;

  constructor(initial = 512) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  /** Total bytes written so far. */
  get length(): number {
    return this.doneBytes + this.pos;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u32(v: number): this {
    this.room(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  i32(v: number): this {
    this.room(4);
    this.buf.writeInt32BE(v | 0, this.pos);
    this.pos += 4;
    return this;
  }

  bool(v: boolean): this {
    return this.u32(v ? 1 : 0);
  }

  u64(v: number): this {
    if (!(v >= 0) || !Number.isFinite(v)) v = 0;
    const hi = Math.floor(v / 0x1_0000_0000);
    this.u32(hi);
    return this.u32(v - hi * 0x1_0000_0000);
  }

  u64big(v: bigint): this {
    this.room(8);
    this.buf.writeBigUInt64BE(BigInt.asUintN(64, v), this.pos);
    this.pos += 8;
    return this;
  }

  fixedOpaque(b: Uint8Array): this {
    const p = pad(b.length);
    if (b.length >= ZERO_COPY_BYTES) {
      // Large payload: flush scratch and keep the payload as its own chunk (zero copy).
      this.flushScratch();
      this.done.push(Buffer.from(b.buffer, b.byteOffset, b.length));
      this.doneBytes += b.length;
      if (p) this.fixedRaw(ZEROS.subarray(0, p));
      return this;
    }
    this.room(b.length + p);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    for (let i = 0; i < p; i++) this.buf[this.pos++] = 0;
    return this;
  }

  private fixedRaw(b: Buffer): void {
    this.room(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }

  opaque(b: Uint8Array): this {
    this.u32(b.length);
    return this.fixedOpaque(b);
  }

  string(s: string): this {
    return this.opaque(Buffer.from(s, 'utf8'));
  }

  optional<T>(v: T | undefined | null, item: (w: XdrWriter, v: T) => void): this {
    if (v === undefined || v === null) return this.bool(false);
    this.bool(true);
    item(this, v);
    return this;
  }

  array<T>(items: readonly T[], item: (w: XdrWriter, v: T) => void): this {
    this.u32(items.length);
    for (const v of items) item(this, v);
    return this;
  }

  list<T>(items: readonly T[], item: (w: XdrWriter, v: T) => void): this {
    for (const v of items) {
      this.bool(true);
      item(this, v);
    }
    return this.bool(false);
  }

  private flushScratch(): void {
    if (this.pos === 0) return;
    this.done.push(this.buf.subarray(0, this.pos));
    this.doneBytes += this.pos;
    this.buf = Buffer.allocUnsafe(Math.max(256, this.buf.length - this.pos));
    this.pos = 0;
  }

  /** The encoded bytes as a list of chunks, in order (no copy of large payloads). */
  chunks(): Buffer[] {
    this.flushScratch();
    return this.done;
  }

  /** The encoded bytes as one buffer (copies; for tests and small messages). */
  toBuffer(): Buffer {
    const c = this.chunks();
    return c.length === 1 ? c[0] : Buffer.concat(c, this.doneBytes);
  }
}
