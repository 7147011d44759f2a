import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { XdrReader, XdrWriter } from '../../../src/xdr/index.js';
import { DelegateStatus, delegateRes, renewRes, type DelegateRes } from '../../../src/ext/callback-codec.js';
import { FType } from '../../../src/nfs3/constants.js';
import type { Fattr3 } from '../../../src/nfs3/types.js';

const bytes = <T>(c: { enc: (w: XdrWriter, v: T) => void }, v: T): Buffer => {
  const w = new XdrWriter();
  c.enc(w, v);
  return w.toBuffer();
};

const attr: Fattr3 = {
  type: FType.REG, mode: 0o644, nlink: 1, uid: 1000, gid: 1000, size: 12345, used: 16384, rdev: { major: 0, minor: 0 }, fsid: 3n, fileid: 99n,
  atime: { sec: 1, nsec: 2 }, mtime: { sec: 3, nsec: 4 }, ctime: { sec: 5, nsec: 6 },
};

describe('callback procedures codec (ext/callback-codec.ts)', { timeout: 30_000 }, () => {
  test('a DELEGATE reply carries the attributes of a grant, and none when there are none; RENEW has no attribute field', () => {
    const base = { status: DelegateStatus.OK, nfsstat: 0, leaseMs: 30_000, instance: Buffer.alloc(8, 7) };
    const withAttr: DelegateRes = { ...base, attr };
    const r = new XdrReader(bytes(delegateRes, withAttr));
    assert.deepEqual(delegateRes.dec(r), withAttr);
    const plain = bytes(delegateRes, base);
    // status, nfsstat, leaseMs, 8 instance bytes, post_op_attr FALSE.
    assert.equal(plain.length, 4 * 3 + 8 + 4);
    assert.deepEqual(delegateRes.dec(new XdrReader(plain)), base);
    const renew = { ...base, grace: true };
    const rb = bytes(renewRes, renew);
    assert.equal(rb.length, 4 * 3 + 8 + 4);
    assert.deepEqual(renewRes.dec(new XdrReader(rb)), renew);
  });
});
