import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as X from '../../../src/nfs3/codec.js';
import { NFS_PROGRAM, NFS_V3, Nfs3Status, Proc } from '../../../src/nfs3/constants.js';
import type { DecodedReply } from '../../../src/rpc/message.js';
import { HeldBackend } from '../../helpers/held-backend.js';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { RawRpc } from '../../helpers/raw-rpc.js';

/**
 * The duplicate-request cache (src/rpc/drc.ts) promises: a non-idempotent
 * call resent with the same xid, procedure and arguments from the same
 * address is executed once — a resend that arrives while the first is still
 * running shares its result, a later one gets the cached reply — and a
 * reused xid with another call (other arguments, other procedure, another
 * address) is executed, never answered from the cache.
 */
const createCall = (xid: number, dir: Buffer, name: string) =>
  RawRpc.call(xid, NFS_PROGRAM, NFS_V3, Proc.CREATE, (w) => X.CREATE.args.enc(w, { where: { dir, name }, how: { mode: 'guarded', attrs: { mode: 0o644 } } }));
const mkdirCall = (xid: number, dir: Buffer, name: string) => RawRpc.call(xid, NFS_PROGRAM, NFS_V3, Proc.MKDIR, (w) => X.MKDIR.args.enc(w, { where: { dir, name }, attrs: { mode: 0o755 } }));

function created(r: DecodedReply): { status: Nfs3Status; fh?: Buffer } {
  assert.equal(r.kind, 'success', JSON.stringify(r));
  return X.CREATE.res.dec((r as { body: Parameters<typeof X.CREATE.res.dec>[0] }).body) as { status: Nfs3Status; fh?: Buffer };
}

describe('duplicate-request cache: in-flight resends and reused xids', { timeout: 120_000 }, () => {
  let s: LocalServer;
  let held: HeldBackend;
  const conns: RawRpc[] = [];
  const connect = async (addr = '127.0.0.1') => {
    const c = await RawRpc.connect(s.port, addr);
    conns.push(c);
    return c;
  };
  before(async () => {
    s = await startLocalServer({ wrap: (b) => (held = new HeldBackend(b)) });
  });
  after(async () => {
    held?.release();
    for (const c of conns) c.close();
    await s?.stop();
  });

  test('a CREATE resent (same xid and bytes) while the first is held in the backend runs once; both copies get its answer', async () => {
    const a = await connect();
    const b = await connect(); // a reconnecting client: another connection from the same address
    const hits0 = s.server.stats.drcHits;
    held.hold = true;
    const call = createCall(7001, s.root, 'once');
    try {
      a.sendRecord(call);
      await held.waitHeld(1);
      a.sendRecord(call); // a retransmission on the same connection
      b.sendRecord(call); // and one after a "reconnect"
      // Both must be taken as duplicates of the running call (never a second execution, which would be held too).
      for (const end = Date.now() + 30_000; s.server.stats.drcHits < hits0 + 2 && held.held < 2; ) {
        assert.ok(Date.now() < end, 'the resends were neither answered from the cache nor executed');
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(held.held, 1, 'a resend was executed while the first copy ran');
      assert.equal(s.server.stats.drcHits, hits0 + 2);
    } finally {
      held.release();
    }
    const [r1, r2] = [created(await a.reply(7001)), created(await b.reply(7001))];
    assert.equal(r1.status, Nfs3Status.OK);
    assert.equal(r2.status, Nfs3Status.OK, 'the duplicate got the first execution\'s answer, not EXIST from a second one');
    assert.ok(r1.fh && r2.fh && r1.fh.equals(r2.fh));
    // The same-connection retransmission is answered as well (a second reply with xid 7001).
    assert.equal(created(await a.reply(7001)).status, Nfs3Status.OK);
    assert.equal(held.executed.create, 1);
    assert.ok((await fs.stat(path.join(s.exportDir, 'once'))).isFile());
  });

  test('a resend after the call finished gets the cached reply; the same xid with other arguments, another procedure or from another address is executed', async () => {
    const a = await connect();
    const n0 = held.executed.create;
    a.sendRecord(createCall(7100, s.root, 'x'));
    const first = created(await a.reply(7100));
    assert.equal(first.status, Nfs3Status.OK);
    assert.equal(held.executed.create, n0 + 1);

    const hits0 = s.server.stats.drcHits;
    a.sendRecord(createCall(7100, s.root, 'x'));
    const again = created(await a.reply(7100));
    assert.equal(again.status, Nfs3Status.OK, 'answered from the cache (a second guarded CREATE would be EXIST)');
    assert.ok(again.fh!.equals(first.fh!));
    assert.equal(s.server.stats.drcHits, hits0 + 1);
    assert.equal(held.executed.create, n0 + 1);

    // Same xid, same procedure, other arguments: a new call.
    a.sendRecord(createCall(7100, s.root, 'y'));
    const y = created(await a.reply(7100));
    assert.equal(y.status, Nfs3Status.OK);
    assert.ok(!y.fh!.equals(first.fh!), 'not the cached answer for x');
    assert.ok((await fs.stat(path.join(s.exportDir, 'y'))).isFile(), 'y was created');
    assert.equal(held.executed.create, n0 + 2);

    // Same xid, another procedure.
    a.sendRecord(mkdirCall(7100, s.root, 'z'));
    const z = await a.reply(7100);
    assert.equal(z.kind, 'success');
    assert.equal(X.MKDIR.res.dec((z as { body: Parameters<typeof X.MKDIR.res.dec>[0] }).body).status, Nfs3Status.OK);
    assert.ok((await fs.stat(path.join(s.exportDir, 'z'))).isDirectory(), 'z was made');

    // Same xid and bytes from another address (another client): executed, so the guarded CREATE of x is EXIST.
    const other = await connect('127.0.0.2');
    other.sendRecord(createCall(7100, s.root, 'x'));
    assert.equal(created(await other.reply(7100)).status, Nfs3Status.EXIST, "another client's call is not answered with this client's reply");
    assert.equal(held.executed.create, n0 + 3);
    assert.equal(s.server.stats.drcHits, hits0 + 1, 'no further cache hits');
  });
});
