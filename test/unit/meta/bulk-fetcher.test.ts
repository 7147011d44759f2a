import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ExtLink } from '../../../src/ext/meta-client.js';
import { bulkReadArgs, bulkReadRes, MAX_BULK, MAX_RANGES, MetaProc, MetaStatus, type BulkRange, type BulkReadArgs, type BulkReadRes, type ByteRange } from '../../../src/ext/meta-codec.js';
import { Codec, pack } from '../../../src/meta/compress.js';
import { blockHash, HASH_LEN, sameVersion, type FileMeta, type MetaVersion } from '../../../src/meta/format.js';
import type { Credentials } from '../../../src/rpc/types.js';
import { setLogLevel } from '../../../src/util/log.js';
import { BulkFetcher, MetaUnusable, type FetcherCounters, type FetcherOptions } from '../../../src/wrappers/metadata/bulk-fetcher.js';
import { XdrReader, XdrWriter } from '../../../src/xdr/index.js';

/**
 * BulkFetcher against a fake extension link: a "server" holding the file's
 * true bytes that decodes each BULK_READ call's arguments from the bytes the
 * fetcher encodes, answers them (optionally tampering, or holding calls until
 * released), and hands the reply back through the reply codec.
 */

setLogLevel('silent'); // the fetcher logs every corruption it sees; these tests cause many on purpose

const CRED: Credentials = { flavor: 1, uid: 1, gid: 1, gids: [] };
const FH = Buffer.from('the-file-handle');
const VERSION: MetaVersion = { fileid: 77n, size: 0, mtime: { sec: 10, nsec: 1 }, ctime: { sec: 20, nsec: 2 } };

/** Build a file from a block layout: null = an all-zero block, a number = a block filled from that seed. */
function fileOf(bs: number, layout: Array<number | null>, tail = 0): Buffer {
  const parts = layout.map((s) => {
    const b = Buffer.alloc(bs);
    if (s !== null) for (let i = 0; i < bs; i += 64) b.writeUInt32BE(((s + 1) * 2654435761 + i) >>> 0, i);
    return b;
  });
  if (tail) parts.push(Buffer.alloc(tail, 0x33));
  return Buffer.concat(parts);
}

/** Meta-data of `data`, computed here (zero map + hashes of each block). */
function metaOf(data: Buffer, bs: number): FileMeta {
  const n = Math.ceil(data.length / bs);
  const zeroMap = Buffer.alloc(Math.ceil(n / 8));
  const hashes = Buffer.alloc(n * HASH_LEN);
  for (let i = 0; i < n; i++) {
    const b = data.subarray(i * bs, Math.min(data.length, (i + 1) * bs));
    if (b.every((x) => x === 0)) zeroMap[i >> 3] |= 1 << (i & 7);
    else blockHash(b).copy(hashes, i * HASH_LEN);
  }
  return { ...VERSION, size: data.length, blockSize: bs, hint: 'whole', zeroMap, hashes, order: [], created: 0, source: 'f' };
}

type Tamper = (call: number, honest: BulkRange) => BulkRange | null;

class FakeServer implements ExtLink {
  calls: BulkReadArgs[] = [];
  active = 0;
  maxActive = 0;
  status = MetaStatus.OK;
  tamper?: Tamper;
  /** Hold each call until release() is called. */
  gated = false;
  private held: Array<() => void> = [];

  constructor(
    private readonly data: Buffer,
    private readonly version: MetaVersion = { ...VERSION, size: data.length },
  ) {}

