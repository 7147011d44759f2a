import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { NFS_PROGRAM, Proc } from '../../../src/nfs3/constants.js';
import { MOUNT_PROGRAM } from '../../../src/mount3/codec.js';
import { AcceptStat, AuthFlavor, AuthStat } from '../../../src/rpc/types.js';
import { RawRpc } from '../../helpers/raw-rpc.js';
import { ROOT, startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { rng, testSeed } from '../../helpers/seed.js';

/** RPC-level errors and hostile input: the right error or a closed connection, never a crash, others unaffected. */
describe('RPC errors and bad input', { timeout: 300_000 }, () => {
  let s: LocalServer;
  before(async () => {
    s = await startLocalServer({ limits: { partialRecordTimeoutMs: 300, maxRecord: 256 * 1024 } });
  });
  after(() => s.stop());

  const accepted = (r: Awaited<ReturnType<RawRpc['reply']>>) => (r.kind === 'accepted_error' ? r.stat : r.kind === 'success' ? AcceptStat.SUCCESS : -1);

  test('PROG_UNAVAIL, PROG_MISMATCH (with range), PROC_UNAVAIL, RPC_MISMATCH', async () => {
    const c = await RawRpc.connect(s.port);
    c.sendRecord(RawRpc.call(1, 399999, 1, 0));
    assert.equal(accepted(await c.reply(1)), AcceptStat.PROG_UNAVAIL);
    c.sendRecord(RawRpc.call(2, NFS_PROGRAM, 4, 0));
    const pm = await c.reply(2);
    assert.deepEqual(pm.kind === 'accepted_error' && [pm.stat, pm.low, pm.high], [AcceptStat.PROG_MISMATCH, 3, 3]);
    c.sendRecord(RawRpc.call(3, NFS_PROGRAM, 3, 22));
    assert.equal(accepted(await c.reply(3)), AcceptStat.PROC_UNAVAIL);
    const bad = RawRpc.call(4, NFS_PROGRAM, 3, 0);
    bad.writeUInt32BE(3, 8); // rpcvers 3
    c.sendRecord(bad);
    const rm = await c.reply(4);
    assert.equal(rm.kind, 'rpc_mismatch');
    c.close();
  });

  test('GARBAGE_ARGS for truncated or malformed arguments', async () => {
    const c = await RawRpc.connect(s.port);
    c.sendRecord(RawRpc.call(10, NFS_PROGRAM, 3, Proc.GETATTR, (w) => w.u32(100))); // handle longer than 64
    assert.equal(accepted(await c.reply(10)), AcceptStat.GARBAGE_ARGS);
    c.sendRecord(RawRpc.call(11, NFS_PROGRAM, 3, Proc.READ, (w) => w.opaque(s.root).u32(0))); // truncated
    assert.equal(accepted(await c.reply(11)), AcceptStat.GARBAGE_ARGS);
    c.sendRecord(RawRpc.call(12, NFS_PROGRAM, 3, Proc.GETATTR, (w) => w.opaque(s.root).u32(7))); // trailing bytes
    assert.equal(accepted(await c.reply(12)), AcceptStat.GARBAGE_ARGS);
    c.sendRecord(RawRpc.call(13, NFS_PROGRAM, 3, Proc.READDIR, (w) => w.opaque(s.root).u32(0).u32(0).fixedOpaque(Buffer.alloc(8)).u32(0xffffffff)));
    const r = await c.reply(13); // absurd count: served (bounded by the server), not an allocation of 4 GiB
    assert.equal(accepted(r), AcceptStat.SUCCESS);
    c.sendRecord(Buffer.from([0, 0, 0, 14, 0, 0])); // a header cut short
    assert.equal(accepted(await c.reply(14)), AcceptStat.GARBAGE_ARGS);
    c.close();
  });

  test('AUTH_ERROR: unknown flavor, malformed AUTH_SYS, AUTH_NONE where credentials are needed', async () => {
    const c = await RawRpc.connect(s.port);
    c.sendRecord(RawRpc.call(20, NFS_PROGRAM, 3, Proc.GETATTR, (w) => w.opaque(s.root), { flavor: 99, body: Buffer.alloc(0) }));
    let r = await c.reply(20);
    assert.equal(r.kind, 'auth_error');
    c.sendRecord(RawRpc.call(21, NFS_PROGRAM, 3, Proc.GETATTR, (w) => w.opaque(s.root), { flavor: AuthFlavor.AUTH_SYS, body: Buffer.alloc(6) }));
    r = await c.reply(21);
    assert.deepEqual(r.kind === 'auth_error' && r.stat, AuthStat.AUTH_BADCRED);
    c.sendRecord(RawRpc.call(22, NFS_PROGRAM, 3, Proc.GETATTR, (w) => w.opaque(s.root), { flavor: AuthFlavor.AUTH_NONE, body: Buffer.alloc(0) }));
    r = await c.reply(22);
    assert.deepEqual(r.kind === 'auth_error' && r.stat, AuthStat.AUTH_TOOWEAK);
    c.sendRecord(RawRpc.call(23, NFS_PROGRAM, 3, Proc.NULL, () => undefined, { flavor: AuthFlavor.AUTH_NONE, body: Buffer.alloc(0) }));
    assert.equal(accepted(await c.reply(23)), AcceptStat.SUCCESS, 'NULL needs no credentials');
    c.close();
  });

  test('multi-fragment records are reassembled', async () => {
    const c = await RawRpc.connect(s.port);
    c.sendRecord(RawRpc.call(30, MOUNT_PROGRAM, 3, 1, (w) => w.string('/')), 5);
    const r = await c.reply(30);
    assert.equal(r.kind, 'success');
    c.close();
  });

  test('an oversized record closes the connection before it is buffered; others keep being served', async () => {
    const c = await RawRpc.connect(s.port);
    const h = Buffer.alloc(4);
    h.writeUInt32BE((0x80000000 | (64 << 20)) >>> 0);
    c.sock.write(h);
    await c.closed;
    assert.ok((await s.client.getattr(ROOT, s.root)).fileid > 0n);
  });

  test('a record that stalls half-sent is dropped after the timeout', async () => {
    const c = await RawRpc.connect(s.port);
    const body = RawRpc.call(40, NFS_PROGRAM, 3, 0);
    const h = Buffer.alloc(4);
    h.writeUInt32BE((0x80000000 | body.length) >>> 0);
    c.sock.write(Buffer.concat([h, body.subarray(0, 10)]));
    const t0 = Date.now();
    await c.closed;
    assert.ok(Date.now() - t0 < 5000);
    assert.ok((await s.client.getattr(ROOT, s.root)).fileid > 0n);
  });

  test('many calls in flight on one connection are all answered', async () => {
    const c = await RawRpc.connect(s.port);
    for (let i = 0; i < 500; i++) c.sendRecord(RawRpc.call(1000 + i, NFS_PROGRAM, 3, Proc.GETATTR, (w) => w.opaque(s.root)));
    const rs = await Promise.all(Array.from({ length: 500 }, (_, i) => c.reply(1000 + i)));
    assert.ok(rs.every((r) => r.kind === 'success'));
    c.close();
  });

  test('random garbage never crashes the server', async (t) => {
    const seed = testSeed('GVFS_GARBAGE_SEED', 7);
    t.diagnostic(`seed ${seed}`);
    const rand = rng(seed);
    for (let i = 0; i < 50; i++) {
      const c = await RawRpc.connect(s.port);
      const junk = Buffer.alloc(1 + Math.floor(rand() * 400));
      for (let k = 0; k < junk.length; k++) junk[k] = Math.floor(rand() * 256);
      c.sock.write(junk);
      c.sendRecord(junk.subarray(0, Math.min(junk.length, 200)));
      c.close();
    }
    assert.ok((await s.client.getattr(ROOT, s.root)).fileid > 0n);
  });

  test('the duplicate-request cache answers a retransmitted REMOVE with the original reply', async () => {
    await s.client.create(ROOT, s.root, 'dup', { mode: 'guarded', attrs: {} });
    const call = RawRpc.call(50, NFS_PROGRAM, 3, Proc.REMOVE, (w) => w.opaque(s.root).string('dup'));
    const c1 = await RawRpc.connect(s.port);
    c1.sendRecord(call);
    const r1 = await c1.reply(50);
    c1.close();
    const c2 = await RawRpc.connect(s.port); // reconnect from another port, same host: same xid resent
    c2.sendRecord(call);
    const r2 = await c2.reply(50);
    c2.close();
    assert.ok(r1.kind === 'success' && r2.kind === 'success');
    assert.equal(r1.body.u32(), 0);
    assert.equal(r2.body.u32(), 0, 'answered from the cache, not NFS3ERR_NOENT');
    assert.ok(s.server.stats.drcHits >= 1);
  });
});
