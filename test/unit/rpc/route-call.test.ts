import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AUTH_NONE_BODY } from '../../../src/rpc/auth.js';
import { decodeReply, encodeCallHeader } from '../../../src/rpc/message.js';
import { dispatchPeerCall } from '../../../src/rpc/peer-call.js';
import { type ConnectionState, ProgramTable, routeCall } from '../../../src/rpc/program.js';
import { AcceptStat } from '../../../src/rpc/types.js';
import { XdrWriter } from '../../../src/xdr/index.js';

// One table: program 400100 versions 2 and 4; version 2 has procedure 1 (echo a u32).
const programs = new ProgramTable();
const echo = { name: 'ECHO', idempotent: true, decode: (r: any) => r.u32() as number, handle: (n: number) => n + 1, encode: (w: XdrWriter, n: number) => void w.u32(n) };
programs.add({ prog: 400100, vers: 2, name: 'T', procedures: [undefined, echo] });
programs.add({ prog: 400100, vers: 4, name: 'T', procedures: [] });

function call(prog: number, vers: number, proc: number, body: (w: XdrWriter) => void = () => undefined): Buffer {
  const w = new XdrWriter(64);
  encodeCallHeader(w, 77, prog, vers, proc, AUTH_NONE_BODY);
  body(w);
  return Buffer.concat(w.chunks());
}
const refusal = (r: ReturnType<typeof routeCall>) => {
  assert.ok('refusal' in r && r.refusal, 'a refusal');
  return decodeReply(Buffer.concat(r.refusal));
};
const conn: ConnectionState = { id: 1, peer: { address: '127.0.0.1', port: 1 }, data: new Map(), close: () => undefined };

describe('routing a call to its procedure, or its refusal (both directions of a connection)', { timeout: 10_000 }, () => {
  test('each refusal RFC 5531 names, with the xid of the call', () => {
    assert.deepEqual(refusal(routeCall(programs, call(400999, 2, 1))), { xid: 77, kind: 'accepted_error', stat: AcceptStat.PROG_UNAVAIL });
    const mismatch = refusal(routeCall(programs, call(400100, 3, 1)));
    assert.equal(mismatch.kind, 'accepted_error');
    assert.equal(mismatch.kind === 'accepted_error' && mismatch.stat, AcceptStat.PROG_MISMATCH);
    assert.deepEqual(mismatch.kind === 'accepted_error' && [mismatch.low, mismatch.high], [2, 4]);
    assert.deepEqual(refusal(routeCall(programs, call(400100, 2, 7))), { xid: 77, kind: 'accepted_error', stat: AcceptStat.PROC_UNAVAIL });
    const rpc3 = call(400100, 2, 1);
    rpc3.writeUInt32BE(3, 8);
    assert.equal(refusal(routeCall(programs, rpc3)).kind, 'rpc_mismatch');
    assert.deepEqual(refusal(routeCall(programs, call(400100, 2, 1).subarray(0, 26))), { xid: 77, kind: 'accepted_error', stat: AcceptStat.GARBAGE_ARGS }, 'a cut header');
    const reply = call(400100, 2, 1);
    reply.writeUInt32BE(1, 4); // REPLY, not CALL
    assert.deepEqual(routeCall(programs, reply), { refusal: undefined });
  });

  test('a found call carries its procedure and the reader at its arguments', () => {
    const r = routeCall(programs, call(400100, 2, 1, (w) => void w.u32(41)));
    assert.ok(!('refusal' in r));
    assert.equal(r.proc.name, 'ECHO');
    assert.equal(r.args.u32(), 41);
  });

  test('reverse calls are refused exactly as the server refuses: RPC_MISMATCH, trailing bytes', async () => {
    const peer = { address: '127.0.0.1', port: 1 };
    const ok = await dispatchPeerCall(programs, call(400100, 2, 1, (w) => void w.u32(41)), peer, conn);
    const d = decodeReply(Buffer.concat(ok!));
    assert.equal(d.kind, 'success');
    assert.equal(d.kind === 'success' && d.body.u32(), 42);
    const rpc3 = call(400100, 2, 1, (w) => void w.u32(41));
    rpc3.writeUInt32BE(3, 8);
    assert.equal(decodeReply(Buffer.concat((await dispatchPeerCall(programs, rpc3, peer, conn))!)).kind, 'rpc_mismatch');
    const trailing = await dispatchPeerCall(programs, call(400100, 2, 1, (w) => void w.u32(41).u32(9)), peer, conn);
    assert.deepEqual(decodeReply(Buffer.concat(trailing!)), { xid: 77, kind: 'accepted_error', stat: AcceptStat.GARBAGE_ARGS });
  });
});