  async ext<R>(proc: number, enc: (w: XdrWriter) => void, dec: (r: XdrReader) => R, cred: Credentials): Promise<R> {
    assert.equal(proc, MetaProc.BULK_READ);
    assert.equal(cred, CRED);
    const w = new XdrWriter();
    enc(w);
    const r = new XdrReader(w.toBuffer());
    const a = bulkReadArgs.dec(r);
    r.end();
    const call = this.calls.push(a) - 1;
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      if (this.gated) await new Promise<void>((res) => this.held.push(res));
      else await new Promise<void>((res) => setImmediate(res));
    } finally {
      this.active--;
    }
    assert.ok(a.fh.equals(FH));
    let res: BulkReadRes;
    if (this.status !== MetaStatus.OK) res = { status: this.status, nfsstat: this.status === MetaStatus.NFSERR ? 13 : 0, ranges: [] };
    else if (!sameVersion(a.version, this.version)) res = { status: MetaStatus.STALE, nfsstat: 0, ranges: [] };
    else {
      const ranges: BulkRange[] = [];
      for (const x of a.ranges) {
        const raw = Buffer.from(this.data.subarray(x.offset, x.offset + x.len));
        const p = pack(raw, a.codec);
        const honest: BulkRange = { offset: x.offset, rawLen: raw.length, codec: p.codec, data: p.data };
        const sent = this.tamper ? this.tamper(call, honest) : honest;
        if (sent) ranges.push(sent);
      }
      res = { status: MetaStatus.OK, nfsstat: 0, ranges };
    }
    const out = new XdrWriter();
    bulkReadRes.enc(out, res);
    return dec(new XdrReader(out.toBuffer()));
  }

  get waiting(): number {
    return this.held.length;
  }

  release(n = 1): void {
    for (const r of this.held.splice(0, n)) r();
  }

  /** Chunks a call asked for (by its ranges). */
  chunksOf(call: number, chunkSize: number): number[] {
    return [...new Set(this.calls[call].ranges.map((r) => Math.floor(r.offset / chunkSize)))];
  }

  allRanges(): ByteRange[] {
    return this.calls.flatMap((c) => c.ranges);
  }
}

function counters(): FetcherCounters & { bulkRawBytes: number; bulkWireBytes: number } {
  return { bulkCalls: 0, bulkRawBytes: 0, bulkWireBytes: 0, demandChunks: 0, backgroundChunks: 0, hashMismatches: 0, refetches: 0 };
}

interface Rig {
  f: BulkFetcher;
  srv: FakeServer;
  c: ReturnType<typeof counters>;
  delivered: Array<[number, Buffer]>;
}

function rig(data: Buffer, meta: FileMeta, o: Partial<FetcherOptions> = {}, srv = new FakeServer(data)): Rig {
  const c = counters();
  const delivered: Array<[number, Buffer]> = [];
  const f = new BulkFetcher({
    link: srv,
    cred: CRED,
    fh: FH,
    meta,
    chunkSize: 4 * meta.blockSize,
    window: 2,
    codec: Codec.NONE,
    counters: c,
    bytes: c,
    deliver: async (off, d) => void delivered.push([off, Buffer.from(d)]),
    ...o,
  });
  return { f, srv, c, delivered };
}

