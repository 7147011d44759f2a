import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { StableHow } from '../../src/nfs3/constants.js';
import { AuthFlavor } from '../../src/rpc/types.js';
import { Journal } from '../../src/wrappers/cache/journal.js';
import { WriteBack, type FlushSink } from '../../src/wrappers/cache/write-back.js';

/**
 * The intermittent failure of test/integration/cache/crash.test.ts (seeds
 * 345045586, 8128): a write whose journal append was still running when a
 * flush round of the same file finished was added to the file's entry after
 * the flush had forgotten it. The write was acknowledged, but never flushed
 * nor read back (reads showed the server's older bytes), and the next round's
 * DONE mark, covering a higher sequence number, dropped it from the journal
 * too: after a restart it was gone for good.
 *
 * Deterministic here: the second write is started while the round's DONE
 * mark is being appended, so its own append completes after the round.
 */
const cred = { flavor: AuthFlavor.AUTH_SYS, uid: 7, gid: 8, gids: [] };
const DONE_MARK_BYTES = 24 + 12;

/** The server: one file's bytes; every WRITE lands at once, the verifier never changes. */
function serverSink(): FlushSink & { data: Buffer } {
  const verf = Buffer.alloc(8, 1);
  const sink = {
    data: Buffer.alloc(0),
    async write(_c: unknown, _fh: Buffer, offset: number, d: Buffer) {
      if (offset + d.length > sink.data.length) sink.data = Buffer.concat([sink.data, Buffer.alloc(offset + d.length - sink.data.length)]);
      d.copy(sink.data, offset);
      return { wcc: {}, count: d.length, committed: StableHow.UNSTABLE, verf };
    },
    async commit() {
      return { verf, wcc: {} };
    },
    async setattr() {},
    writeStart() {},
    writeEnd() {},
    discarded() {},
  };
  return sink;
}

test('write-back: a write journalled while a flush of its file finishes is still flushed, read back and kept across a restart', { timeout: 60_000 }, async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-wb-race-'));
  const fh = Buffer.from('file-handle-1');
  const key = fh.toString('hex');
  const A = Buffer.alloc(4096, 0xaa);
  const B = Buffer.alloc(3000, 0xbb);
  const C = Buffer.alloc(100, 0xcc);
  const sink = serverSink();
  let wb: WriteBack | undefined;
  let late: Promise<void> | undefined;
  let arm = false;
  const { journal } = await Journal.open(dir, {
    failAppend: (bytes) => {
      // The round's DONE mark goes in: the program's next write arrives now.
      if (arm && bytes === DONE_MARK_BYTES) {
        arm = false;
        late = wb!.write(cred, fh, 10_000, B, StableHow.FILE_SYNC, true);
      }
      return undefined;
    },
  });
  const opts = { dirtyLimit: 1 << 30, dirtyMax: 1 << 30, maxAgeMs: 3_600_000, flushWriteBytes: 1 << 20, roundBytes: 64 << 20, admitWaitMs: 10_000, flushParallel: 4 };
  wb = new WriteBack(journal, sink, opts);
  try {
    await wb.write(cred, fh, 0, A, StableHow.UNSTABLE, false);
    arm = true;
    await wb.flushFile(key);
    assert.ok(late, 'the second write was started during the DONE mark');
    await late; // acknowledged: it is in the journal (fdatasync'd)
    assert.ok(wb.dirty(key), 'the acknowledged write is pending for the flush');
    const overlay = await wb.overlay(key, 0, 20_000);
    assert.ok(
      overlay.some((p) => p.start === 10_000 && p.data.equals(B)),
      'a read sees the acknowledged write',
    );
    // A later write of the file, flushed: its DONE mark must not take the earlier one with it.
    await wb.write(cred, fh, 50_000, C, StableHow.UNSTABLE, false);
    const r = await wb.flushAll();
    assert.deepEqual(r.failed, []);
    assert.ok(sink.data.subarray(10_000, 10_000 + B.length).equals(B), 'the acknowledged write reached the server');
    assert.ok(sink.data.subarray(50_000, 50_000 + C.length).equals(C));
    assert.equal(wb.backlogBytes, 0);
  } finally {
    await wb.close();
    await journal.close();
  }
  // Restart: nothing pending, and the server kept everything.
  const again = await Journal.open(dir);
  assert.equal(again.files.length, 0);
  await again.journal.close();
  assert.equal((await Journal.inspect(dir)).bytes, 0);
  await fs.rm(dir, { recursive: true, force: true });
});

test('write-back: a flush requested while another runs delivers the writes made since that one started', { timeout: 60_000 }, async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-wb-flushall-'));
  const fh1 = Buffer.from('file-handle-1');
  const fh2 = Buffer.from('file-handle-2');
  const written: string[] = [];
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const sink = serverSink();
  const slow: FlushSink = {
    ...sink,
    // The first flush is still delivering file 1 when file 2 is written and `gvfs flush` asks.
    write: async (c, fh, off, d) => {
      await gate;
      written.push(`${fh.toString()}@${off}`);
      return sink.write(c, fh, off, d);
    },
  };
  const { journal } = await Journal.open(dir);
  const wb = new WriteBack(journal, slow, { dirtyLimit: 1 << 30, dirtyMax: 1 << 30, maxAgeMs: 3_600_000, flushWriteBytes: 1 << 20, roundBytes: 64 << 20, admitWaitMs: 10_000, flushParallel: 4 });
  try {
    await wb.write(cred, fh1, 0, Buffer.alloc(100, 1), StableHow.UNSTABLE, false);
    const first = wb.flushAll();
    await wb.write(cred, fh2, 0, Buffer.alloc(100, 2), StableHow.UNSTABLE, false);
    const requested = wb.flushAll();
    open();
    const r = await requested;
    assert.deepEqual(r.failed, []);
    assert.deepEqual(written.sort(), [`file-handle-1@0`, `file-handle-2@0`], 'the flush returned with file 2 still undelivered');
    assert.equal(r.flushedBytes, 200, 'the report counts what both runs delivered');
    assert.equal(wb.backlogBytes, 0);
    assert.equal((await first).flushedBytes, 100);
  } finally {
    await wb.close();
    await journal.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
