import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { StableHow } from '../../../../src/nfs3/constants.js';
import { AuthFlavor } from '../../../../src/rpc/types.js';
import { Journal, type JournalSattr } from '../../../../src/wrappers/cache/journal.js';
import { JournalRefused, WriteBack, type FlushSink } from '../../../../src/wrappers/cache/write-back.js';

/**
 * SETATTRs journalled behind a file's unflushed WRITEs (tar: write, chown,
 * chmod, utimes): delivered after the WRITEs before them and before any
 * WRITE after them, merged per round, kept across a restart, presented
 * meanwhile (`dirty().attrs`).
 */
const cred = { flavor: AuthFlavor.AUTH_SYS, uid: 7, gid: 8, gids: [] };
const opts = { dirtyLimit: 1 << 30, dirtyMax: 1 << 30, maxAgeMs: 3600_000, flushWriteBytes: 1 << 20, roundBytes: 64 << 20, admitWaitMs: 1000, flushParallel: 1 };

/** The server as a list of what reached it, in order. */
function recordingSink(): FlushSink & { ops: string[] } {
  const verf = Buffer.alloc(8, 1);
  const sink = {
    ops: [] as string[],
    async write(_c: unknown, _fh: Buffer, offset: number, d: Buffer) {
      sink.ops.push(`WRITE ${offset}+${d.length}`);
      return { wcc: {}, count: d.length, committed: StableHow.UNSTABLE, verf };
    },
    async commit() {
      sink.ops.push('COMMIT');
      return { verf, wcc: {} };
    },
    async setattr(_c: unknown, _fh: Buffer, a: JournalSattr) {
      sink.ops.push(`SETATTR ${JSON.stringify(a)}`);
    },
    writeStart() {},
    writeEnd() {},
    discarded() {},
  };
  return sink;
}

const t1 = { sec: 1, nsec: 5 };
const t2 = { sec: 2_000_000_000, nsec: 999_999_999 };

test('write-back: SETATTRs go after the WRITEs before them, merged, and before the WRITEs after them; presented until then', { timeout: 60_000 }, async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-wb-sattr-'));
  const fh = Buffer.from('file-handle-1');
  const key = fh.toString('hex');
  const sink = recordingSink();
  const { journal } = await Journal.open(dir);
  const wb = new WriteBack(journal, sink, opts);
  try {
    await assert.rejects(wb.setattr(cred, fh, { mode: 0o600 }), JournalRefused, 'nothing unflushed: sent by the caller');
    await wb.write(cred, fh, 0, Buffer.alloc(100, 1), StableHow.UNSTABLE, false);
    await wb.setattr(cred, fh, { uid: 7, gid: 8 });
    await wb.setattr(cred, fh, { mode: 0o640 });
    await wb.setattr(cred, fh, { atime: t1, mtime: t2 });
    let d = wb.dirty(key)!;
    assert.deepEqual(d.attrs, { uid: 7, gid: 8, mode: 0o640, atime: t1, mtime: t2 });
    assert.equal(d.mtimeSet, true, 'the last change of mtime is the SETATTR');
    await wb.write(cred, fh, 100, Buffer.alloc(10, 2), StableHow.UNSTABLE, false);
    d = wb.dirty(key)!;
    assert.equal(d.mtimeSet, false, 'a later WRITE sets mtime again');
    assert.equal(d.maxEnd, 110);
    await wb.setattr(cred, fh, { mode: 0o600 });
    await wb.flushFile(key);
    assert.deepEqual(sink.ops, [
      'WRITE 0+100',
      `SETATTR ${JSON.stringify({ uid: 7, gid: 8, mode: 0o640, atime: t1, mtime: t2 })}`,
      'COMMIT',
      'WRITE 100+10',
      `SETATTR ${JSON.stringify({ mode: 0o600 })}`,
      'COMMIT',
    ]);
    assert.equal(wb.dirty(key), undefined, 'all delivered');
    assert.equal((await Journal.inspect(dir)).records, 0);
  } finally {
    await wb.close();
    await journal.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('write-back: journalled SETATTRs survive a restart and are delivered in order after it', { timeout: 60_000 }, async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-wb-sattr-'));
  const fh = Buffer.from('file-handle-2');
  const key = fh.toString('hex');
  {
    const { journal } = await Journal.open(dir);
    const wb = new WriteBack(journal, recordingSink(), opts);
    await wb.write(cred, fh, 0, Buffer.alloc(50, 1), StableHow.UNSTABLE, false);
    await wb.setattr(cred, fh, { mode: 0o604, mtime: t1 });
    await wb.write(cred, fh, 50, Buffer.alloc(5, 1), StableHow.UNSTABLE, false);
    await wb.setattr(cred, fh, { atime: t2 });
    // The process dies: no close, no flush (the SETATTRs were fsync'd as they were taken).
    assert.equal((await Journal.inspect(dir)).records, 4);
  }
  const { journal, files } = await Journal.open(dir);
  assert.equal(files.length, 1);
  assert.deepEqual(
    files[0].writes.map((w) => w.sattr ?? w.length),
    [50, { mode: 0o604, mtime: t1 }, 5, { atime: t2 }],
  );
  const sink = recordingSink();
  const wb = new WriteBack(journal, sink, opts, files);
  try {
    assert.deepEqual(wb.dirty(key)!.attrs, { mode: 0o604, mtime: t1, atime: t2 });
    assert.equal(wb.dirty(key)!.mtimeSet, false);
    await wb.flushFile(key);
    assert.deepEqual(sink.ops, ['WRITE 0+50', `SETATTR ${JSON.stringify({ mode: 0o604, mtime: t1 })}`, 'COMMIT', 'WRITE 50+5', `SETATTR ${JSON.stringify({ atime: t2 })}`, 'COMMIT']);
  } finally {
    await wb.close();
    await journal.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('write-back: a SETATTR the server refuses keeps its round in the journal, reported like a failed WRITE', { timeout: 60_000 }, async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-wb-sattr-'));
  const fh = Buffer.from('file-handle-3');
  const key = fh.toString('hex');
  const sink = recordingSink();
  let refuse = true;
  const setattr = sink.setattr;
  sink.setattr = async (c, f, a) => {
    if (refuse) throw Object.assign(new Error('not the owner'), { code: 'PERM', name: 'FsError' });
    return setattr(c, f, a);
  };
  const { journal } = await Journal.open(dir);
  const wb = new WriteBack(journal, sink, opts);
  try {
    await wb.write(cred, fh, 0, Buffer.alloc(10, 1), StableHow.UNSTABLE, false);
    await wb.setattr(cred, fh, { mode: 0o644 });
    await assert.rejects(wb.flushFile(key));
    assert.ok(wb.dirty(key), 'still owed');
    assert.equal(wb.errors.length, 1);
    refuse = false;
    await wb.flushFile(key);
    assert.equal(wb.dirty(key), undefined);
    assert.deepEqual(sink.ops.filter((o) => o.startsWith('SETATTR')), [`SETATTR ${JSON.stringify({ mode: 0o644 })}`]);
  } finally {
    await wb.close();
    await journal.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