/** Let every pending promise and immediate run (no timers: the fake server's work is all immediates). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function chunkOf(data: Buffer, c: number, cs: number): Buffer {
  return data.subarray(c * cs, Math.min(data.length, (c + 1) * cs));
}

function flipOneByte(r: BulkRange): BulkRange {
  const d = Buffer.from(r.data);
  d[d.length >> 1] ^= 0x01;
  return { ...r, data: d };
}

// Small file: 4 KiB blocks, 16 KiB chunks. Chunk 0: D Z D D; chunk 1: Z Z Z Z (all zero); chunk 2: D D D D;
// chunk 3: Z D Z D; chunk 4: D and a 1000-byte tail (short last chunk).
const BS = 4096;
const CS = 4 * BS;
const LAYOUT = [1, null, 2, 3, null, null, null, null, 4, 5, 6, 7, null, 8, null, 9, 10];
const DATA = fileOf(BS, LAYOUT, 1000);
const META = metaOf(DATA, BS);

test('demand: a chunk arrives verified, zero blocks are not asked for, runs of data blocks are one range', { timeout: 60_000 }, async () => {
  for (const codec of [Codec.NONE, Codec.ZSTD]) {
    const { f, srv, c, delivered } = rig(DATA, META, { codec });
    assert.equal(f.nChunks, 5);
    const got = await f.demand(0);
    assert.deepEqual(got, chunkOf(DATA, 0, CS));
    assert.equal(srv.calls.length, 1);
    const a = srv.calls[0];
    assert.equal(a.codec, codec);
    assert.ok(sameVersion(a.version, META), 'the call names the meta-data\'s version');
    assert.deepEqual(a.ranges, [
      { offset: 0, len: BS },
      { offset: 2 * BS, len: 2 * BS },
    ]);
    assert.deepEqual(delivered, [[0, chunkOf(DATA, 0, CS)]]);
    assert.equal(c.bulkCalls, 1);
    assert.equal(c.demandChunks, 1);
    assert.equal(c.bulkRawBytes, 3 * BS);
    if (codec === Codec.ZSTD) assert.ok(c.bulkWireBytes < c.bulkRawBytes, 'compressed on the wire');
    else assert.equal(c.bulkWireBytes, 3 * BS);
    assert.equal(c.hashMismatches, 0);
  }
});

test('demand: zero blocks inside a chunk come back as zeros; the short last chunk is its real length', { timeout: 60_000 }, async () => {
  const { f, srv } = rig(DATA, META);
  const c3 = await f.demand(3);
  assert.deepEqual(c3, chunkOf(DATA, 3, CS));
  assert.deepEqual(srv.calls[0].ranges, [
    { offset: 3 * CS + BS, len: BS },
    { offset: 3 * CS + 3 * BS, len: BS },
  ]);
  const c4 = await f.demand(4);
  assert.equal(c4.length, BS + 1000);
  assert.deepEqual(c4, chunkOf(DATA, 4, CS));
  assert.deepEqual(srv.calls[1].ranges, [{ offset: 4 * CS, len: BS + 1000 }]);
});

test('demand of a chunk that arrived recently makes no call', { timeout: 60_000 }, async () => {
  const { f, srv, c } = rig(DATA, META);
  const first = await f.demand(2);
  assert.deepEqual(f.recentChunk(2), first);
  const again = await f.demand(2);
  assert.deepEqual(again, first);
  assert.equal(srv.calls.length, 1);
  assert.equal(c.demandChunks, 1);
});

test('background transfer: every data chunk delivered once, exactly; zero blocks and the all-zero chunk never requested', { timeout: 60_000 }, async () => {
  for (const codec of [Codec.NONE, Codec.ZSTD]) {
    const { f, srv, c, delivered } = rig(DATA, META, { codec });
    f.start(range(f.nChunks));
    await f.done;
    assert.equal(f.pending, 0);
    delivered.sort((x, y) => x[0] - y[0]);
    assert.deepEqual(
      delivered.map(([off]) => off / CS),
      [0, 2, 3, 4],
    );
    for (const [off, d] of delivered) assert.deepEqual(d, chunkOf(DATA, off / CS, CS), `chunk ${off / CS}`);
    // The requested bytes are exactly the non-zero blocks, each once.
    const asked = new Set<number>();
    for (const r of srv.allRanges()) {
      for (let o = r.offset; o < r.offset + r.len; o += BS) {
        assert.ok(!asked.has(o / BS), `block ${o / BS} asked twice`);
        asked.add(o / BS);
      }
    }
    const dataBlocks = range(LAYOUT.length + 1).filter((i) => LAYOUT[i] !== null);
    assert.deepEqual([...asked].sort((x, y) => x - y), dataBlocks);
    assert.equal(c.backgroundChunks, 4);
    assert.equal(c.bulkRawBytes, DATA.length - LAYOUT.filter((x) => x === null).length * BS);
  }
});

test('a corrupted range is fetched again once, alone, and only good data is delivered', { timeout: 60_000 }, async () => {
  const { f, srv, c, delivered } = rig(DATA, META);
  srv.tamper = (call, r) => (call === 0 && r.offset === 2 * CS ? flipOneByte(r) : r);
  f.start(range(f.nChunks));
  await f.done;
  // The first call carried every chunk; the refetch only chunk 2.
  assert.deepEqual(srv.chunksOf(0, CS), [0, 2, 3, 4]);
  assert.equal(srv.calls.length, 2);
  assert.deepEqual(srv.chunksOf(1, CS), [2]);
  assert.deepEqual(srv.calls[1].ranges, [{ offset: 2 * CS, len: CS }]);
  assert.equal(c.hashMismatches, 1);
  assert.equal(c.refetches, 1);
  delivered.sort((x, y) => x[0] - y[0]);
  assert.deepEqual(
    delivered.map(([off]) => off / CS),
    [0, 2, 3, 4],
  );
  for (const [off, d] of delivered) assert.deepEqual(d, chunkOf(DATA, off / CS, CS));
});

test('every kind of bad range is refetched: wrong bytes, missing, wrong length, undecodable zstd', { timeout: 60_000 }, async () => {
  const kinds: Array<[string, (r: BulkRange) => BulkRange | null]> = [
    ['wrong bytes', flipOneByte],
    ['missing', () => null],
    ['wrong raw length', (r) => ({ ...r, rawLen: r.rawLen - 1, data: r.data.subarray(0, r.data.length - 1) })],
    ['undecodable zstd', (r) => ({ ...r, codec: Codec.ZSTD, data: Buffer.from('definitely not a zstd frame') })],
    ['wrong offset', (r) => ({ ...r, offset: r.offset + BS })],
  ];
  for (const [kind, bad] of kinds) {
    const { f, srv, c, delivered } = rig(DATA, META);
    srv.tamper = (call, r) => (call === 0 ? bad(r) : r);
    assert.deepEqual(await f.demand(2), chunkOf(DATA, 2, CS), kind);
    assert.equal(srv.calls.length, 2, kind);
    assert.equal(c.refetches, 1, kind);
    assert.deepEqual(delivered, [[2 * CS, chunkOf(DATA, 2, CS)]], kind);
  }
});

test('a chunk corrupted twice rejects with MetaUnusable and is never delivered', { timeout: 60_000 }, async () => {
  const { f, srv, c, delivered } = rig(DATA, META);
  srv.tamper = (_call, r) => (r.offset === 0 ? flipOneByte(r) : r);
  await assert.rejects(f.demand(0), (e: unknown) => {
    assert.ok(e instanceof MetaUnusable, String(e));
    assert.equal(e.name, 'MetaUnusable');
    return true;
  });
  assert.equal(srv.calls.length, 2, 'fetched once more, not again and again');
  assert.equal(c.hashMismatches, 2);
  assert.equal(c.refetches, 1);
  assert.deepEqual(delivered, []);
  assert.equal(f.recentChunk(0), undefined, 'nothing bad is kept for readers either');
});

test('a block with one wrong byte anywhere in a long range is caught', { timeout: 60_000 }, async () => {
  // One range of four blocks (chunk 2); the wrong byte is in its third block.
  const { f, srv, delivered } = rig(DATA, META);
  srv.tamper = (_call, r) => {
    const d = Buffer.from(r.data);
    d[2 * BS + 17] ^= 0x80;
    return { ...r, data: d };
  };
  await assert.rejects(f.demand(2), MetaUnusable);
  assert.equal(srv.calls.length, 2);
  assert.deepEqual(delivered, []);
});

test('STALE (or NONE) from the server means the meta-data is unusable', { timeout: 60_000 }, async () => {
  // The file on the server is another version than the meta-data names.
  const stale = new FakeServer(DATA, { ...VERSION, size: DATA.length, ctime: { sec: 21, nsec: 0 } });
  const a = rig(DATA, META, {}, stale);
  await assert.rejects(a.f.demand(0), MetaUnusable);
  assert.equal(stale.calls.length, 1, 'no retry of a stale file');
  assert.deepEqual(a.delivered, []);

  for (const status of [MetaStatus.STALE, MetaStatus.NONE]) {
    const b = rig(DATA, META);
    b.srv.status = status;
    await assert.rejects(b.f.demand(3), MetaUnusable, String(status));
  }
  // Other failures are errors, but not a verdict on the meta-data.
  const c = rig(DATA, META);
  c.srv.status = MetaStatus.NFSERR;
  await assert.rejects(c.f.demand(3), (e: unknown) => {
    assert.ok(e instanceof Error && !(e instanceof MetaUnusable));
    assert.match(e.message, /status 3, NFS status 13/);
    return true;
  });
});

test('a background transfer that hits STALE settles done and delivers nothing', { timeout: 60_000 }, async () => {
  const { f, srv, delivered } = rig(DATA, META, { chunkSize: BS, window: 2 });
  srv.status = MetaStatus.STALE;
  f.start(range(f.nChunks));
  await f.done;
  assert.deepEqual(delivered, []);
  assert.equal(f.pending, 0);
});

test('demand of a chunk already on the wire shares that call', { timeout: 60_000 }, async () => {
  const { f, srv, c, delivered } = rig(DATA, META, { window: 1 });
  srv.gated = true;
  f.start(range(f.nChunks));
  await settle();
  assert.equal(srv.calls.length, 1, 'one background call holds every chunk');
  const p2 = f.demand(2);
  const p2b = f.demand(2);
  const p4 = f.demand(4);
  await settle();
  assert.equal(srv.calls.length, 1, 'no new call for chunks in flight');
  assert.equal(c.demandChunks, 0);
  srv.release();
  assert.deepEqual(await p2, chunkOf(DATA, 2, CS));
  assert.deepEqual(await p2b, chunkOf(DATA, 2, CS));
  assert.deepEqual(await p4, chunkOf(DATA, 4, CS));
  await f.done;
  assert.equal(srv.calls.length, 1);
  assert.equal(delivered.length, 4);
});

// Bigger chunks for the window: 64 KiB blocks, 1 MiB chunks, so each BULK_READ holds one chunk (MAX_BULK).
const BIG_BS = 64 << 10;
const BIG_CS = 1 << 20;
const BIG_LAYOUT = range(16 * 8).map((i) => (i % 16 === 5 ? null : i));
const BIG = fileOf(BIG_BS, BIG_LAYOUT, 4096); // 8 MiB and a bit: 9 chunks
const BIG_META = metaOf(BIG, BIG_BS);

test('demand of a chunk still queued goes out at once, and the background transfer does not ask for it again', { timeout: 60_000 }, async () => {
  // One chunk per call, window 1: chunk 7 is at the back of the queue.
  const r = rig(BIG, BIG_META, { chunkSize: BIG_CS, window: 1 });
  r.srv.gated = true;
  r.f.start(range(9));
  await settle();
  assert.equal(r.srv.calls.length, 1);
  assert.deepEqual(r.srv.chunksOf(0, BIG_CS), [0]);
  const p = r.f.demand(7);
  await settle();
  assert.equal(r.srv.calls.length, 2, 'sent ahead of the queue, beside the window');
  assert.deepEqual(r.srv.chunksOf(1, BIG_CS), [7]);
  assert.equal(r.c.demandChunks, 1);
  r.srv.release(2);
  assert.deepEqual(await p, chunkOf(BIG, 7, BIG_CS));
  for (let guard = 0; guard < 100 && (r.srv.waiting || r.f.pending); guard++) {
    r.srv.release();
    await settle();
  }
  await r.f.done;
  const asked = r.srv.calls.map((_, i) => r.srv.chunksOf(i, BIG_CS)).flat();
  assert.deepEqual(asked, [0, 7, 1, 2, 3, 4, 5, 6, 8], 'chunk 7 asked for once, the rest in order');
  assert.equal(r.c.backgroundChunks, 8);
  assert.equal(r.delivered.length, 9);
});

/** Run a gated background transfer to the end, releasing one call (or all held calls) at a time; returns the chunk order of the calls. */
async function drive(r: Rig, window: number, releaseAll = false): Promise<number[]> {
  for (let guard = 0; guard < 1000; guard++) {
    await settle();
    assert.ok(r.srv.waiting <= window, `${r.srv.waiting} calls on the wire, window ${window}`);
    if (!r.srv.waiting) break;
    r.srv.release(releaseAll ? r.srv.waiting : 1);
  }
  await r.f.done;
  assert.equal(r.srv.maxActive, Math.min(window, r.f.nChunks), 'the window is used');
  return r.srv.calls.map((_, i) => r.srv.chunksOf(i, BIG_CS)).flat();
}

