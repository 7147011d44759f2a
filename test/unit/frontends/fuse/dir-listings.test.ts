import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FType } from '../../../../src/nfs3/constants.js';
import type { Fattr3, WccData } from '../../../../src/nfs3/types.js';
import { DirListings } from '../../../../src/frontends/fuse/dir-listings.js';

const dir = (t: number): Fattr3 => ({
  type: FType.DIR, mode: 0o755, nlink: 2, uid: 0, gid: 0, size: 4096, used: 4096, rdev: { major: 0, minor: 0 }, fsid: 1n, fileid: 5n,
  atime: { sec: 1, nsec: 0 }, mtime: { sec: t, nsec: 7 }, ctime: { sec: t, nsec: 7 },
});
const wcc = (from: number, to: number): WccData => ({ before: { size: 4096, mtime: dir(from).mtime, ctime: dir(from).ctime }, after: dir(to) });

describe('complete directory listings (fuse/dir-listings.ts)', { timeout: 30_000 }, () => {
  test('absent names are known while the budget lasts; names present are asked', () => {
    const l = new DirListings(() => 60_000);
    l.set('d', ['a', 'b'], dir(10), performance.now());
    assert.ok((l.absent('d', 'c') ?? 0) > 59_000);
    assert.equal(l.absent('d', 'a'), undefined);
    assert.equal(l.absent('other', 'c'), undefined);
    const old = new DirListings(() => 1000);
    old.set('d', [], dir(10), performance.now() - 2000);
    assert.equal(old.absent('d', 'c'), undefined, 'a listing older than the budget says nothing');
  });

  test('our changes keep the listing only when the directory was as it knew it', () => {
    const l = new DirListings(() => 60_000);
    l.set('d', ['a'], dir(10), performance.now());
    l.changed('d', wcc(10, 11), performance.now(), 'b');
    assert.equal(l.absent('d', 'b'), undefined, 'the name we made is there');
    assert.ok(l.absent('d', 'c') !== undefined);
    l.changed('d', wcc(11, 12), performance.now(), undefined, 'a');
    assert.ok(l.absent('d', 'a') !== undefined, 'the name we removed is gone');
    // Someone else changed it in between (our change's before is not the listing's): dropped.
    l.changed('d', wcc(20, 21), performance.now(), 'x');
    assert.equal(l.absent('d', 'c'), undefined);
    // No pre-operation attributes: nothing proves it, dropped.
    l.set('e', [], dir(30), performance.now());
    l.changed('e', { after: dir(31) }, performance.now(), 'x');
    assert.equal(l.absent('e', 'c'), undefined);
  });

  test('a listing past its budget is renewed by attributes that show the directory unchanged, and dropped by others', () => {
    const l = new DirListings(() => 1000);
    const now = performance.now();
    l.set('d', ['a'], dir(10), now - 5000);
    assert.equal(l.absent('d', 'c'), undefined, 'past its budget: not used');
    l.renew('d', dir(10), now);
    assert.ok((l.absent('d', 'c') ?? 0) > 900, 'a LOOKUP reply sent now shows it unchanged: good for a budget from now');
    assert.equal(l.absent('d', 'a'), undefined);
    l.renew('d', dir(10), now - 3000);
    assert.ok(l.absent('d', 'c') !== undefined, 'an older reply never shortens it');
    // Past its budget, then our own change whose pre-operation attributes are the listing's: applied and renewed.
    const m = new DirListings(() => 1000);
    m.set('d', [], dir(10), now - 5000);
    m.changed('d', wcc(10, 11), now, 'b');
    assert.equal(m.absent('d', 'b'), undefined);
    assert.ok(m.absent('d', 'c') !== undefined);
    // Someone else changed it: the reply's attributes differ and the listing goes for good.
    l.renew('d', dir(12), now);
    assert.equal(l.absent('d', 'c'), undefined);
    l.renew('d', dir(10), now);
    assert.equal(l.absent('d', 'c'), undefined, 'gone, not revived by the old attributes');
  });
});
