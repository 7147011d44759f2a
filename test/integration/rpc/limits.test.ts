import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NFS_PROGRAM, Proc, StableHow } from '../../../src/nfs3/constants.js';
import { RawRpc } from '../../helpers/raw-rpc.js';
import { ROOT, startLocalServer, type LocalServer } from '../../helpers/local-server.js';

/**
 * The server limits the README promises (connections, per peer address, idle
 * time, READ/WRITE of at most 1 MiB), each set low here so a test reaches it.
 * Calls in flight and queued replies are covered in test/security/.
 */
const nullCall = (xid: number) => RawRpc.call(xid, NFS_PROGRAM, 3, 0);

/** The server closed this connection without answering (refused), or answered. */
async function answered(c: RawRpc, xid: number): Promise<boolean> {
  c.sendRecord(nullCall(xid));
  return Promise.race([c.reply(xid).then(() => true), c.closed.then(() => false)]);
}

describe('server limits', { timeout: 180_000 }, () => {
  let s: LocalServer;
  let base = 0;
  /** The server sees closes asynchronously: wait until only the helper's own client connections are left. */
  const quiet = async () => {
    for (const end = Date.now() + 30_000; s.server.connectionCount > base; await new Promise((r) => setTimeout(r, 20))) assert.ok(Date.now() < end, 'closed connections still counted');
  };
  before(async () => {
    // The helper's NFS client holds a connection of its own (from 127.0.0.1).
    s = await startLocalServer({ limits: { maxConnections: 4, maxConnectionsPerPeer: 3, idleTimeoutMs: 1500 } });
    base = s.server.connectionCount;
  });
  after(() => s.stop());

  test('connections per peer address: one over the limit is closed unanswered; another address still gets in', async () => {
    await quiet();
    const peer = '127.0.0.1';
    const mine: RawRpc[] = [];
    try {
      while (s.server.connectionCount < 3) {
        const c = await RawRpc.connect(s.port, peer);
        assert.ok(await answered(c, 100 + mine.length), 'a connection within the limit is served');
        mine.push(c);
      }
      const refused0 = s.server.stats.refused;
      const over = await RawRpc.connect(s.port, peer);
      mine.push(over);
      assert.equal(await answered(over, 200), false, 'the fourth connection from 127.0.0.1 was closed');
      assert.equal(s.server.stats.refused, refused0 + 1);
      const other = await RawRpc.connect(s.port, '127.0.0.2');
      assert.ok(await answered(other, 201), 'another peer address is not held to 127.0.0.1\'s count');
      mine.push(other);
    } finally {
      for (const c of mine) c.close();
    }
  });

  test('connections in all: one over the limit is closed unanswered; a freed slot is usable again', async () => {
    await quiet();
    const mine: RawRpc[] = [];
    try {
      let a = 2;
      while (s.server.connectionCount < 4) {
        const c = await RawRpc.connect(s.port, `127.0.0.${a++}`);
        assert.ok(await answered(c, 300 + a), 'within the limit');
        mine.push(c);
      }
      const refused0 = s.server.stats.refused;
      const over = await RawRpc.connect(s.port, `127.0.0.${a++}`);
      mine.unshift(over);
      assert.equal(await answered(over, 400), false, 'the fifth connection was closed');
      assert.equal(s.server.stats.refused, refused0 + 1);
      const freed = mine.pop()!;
      freed.close();
      await freed.closed;
      // The server sees the close asynchronously: wait for its count to drop, then a new connection is served.
      for (const end = Date.now() + 30_000; s.server.connectionCount >= 4; await new Promise((r) => setTimeout(r, 20))) assert.ok(Date.now() < end);
      const again = await RawRpc.connect(s.port, `127.0.0.${a++}`);
      assert.ok(await answered(again, 401), 'served once a slot is free');
      mine.push(again);
    } finally {
      for (const c of mine) c.close();
    }
  });

  test('an idle connection is closed after the idle timeout; one that keeps calling is not', async () => {
    await quiet();
    const idle = await RawRpc.connect(s.port, '127.0.0.20');
    const busy = await RawRpc.connect(s.port, '127.0.0.21');
    const t0 = Date.now();
    assert.ok(await answered(idle, 500));
    let xid = 600;
    let closedBusy = false;
    void busy.closed.then(() => (closedBusy = true));
    // Busy: a call every 300 ms (well inside 1.5 s) until the idle one is closed.
    let idleClosed = false;
    void idle.closed.then(() => (idleClosed = true));
    while (!idleClosed) {
      assert.ok(Date.now() - t0 < 60_000, 'the idle connection was never closed');
      assert.ok(await answered(busy, xid++), 'the busy connection is still served');
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.ok(Date.now() - t0 >= 1500, `closed after the timeout, not before (${Date.now() - t0} ms)`);
    assert.equal(closedBusy, false);
    busy.close();
    idle.close();
  });
});

describe('READ and WRITE carry at most 1 MiB', { timeout: 120_000 }, () => {
  let s: LocalServer;
  before(async () => {
    s = await startLocalServer();
  });
  after(() => s.stop());

  test('a READ asking for 2 MiB gets at most 1 MiB, the right bytes, and the rest on the next READ', async () => {
    const data = randomBytes(3 << 20);
    await fs.writeFile(path.join(s.exportDir, 'big.bin'), data);
    const fh = (await s.client.lookup(ROOT, s.root, 'big.bin')).fh;
    const r = await s.client.read(ROOT, fh, 0, 2 << 20);
    assert.ok(r.count > 0 && r.count <= 1 << 20, `count ${r.count}`);
    assert.equal(r.eof, false);
    assert.ok(r.data.equals(data.subarray(0, r.count)));
    const r2 = await s.client.read(ROOT, fh, r.count, 1 << 20);
    assert.ok(r2.data.equals(data.subarray(r.count, r.count + r2.count)));
  });

  test('a WRITE carrying 1 MiB + 1 byte is refused (GARBAGE_ARGS) and writes nothing; 1 MiB exactly is written', async () => {
    await fs.writeFile(path.join(s.exportDir, 'w.bin'), '');
    const fh = (await s.client.lookup(ROOT, s.root, 'w.bin')).fh;
    const c = await RawRpc.connect(s.port);
    try {
      const write = (xid: number, n: number) =>
        RawRpc.call(xid, NFS_PROGRAM, 3, Proc.WRITE, (w) => w.opaque(fh).u64(0).u32(n).u32(StableHow.FILE_SYNC).opaque(Buffer.alloc(n, 7)));
      c.sendRecord(write(1, (1 << 20) + 1));
      const over = await c.reply(1);
      assert.equal(over.kind, 'accepted_error');
      assert.equal((await fs.stat(path.join(s.exportDir, 'w.bin'))).size, 0, 'nothing written');
      c.sendRecord(write(2, 1 << 20));
      assert.equal((await c.reply(2)).kind, 'success');
      assert.equal((await fs.stat(path.join(s.exportDir, 'w.bin'))).size, 1 << 20);
    } finally {
      c.close();
    }
  });
});