test('background transfer follows the given chunk order and keeps `window` calls on the wire', { timeout: 60_000 }, async () => {
  const order = [3, 0, 8, 5, 1, 7, 2, 6, 4];
  for (const [window, releaseAll] of [[1, false], [2, false], [3, false], [2, true], [4, true]] as const) {
    const r = rig(BIG, BIG_META, { chunkSize: BIG_CS, window });
    r.srv.gated = true;
    r.f.start(order);
    const calls = await drive(r, window, releaseAll);
    assert.deepEqual(calls, order, `window ${window}`);
    for (const a of r.srv.calls) {
      assert.ok(a.ranges.reduce((s, x) => s + x.len, 0) <= MAX_BULK);
    }
    assert.equal(r.delivered.length, 9);
    for (const [off, d] of r.delivered) assert.deepEqual(d, chunkOf(BIG, off / BIG_CS, BIG_CS));
  }
});

test('the window holds when the disk cache is asked about each chunk (pumps racing over that await)', { timeout: 60_000 }, async () => {
  const order = [3, 0, 8, 5, 1, 7, 2, 6, 4];
  for (const window of [2, 3, 4]) {
    const r = rig(BIG, BIG_META, { chunkSize: BIG_CS, window, cached: async () => false });
    r.srv.gated = true;
    r.f.start(order);
    assert.deepEqual(await drive(r, window, true), order, `window ${window}`);
  }
});

