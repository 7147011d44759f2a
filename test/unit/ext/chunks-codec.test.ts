import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { XdrReader, XdrWriter } from '../../../src/xdr/index.js';
import { ChunkStatus, getChunkArgs, getChunkRes, MAX_CHUNK_REPLY, MAX_MANIFEST_PAGE, storeFileArgs, storeFileRes } from '../../../src/ext/chunks-codec.js';

const roundTrip = <T>(c: { enc: (w: XdrWriter, v: T) => void; dec: (r: XdrReader) => T }, v: T): T => {
  const w = new XdrWriter();
  c.enc(w, v);
  return c.dec(new XdrReader(w.toBuffer()));
};

describe('chunk procedures codec (ext/chunks-codec.ts)', { timeout: 30_000 }, () => {
  test('every type round-trips', () => {
    const fh = Buffer.alloc(19, 3);
    assert.deepEqual(roundTrip(storeFileArgs, { fh, offset: 7, count: 100 }), { fh, offset: 7, count: 100 });
    const sf = { status: ChunkStatus.OK, nfsstat: 0, image: 'guest', path: 'dir/disk.img', digest: Buffer.alloc(32, 9), total: 12345, data: Buffer.from('{"format"') };
    assert.deepEqual(roundTrip(storeFileRes, sf), sf);
    const ga = { fh, hash: Buffer.alloc(32, 0xab), len: 65536 };
    assert.deepEqual(roundTrip(getChunkArgs, ga), ga);
    const gr = { status: ChunkStatus.DENIED, nfsstat: 0, data: Buffer.alloc(0) };
    assert.deepEqual(roundTrip(getChunkRes, gr), gr);
  });

  test('the wire layout of GET_CHUNK args is fixed: opaque fh, 32 hash bytes without a length, u32 len', () => {
    const w = new XdrWriter();
    getChunkArgs.enc(w, { fh: Buffer.from([1, 2]), hash: Buffer.alloc(32, 0xee), len: 5 });
    const b = w.toBuffer();
    assert.equal(b.length, 4 + 4 + 32 + 4);
    assert.equal(b.readUInt32BE(0), 2);
    assert.equal(b.readUInt32BE(40), 5);
  });

  test('oversized pages and chunks are refused before allocation', () => {
    const big = (n: number) => {
      const w = new XdrWriter();
      w.u32(0).u32(0).u32(n);
      return new XdrReader(w.toBuffer());
    };
    assert.throws(() => getChunkRes.dec(big(MAX_CHUNK_REPLY + 1)), /exceeds/);
    const w = new XdrWriter();
    w.u32(0).u32(0).string('i').string('p').opaque(Buffer.alloc(32)).u32(1).u32(MAX_MANIFEST_PAGE + 1);
    assert.throws(() => storeFileRes.dec(new XdrReader(w.toBuffer())), /exceeds/);
    // A hash of another length cannot be sent: the field has no length of its own.
    const short = new XdrWriter();
    short.opaque(Buffer.alloc(4)).fixedOpaque(Buffer.alloc(16));
    assert.throws(() => getChunkArgs.dec(new XdrReader(short.toBuffer())));
  });
});
