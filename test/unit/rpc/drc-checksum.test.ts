import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { DRC_CHECKSUM_BYTES, drcChecksum } from '../../../src/rpc/server.js';

/**
 * The duplicate-request cache's checksum covers a record's first
 * DRC_CHECKSUM_BYTES bytes and its length (knfsd's choice), so a 1 MiB
 * WRITE costs no checksum of its payload on every call. What it must still
 * tell apart: any difference in the header, credentials, handle, offset or
 * count (all within the first bytes), and any difference in length.
 */
describe('duplicate-request cache checksum', { timeout: 30_000 }, () => {
  const rec = randomBytes(1 << 20);
  test('the same bytes give the same key; a change anywhere in the first bytes or in the length gives another', () => {
    assert.equal(drcChecksum(Buffer.from(rec)), drcChecksum(rec));
    for (const at of [0, 4, 100, DRC_CHECKSUM_BYTES - 1]) {
      const other = Buffer.from(rec);
      other[at] ^= 1;
      assert.notEqual(drcChecksum(other), drcChecksum(rec), `a change at byte ${at} was not seen`);
    }
    assert.notEqual(drcChecksum(rec.subarray(0, rec.length - 1)), drcChecksum(rec));
    const small = randomBytes(200);
    const small2 = Buffer.from(small);
    small2[199] ^= 0x80;
    assert.notEqual(drcChecksum(small), drcChecksum(small2), 'a short record is checksummed whole');
  });
  test('bytes past the checksummed prefix are not read (the cost is bounded, whatever the record size)', () => {
    const other = Buffer.from(rec);
    other[DRC_CHECKSUM_BYTES] ^= 1;
    other[rec.length - 1] ^= 1;
    assert.equal(drcChecksum(other), drcChecksum(rec));
  });
});
