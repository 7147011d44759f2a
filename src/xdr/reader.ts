import { XdrError } from './errors.js';

/**
 * XDR decoder (RFC 4506) over one Buffer. No I/O. Every length read from the
 * input is checked against what is left (and against a caller's bound) before
 * anything is allocated, so a hostile length can never make us allocate.
 */
export class XdrReader {
  private pos: number;

  constructor(private readonly buf: Buffer, offset = 0) {
    this.pos = offset;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number): void {
    if (n > this.buf.length - this.pos) throw new XdrError(`XDR: need ${n} bytes, ${this.remaining} left`);
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  bool(): boolean {
    const v = this.u32();
    if (v > 1) throw new XdrError(`XDR: bad boolean ${v}`);
    return v === 1;
  }

  /** unsigned hyper as a number; values above 2^53 lose precision (sizes, offsets, byte counts). */
  u64(): number {
    this.need(8);
    const hi = this.buf.readUInt32BE(this.pos);
    const lo = this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    return hi * 0x1_0000_0000 + lo;
  }

  /** unsigned hyper, exact (file ids, cookies). */
  u64big(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** fixed-length opaque: returns a view (no copy) into the record. */
  fixedOpaque(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n + pad(n);
    if (this.pos > this.buf.length) throw new XdrError('XDR: opaque padding missing');
    return v;
  }

  /** variable-length opaque with an upper bound: returns a view (no copy). */
  opaque(max: number): Buffer {
    const n = this.u32();
    if (n > max) throw new XdrError(`XDR: opaque length ${n} exceeds ${max}`);
    return this.fixedOpaque(n);
  }

  string(max: number): string {
    return this.opaque(max).toString('utf8');
  }

  /** Counted array; the count is bounded by `max` and by what could possibly fit in the input. */
  array<T>(max: number, item: (r: XdrReader) => T, minItemBytes = 4): T[] {
    const n = this.u32();
    if (n > max) throw new XdrError(`XDR: array length ${n} exceeds ${max}`);
    if (n * minItemBytes > this.remaining) throw new XdrError(`XDR: array length ${n} exceeds input`);
    const out: T[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = item(this);
    return out;
  }

  /** Optional data (`*T` in XDR). */
  optional<T>(item: (r: XdrReader) => T): T | undefined {
    return this.bool() ? item(this) : undefined;
  }

  /** Linked list encoded as repeated optional entries (READDIR, MOUNT DUMP/EXPORT). */
  list<T>(max: number, item: (r: XdrReader) => T): T[] {
    const out: T[] = [];
    while (this.bool()) {
      if (out.length >= max) throw new XdrError(`XDR: list longer than ${max}`);
      out.push(item(this));
    }
    return out;
  }

  /** Everything that is left, as a view. */
  rest(): Buffer {
    const v = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return v;
  }

  /** Asserts the whole input was consumed (trailing garbage is a decode error). */
  end(): void {
    if (this.pos !== this.buf.length) throw new XdrError(`XDR: ${this.remaining} trailing bytes`);
  }
}

export function pad(n: number): number {
  return (4 - (n & 3)) & 3;
}
