/**
 * ONC RPC record marking over a byte stream (RFC 5531 §11).
 *
 * A record is one or more fragments; each fragment starts with a 4-byte
 * big-endian header: the top bit marks the last fragment, the low 31 bits
 * give the fragment length. The decoder is socket-free: feed it chunks, it
 * calls back with complete records. It never allocates more than `maxRecord`
 * bytes for one record, and it checks the announced length before buffering.
 */
export class RecordTooLargeError extends Error {
  override name = 'RecordTooLargeError';
  constructor(readonly size: number, readonly max: number) {
    super(`RPC record of at least ${size} bytes exceeds the limit of ${max}`);
  }
}

export const LAST_FRAGMENT = 0x8000_0000;

export class RecordDecoder {
  private frags: Buffer[] = [];
  private recordBytes = 0;
  /** bytes of the current fragment still expected (0 = expecting a header) */
  private fragLeft = 0;
  private lastFrag = false;
  private header = Buffer.alloc(4);
  private headerHave = 0;

  constructor(
    private readonly onRecord: (record: Buffer) => void,
    readonly maxRecord: number,
  ) {}

  /** True while part of a record has arrived but not all of it. */
  get partial(): boolean {
    return this.headerHave > 0 || this.inBody || this.started;
  }

  /** A fragment of the current record has been seen (even an empty one). */
  private started = false;

  /** Bytes held for the record in progress. */
  get buffered(): number {
    return this.recordBytes;
  }

  /** Feed bytes; throws RecordTooLargeError (the caller should close the stream). */
  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.fragLeft === 0 && !this.inBody) {
        const take = Math.min(4 - this.headerHave, chunk.length - off);
        chunk.copy(this.header, this.headerHave, off, off + take);
        this.headerHave += take;
        off += take;
        if (this.headerHave < 4) return;
        this.headerHave = 0;
        const h = this.header.readUInt32BE(0);
        this.lastFrag = (h & LAST_FRAGMENT) !== 0;
        const len = h & 0x7fff_ffff;
        if (this.recordBytes + len > this.maxRecord) throw new RecordTooLargeError(this.recordBytes + len, this.maxRecord);
        this.fragLeft = len;
        this.inBody = true;
        this.started = true;
        if (len === 0) this.endFragment();
        continue;
      }
      const take = Math.min(this.fragLeft, chunk.length - off);
      // Keep views of the socket's chunks (no copy); a single-fragment
      // record that arrived in one chunk is a view of that chunk.
      this.frags.push(chunk.subarray(off, off + take));
      this.recordBytes += take;
      this.fragLeft -= take;
      off += take;
      if (this.fragLeft === 0) this.endFragment();
    }
  }

  private inBody = false;

  private endFragment(): void {
    this.inBody = false;
    if (!this.lastFrag) return;
    const rec = this.frags.length === 1 ? this.frags[0] : Buffer.concat(this.frags, this.recordBytes);
    this.frags = [];
    this.recordBytes = 0;
    this.started = false;
    this.onRecord(rec);
  }
}

/** Frame a message (as chunks) into one last-fragment record; returns chunks to write. */
export function frameRecord(chunks: Buffer[]): Buffer[] {
  let len = 0;
  for (const c of chunks) len += c.length;
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE((LAST_FRAGMENT | len) >>> 0, 0);
  return [h, ...chunks];
}
