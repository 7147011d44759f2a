import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChangesStatus, changesArgs, changesRes, MAX_CHANGES } from '../../../src/ext/changes-codec.js';
import { XdrReader, XdrWriter } from '../../../src/xdr/index.js';
import { ChangeLog } from '../../../src/wrappers/change-log/change-log.js';

const h = (n: number) => Buffer.from([n]);
const names = (r: { handles: Buffer[] } | undefined) => r?.handles.map((b) => b[0]).sort((x, y) => x - y);

describe('ChangeLog (poll consistency: bounded per-export log)', { timeout: 30_000 }, () => {
  it('lists each file changed after `since` once, and the number to ask from next', () => {
    const l = new ChangeLog(10);
    assert.deepEqual(l.since(0n, 100), { seq: 0n, handles: [] });
    l.record(h(1));
    l.record(h(2));
    l.record(h(1)); // again: listed once, at its newest number
    assert.equal(l.seq, 3n);
    assert.deepEqual(names(l.since(0n, 100)), [1, 2]);
    assert.deepEqual(names(l.since(2n, 100)), [1]);
    assert.deepEqual(names(l.since(3n, 100)), []);
  });

  it('cannot answer exactly: since older than the log keeps, newer than given out, or more than the limit', () => {
    const l = new ChangeLog(3);
    for (let i = 1; i <= 5; i++) l.record(h(i));
    // Files 1 and 2 fell out: a client that last asked before them may have missed them.
    assert.equal(l.since(0n, 100), undefined);
    assert.equal(l.since(1n, 100), undefined);
    assert.deepEqual(names(l.since(2n, 100)), [3, 4, 5]);
    assert.equal(l.since(6n, 100), undefined, 'a number this log never gave out (another incarnation)');
    assert.equal(l.since(2n, 2), undefined, 'more changes than one reply lists');
    assert.deepEqual(names(l.since(3n, 2)), [4, 5]);
  });

  it('lost(): every client asking from before it is told to drop everything; from after it, answered exactly', () => {
    const l = new ChangeLog(100);
    l.record(h(1));
    const before = l.seq;
    l.lost();
    assert.equal(l.since(before, 100), undefined, 'a client up to date before the loss was answered');
    assert.equal(l.since(0n, 100), undefined);
    const after = l.seq;
    assert.ok(after > before);
    assert.deepEqual(l.since(after, 100), { seq: after, handles: [] });
    l.record(h(2));
    assert.deepEqual(names(l.since(after, 100)), [2]);
    assert.equal(l.losses, 1);
  });

  it('stays exact across compaction of many repeated changes', () => {
    const l = new ChangeLog(4);
    for (let i = 0; i < 10_000; i++) l.record(h(i % 3));
    assert.deepEqual(names(l.since(l.seq - 3n, 100)), [0, 1, 2]);
    assert.deepEqual(names(l.since(l.seq - 1n, 100)), [(10_000 - 1) % 3]);
  });

  it('CHANGES_SINCE args and reply round-trip; a reply listing too many handles is refused', () => {
    const w = new XdrWriter();
    changesArgs.enc(w, { fh: Buffer.alloc(20, 7), boot: Buffer.alloc(8, 1), since: 2n ** 40n + 5n });
    assert.deepEqual(changesArgs.dec(new XdrReader(Buffer.concat(w.chunks()))), { fh: Buffer.alloc(20, 7), boot: Buffer.alloc(8, 1), since: 2n ** 40n + 5n });
    const res = { status: ChangesStatus.OK, nfsstat: 0, boot: Buffer.alloc(8, 2), seq: 99n, handles: [h(1), Buffer.alloc(64, 3)] };
    const w2 = new XdrWriter();
    changesRes.enc(w2, res);
    assert.deepEqual(changesRes.dec(new XdrReader(Buffer.concat(w2.chunks()))), res);
    const w3 = new XdrWriter();
    w3.u32(0).u32(0).opaque(Buffer.alloc(8)).u64big(1n).u32(MAX_CHANGES + 1);
    assert.throws(() => changesRes.dec(new XdrReader(Buffer.concat(w3.chunks()))), RangeError);
  });
});