test('background transfer: duplicates and chunks past the end in the order are ignored; start twice is a no-op', { timeout: 60_000 }, async () => {
  const r = rig(BIG, BIG_META, { chunkSize: BIG_CS, window: 2 });
  r.srv.gated = true;
  r.f.start([2, 2, 40, 0, 2, 9, 0]);
  r.f.start([5, 6]);
  assert.equal(r.f.pending, 2);
  const calls = await drive(r, 2);
  assert.deepEqual(calls, [2, 0]);
});

test('`cached` chunks are skipped by the background transfer', { timeout: 60_000 }, async () => {
  const asked: Array<[number, number]> = [];
  const r = rig(BIG, BIG_META, {
    chunkSize: BIG_CS,
    window: 1,
    cached: async (off, end) => {
      asked.push([off, end]);
      return off / BIG_CS === 1 || off / BIG_CS === 8;
    },
  });
  r.f.start(range(9));
  await r.f.done;
  const calls = r.srv.calls.map((_, i) => r.srv.chunksOf(i, BIG_CS)).flat();
  assert.deepEqual(calls, [0, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(
    r.delivered.map(([off]) => off / BIG_CS),
    [0, 2, 3, 4, 5, 6, 7],
  );
  // Asked with the chunk's byte range, the last one cut at the file's end.
  assert.deepEqual(asked.find(([off]) => off === 8 * BIG_CS), [8 * BIG_CS, BIG.length]);
  assert.deepEqual(asked.find(([off]) => off === 0), [0, BIG_CS]);
  assert.equal(r.f.pending, 0);
});

test('every chunk cached: no call at all, done settles', { timeout: 60_000 }, async () => {
  const r = rig(DATA, META, { cached: async () => true });
  r.f.start(range(r.f.nChunks));
  await r.f.done;
  assert.equal(r.srv.calls.length, 0);
  assert.deepEqual(r.delivered, []);
});

test('a `cached` check that fails counts as not cached', { timeout: 60_000 }, async () => {
  const r = rig(DATA, META, { cached: async () => Promise.reject(new Error('disk cache gone')) });
  r.f.start(range(r.f.nChunks));
  await r.f.done;
  assert.equal(r.delivered.length, 4);
});

test('calls stay within MAX_RANGES ranges and MAX_BULK bytes', { timeout: 60_000 }, async () => {
  // 600 blocks alternating data and zero: every data block is its own range.
  const bs = 4096;
  const data = fileOf(bs, range(600).map((i) => (i % 2 ? null : i)));
  const meta = metaOf(data, bs);
  const r = rig(data, meta, { chunkSize: 2 * bs, window: 4 });
  r.f.start(range(r.f.nChunks));
  await r.f.done;
  assert.ok(r.srv.calls.length >= 2);
  for (const a of r.srv.calls) {
    assert.ok(a.ranges.length <= MAX_RANGES, `${a.ranges.length} ranges`);
    assert.ok(a.ranges.reduce((s, x) => s + x.len, 0) <= MAX_BULK);
  }
  assert.equal(r.srv.allRanges().length, 300);
  assert.equal(r.delivered.length, 300);
});

test('stop() settles done and sends nothing more', { timeout: 60_000 }, async () => {
  const r = rig(BIG, BIG_META, { chunkSize: BIG_CS, window: 1 });
  r.srv.gated = true;
  r.f.start(range(9));
  await settle();
  assert.equal(r.srv.calls.length, 1);
  r.f.stop();
  await r.f.done;
  r.srv.release();
  await settle();
  assert.equal(r.srv.calls.length, 1);
  assert.equal(r.delivered.length, 1, 'the call on the wire still lands');
});

test('a chunk whose deliver fails is still served', { timeout: 60_000 }, async () => {
  const r = rig(DATA, META, { deliver: async () => Promise.reject(new Error('disk full')) });
  assert.deepEqual(await r.f.demand(2), chunkOf(DATA, 2, CS));
});
