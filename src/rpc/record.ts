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

/**
 * Pieces of one record kept as views of the socket's chunks; beyond this
 * they are copied into one buffer. A 1 MiB record read in 16 KiB (TLS) or
 * 64 KiB chunks stays under it, so ordinary records are never copied twice.
 */
export const MAX_FRAGMENT_VIEWS = 128;

/**
 * With direct reads (`directReads`), a fragment at least this long that
 * has not fully arrived gets a buffer of its own, and the socket reads the
 * rest of it straight there (see `directTarget`): a 1 MiB READ reply is
 * then neither gathered from 64 KiB chunks nor copied again.
 */
export const DIRECT_FRAGMENT_BYTES = 64 * 1024;

export class RecordDecoder {
  private frags: Buffer[] = [];
  /** The large fragment being read straight into its own buffer (direct reads only). */
  private direct?: { buf: Buffer; fill: number };
  /**
   * Allocate a large fragment's buffer when its header arrives, so reads can
   * land in it. It allocates what the header announces (at most maxRecord)
   * before the bytes arrive: for a peer we chose to call (an RPC client's
   * upstream), or, on a server, within a budget `directAlloc` keeps.
   */
  directReads = false;
  /**
   * Where a direct fragment's buffer comes from (a pool the consumer gives it
   * back to), given its length and its first bytes in hand (the XID, when at
   * least 4 arrived with the header); undefined: a fresh buffer; null: not
   * now (this fragment is read the ordinary way, as its bytes arrive).
   */
  directAlloc?: (len: number, head: Buffer) => Buffer | undefined | null;
  /** A direct fragment is complete or abandoned (`len`: its length): what `directAlloc` counted may be given back. */
  directEnded?: (len: number) => void;
  /** Bytes that were read straight into a fragment's own buffer (`directFilled`), for tests and benchmarks. */
  directBytes = 0;
  /** Once a record has more than MAX_FRAGMENT_VIEWS pieces: its bytes so far, in a buffer grown by doubling (never past maxRecord). */
  private acc?: Buffer;
  private recordBytes = 0;
  /** bytes of the current fragment still expected (0 = expecting a header) */
  private fragLeft = 0;
  private lastFrag = false;
  private header = Buffer.alloc(4);
  private headerHave = 0;
  /** The unread rest of a chunk, kept while the consumer is full (see `onRecord`). */
  private held?: Buffer;

  /**
   * `onRecord` returns false (exactly) when it cannot take another record now: the
   * decoder then stops after that record and holds the rest of the chunk as
   * raw bytes until `resume()`. So the bytes behind the last record taken
   * cost one chunk, however many records they hold.
   */
  constructor(
    private readonly onRecord: (record: Buffer) => unknown,
    readonly maxRecord: number,
    /**
     * Where a record gathered from several pieces is copied to (a pool's
     * buffer of exactly that length), or undefined for a fresh one.
     */
    private readonly alloc?: (n: number) => Buffer | undefined,
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

  /** Bytes received but not yet decoded because the consumer was full. */
  get holding(): number {
    return this.held?.length ?? 0;
  }

  /** Feed bytes; throws RecordTooLargeError (the caller should close the stream). Not while holding. */
  push(chunk: Buffer): void {
    if (this.held) throw new Error('RecordDecoder.push while holding bytes: resume() first (pause the stream while holding)');
    this.decode(chunk);
  }

  /** Continue with the held bytes (the consumer can take records again); may stop and hold again. */
  resume(): void {
    const h = this.held;
    if (!h) return;
    this.held = undefined;
    this.decode(h);
  }

  private decode(chunk: Buffer): void {
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
        if (this.directReads && len >= DIRECT_FRAGMENT_BYTES && chunk.length - off < len) {
          const buf = this.directAlloc?.(len, chunk.subarray(off, off + 4));
          if (buf !== null) this.direct = { buf: buf?.length === len ? buf : Buffer.allocUnsafe(len), fill: 0 };
        }
        if (len === 0 && !this.endFragment()) return this.hold(chunk, off);
        continue;
      }
      const take = Math.min(this.fragLeft, chunk.length - off);
      const d = this.direct;
      if (d) {
        chunk.copy(d.buf, d.fill, off, off + take);
        d.fill += take;
      } else {
        // Keep views of the socket's chunks (no copy); a single-fragment
        // record that arrived in one chunk is a view of that chunk.
        this.append(chunk.subarray(off, off + take));
      }
      this.fragLeft -= take;
      off += take;
      if (this.fragLeft === 0) {
        this.endDirect();
        if (!this.endFragment()) return this.hold(chunk, off);
      }
    }
  }

  /**
   * Where the next read from the socket may land: the unfilled rest of the
   * large fragment in progress (report it with `directFilled`), or
   * undefined (read a fresh chunk and `push` it).
   */
  directTarget(): Buffer | undefined {
    const d = this.direct;
    if (!d || this.held) return undefined;
    return d.buf.subarray(d.fill, d.fill + this.fragLeft);
  }

  /** `n` bytes were read into the buffer `directTarget()` returned. */
  directFilled(n: number): void {
    const d = this.direct;
    if (!d || n > this.fragLeft) throw new Error('RecordDecoder.directFilled without a matching directTarget()');
    d.fill += n;
    this.fragLeft -= n;
    this.directBytes += n;
    if (this.fragLeft === 0) {
      this.endDirect();
      this.endFragment(); // nothing follows in this read: whether the consumer is full does not matter here
    }
  }

  /** The direct fragment (if any) is complete: it becomes one piece of the record. */
  private endDirect(): void {
    const d = this.direct;
    if (d) {
      this.direct = undefined;
      this.directEnded?.(d.buf.length);
      this.append(d.buf);
    }
  }

  /**
   * No more direct reads on this stream (it is closing, or closed): a
   * direct fragment in progress is dropped, so reads are no longer held to
   * what is left of it. Nothing is decoded after this.
   */
  stopDirect(): void {
    this.directReads = false;
    const d = this.direct;
    if (!d) return;
    this.direct = undefined;
    this.directEnded?.(d.buf.length);
  }

  private hold(chunk: Buffer, off: number): void {
    if (off < chunk.length) this.held = chunk.subarray(off);
  }

  /**
   * A record in many small pieces (a hostile 1-byte-fragment stream) must
   * not cost a Buffer object per piece: past MAX_FRAGMENT_VIEWS the pieces
   * are copied into one buffer, whose size is bounded by maxRecord.
   */
  private append(piece: Buffer): void {
    const need = this.recordBytes + piece.length;
    if (!this.acc && this.frags.length < MAX_FRAGMENT_VIEWS) {
      this.frags.push(piece);
    } else {
      if (!this.acc || this.acc.length < need) {
        const grown = Buffer.allocUnsafe(Math.min(this.maxRecord, Math.max(need, 2 * (this.acc?.length ?? 0), 4096)));
        if (this.acc) this.acc.copy(grown, 0, 0, this.recordBytes);
        else Buffer.concat(this.frags, this.recordBytes).copy(grown);
        this.acc = grown;
        this.frags = [];
      }
      piece.copy(this.acc, this.recordBytes);
    }
    this.recordBytes = need;
  }

  private inBody = false;

  private gather(pieces: Buffer[], n: number): Buffer {
    const out = this.alloc?.(n);
    if (!out) return Buffer.concat(pieces, n);
    let at = 0;
    for (const p of pieces) at += p.copy(out, at);
    return out;
  }

  /**
   * The last record ended was large (at least DIRECT_FRAGMENT_BYTES): the
   * next is likely large too (a stream of READ replies), and a socket read
   * that is not aimed yet is best kept to the next record's first bytes
   * (see the RPC client's direct reads).
   */
  lastLarge = false;

  /** Returns false when the consumer wants no more records for now. */
  private endFragment(): boolean {
    this.inBody = false;
    if (!this.lastFrag) return true;
    this.lastLarge = this.recordBytes >= DIRECT_FRAGMENT_BYTES;
    let rec: Buffer;
    if (this.acc) rec = this.acc.subarray(0, this.recordBytes);
    else rec = this.frags.length === 1 ? this.frags[0] : this.gather(this.frags, this.recordBytes);
    this.frags = [];
    this.acc = undefined;
    this.recordBytes = 0;
    this.started = false;
    return this.onRecord(rec) !== false;
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
