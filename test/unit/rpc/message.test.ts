import { test } from 'node:test';
import assert from 'node:assert/strict';
import { XdrError, XdrWriter } from '../../../src/xdr/index.js';
import { AUTH_NONE_BODY, AUTH_SYS_MAX_GIDS, decodeAuthSys, encodeAuthSys } from '../../../src/rpc/auth.js';
import {
  decodeCall,
  decodeReply,
  encodeAcceptedReply,
  encodeAuthError,
  encodeCallHeader,
  encodeProgMismatch,
  encodeRpcMismatch,
} from '../../../src/rpc/message.js';
import { AcceptStat, AuthFlavor, AuthStat } from '../../../src/rpc/types.js';
import { hex } from '../../helpers/xdr.js';

/**
 * RPC call and reply headers (RFC 5531 §9, opaque_auth §8.2, AUTH_SYS
 * appendix A). Vectors are hand-written from the RFC's XDR definitions.
 */

const build = (f: (w: XdrWriter) => void): Buffer => {
  const w = new XdrWriter();
  f(w);
  return w.toBuffer();
};

const XID = 0x12345678;
const NFS_PROGRAM = 100003; // 0x000186a3

// struct authsys_parms { unsigned int stamp; string machinename<255>; unsigned int uid; unsigned int gid; unsigned int gids<16>; };
const AUTH_SYS_BODY = `
  01020304                     # stamp
  00000004 686f7374            # machinename "host"
  000003e8                     # uid 1000
  00000064                     # gid 100
  00000002 00000064 0000001b   # gids<16> = [100, 27]
`;
const SYS_BODY = hex(AUTH_SYS_BODY);

// rpc_msg { xid; msg_type; call_body { rpcvers; prog; vers; proc; opaque_auth cred; opaque_auth verf; } }
const CALL_HEADER = hex(`
  12345678            # xid
  00000000            # msg_type CALL
  00000002            # rpcvers
  000186a3            # prog 100003 (NFS)
  00000003            # vers
  00000001            # proc
  00000001 00000020   # cred: flavor AUTH_SYS, body length 32
  ${AUTH_SYS_BODY}
  00000000 00000000   # verf: flavor AUTH_NONE, empty body
`);

const SYS = { stamp: 0x01020304, machine: 'host', uid: 1000, gid: 100, gids: [100, 27] };

test('AUTH_SYS credential body, byte for byte (RFC 5531 appendix A)', { timeout: 60_000 }, () => {
  assert.equal(SYS_BODY.length, 32);
  const cred = encodeAuthSys(SYS);
  assert.equal(cred.flavor, AuthFlavor.AUTH_SYS);
  assert.equal(cred.flavor, 1);
  assert.deepEqual(cred.body, SYS_BODY);
  assert.deepEqual(decodeAuthSys(SYS_BODY), SYS);
});

test('AUTH_SYS machinename is padded to four bytes', { timeout: 60_000 }, () => {
  const body = encodeAuthSys({ stamp: 0, machine: 'box', uid: 0, gid: 0, gids: [] }).body;
  assert.deepEqual(body, hex('00000000  00000003 626f7800  00000000 00000000  00000000'));
});

test('AUTH_SYS decoding enforces gids<16>, machinename<255> and no trailing bytes', { timeout: 60_000 }, () => {
  const body = (machineLen: number, ngids: number, extra = '') =>
    build((w) => {
      w.u32(0).string('m'.repeat(machineLen)).u32(0).u32(0);
      w.array(Array.from({ length: ngids }, (_, i) => i), (x, g) => x.u32(g));
    }).toString('hex') + extra;
  assert.equal(decodeAuthSys(hex(body(255, 16))).gids.length, 16);
  assert.throws(() => decodeAuthSys(hex(body(1, 17))), XdrError);
  assert.throws(() => decodeAuthSys(hex(body(256, 0))), XdrError);
  assert.throws(() => decodeAuthSys(hex(body(1, 0, '00000000'))), XdrError);
  assert.throws(() => decodeAuthSys(SYS_BODY.subarray(0, 30)), XdrError);
});

test('AUTH_SYS encoding never sends more than 16 gids', { timeout: 60_000 }, () => {
  const gids = Array.from({ length: 20 }, (_, i) => i);
  const back = decodeAuthSys(encodeAuthSys({ stamp: 1, machine: 'h', uid: 2, gid: 3, gids }).body);
  assert.equal(AUTH_SYS_MAX_GIDS, 16);
  assert.deepEqual(back.gids, gids.slice(0, 16));
});

test('CALL header with AUTH_SYS credential, byte for byte (RFC 5531 §9)', { timeout: 60_000 }, () => {
  assert.equal(CALL_HEADER.length, 24 + 8 + 32 + 8);
  const out = build((w) => encodeCallHeader(w, XID, NFS_PROGRAM, 3, 1, encodeAuthSys(SYS)));
  assert.deepEqual(out, CALL_HEADER);
});

test('decodeCall reads the header and leaves the reader at the arguments', { timeout: 60_000 }, () => {
  const record = Buffer.concat([CALL_HEADER, hex('0000002a')]);
  const d = decodeCall(record);
  assert.ok(d.ok);
  assert.deepEqual(
    { xid: d.call.xid, prog: d.call.prog, vers: d.call.vers, proc: d.call.proc },
    { xid: XID, prog: NFS_PROGRAM, vers: 3, proc: 1 },
  );
  assert.equal(d.call.cred.flavor, AuthFlavor.AUTH_SYS);
  assert.deepEqual(decodeAuthSys(d.call.cred.body), SYS);
  assert.equal(d.call.verf.flavor, AuthFlavor.AUTH_NONE);
  assert.equal(d.call.verf.body.length, 0);
  assert.equal(d.args.u32(), 42);
  d.args.end();
});

test('decodeCall with AUTH_NONE credential and verifier', { timeout: 60_000 }, () => {
  const d = decodeCall(hex('00000001 00000000 00000002 000186a5 00000003 00000000  00000000 00000000  00000000 00000000'));
  assert.ok(d.ok);
  assert.equal(d.call.prog, 100005);
  assert.deepEqual(d.call.cred, AUTH_NONE_BODY);
  assert.equal(d.args.remaining, 0);
});

test('decodeCall: rpcvers other than 2 is an RPC mismatch carrying the xid', { timeout: 60_000 }, () => {
  for (const v of ['00000001', '00000003', 'ffffffff']) {
    const d = decodeCall(hex(`cafef00d 00000000 ${v} 000186a3 00000003 00000000 00000000 00000000 00000000 00000000`));
    assert.deepEqual(d, { ok: false, xid: 0xcafef00d, reason: 'rpc_mismatch' });
  }
});

test('decodeCall: a REPLY or an unknown msg_type is not a call', { timeout: 60_000 }, () => {
  assert.deepEqual(decodeCall(hex('00000007 00000001 00000000')), { ok: false, xid: 7, reason: 'not_call' });
  assert.deepEqual(decodeCall(hex('00000007 00000005')), { ok: false, xid: 7, reason: 'not_call' });
});

test('decodeCall: every strict prefix of a call header is garbage, never a throw', { timeout: 60_000 }, () => {
  for (let n = 0; n < CALL_HEADER.length; n++) {
    const d = decodeCall(CALL_HEADER.subarray(0, n));
    assert.equal(d.ok, false, `prefix ${n}`);
    if (!d.ok) {
      assert.equal(d.reason, 'garbage', `prefix ${n}`);
      assert.equal(d.xid, n >= 4 ? XID : 0, `prefix ${n}`);
    }
  }
});

test('decodeCall: a credential body over 400 bytes is garbage (opaque body<400>, RFC 5531 §8.2)', { timeout: 60_000 }, () => {
  const call = (len: number) =>
    build((w) => {
      w.u32(9).u32(0).u32(2).u32(NFS_PROGRAM).u32(3).u32(0);
      w.u32(AuthFlavor.AUTH_SYS).opaque(Buffer.alloc(len));
      w.u32(0).u32(0);
    });
  assert.equal(decodeCall(call(400)).ok, true);
  assert.deepEqual(decodeCall(call(401)), { ok: false, xid: 9, reason: 'garbage' });
});

test('decodeCall: random garbage is refused, never thrown', { timeout: 60_000 }, () => {
  for (const h of ['ff', 'ffffffff ffffffff', '00000001 00000000 00000002 ffffffff ffffffff ffffffff ffffffff ffffffff']) {
    assert.equal(decodeCall(hex(h)).ok, false, h);
  }
});

// ---------- replies ----------

// accepted: xid, REPLY=1, MSG_ACCEPTED=0, verf (AUTH_NONE, len 0), accept_stat
const accepted = (stat: string, tail = '') => hex(`12345678 00000001 00000000 00000000 00000000 ${stat} ${tail}`);

test('accepted SUCCESS reply: header byte-exact, results follow', { timeout: 60_000 }, () => {
  const out = build((w) => {
    encodeAcceptedReply(w, XID, AcceptStat.SUCCESS);
    w.u32(42);
  });
  assert.deepEqual(out, accepted('00000000', '0000002a'));
  const d = decodeReply(out);
  assert.equal(d.kind, 'success');
  assert.equal(d.xid, XID);
  if (d.kind !== 'success') return;
  assert.deepEqual(d.verf, AUTH_NONE_BODY);
  assert.equal(d.body.u32(), 42);
  d.body.end();
});

test('accepted SUCCESS with a non-null verifier round-trips', { timeout: 60_000 }, () => {
  const verf = { flavor: AuthFlavor.AUTH_SHORT, body: Buffer.from('abcde') };
  const out = build((w) => encodeAcceptedReply(w, XID, AcceptStat.SUCCESS, verf));
  assert.deepEqual(out, hex('12345678 00000001 00000000  00000002 00000005 61626364 65000000  00000000'));
  const d = decodeReply(out);
  assert.ok(d.kind === 'success');
  assert.deepEqual(d.verf, verf);
});

test('accepted errors without a body: PROG_UNAVAIL, PROC_UNAVAIL, GARBAGE_ARGS, SYSTEM_ERR', { timeout: 60_000 }, () => {
  const cases: Array<[AcceptStat, string]> = [
    [AcceptStat.PROG_UNAVAIL, '00000001'],
    [AcceptStat.PROC_UNAVAIL, '00000003'],
    [AcceptStat.GARBAGE_ARGS, '00000004'],
    [AcceptStat.SYSTEM_ERR, '00000005'],
  ];
  for (const [stat, h] of cases) {
    const out = build((w) => encodeAcceptedReply(w, XID, stat));
    assert.deepEqual(out, accepted(h), `stat ${stat}`);
    assert.deepEqual(decodeReply(out), { xid: XID, kind: 'accepted_error', stat });
  }
});

test('accepted PROG_MISMATCH carries the supported low and high versions', { timeout: 60_000 }, () => {
  const out = build((w) => encodeProgMismatch(w, XID, 2, 4));
  assert.deepEqual(out, accepted('00000002', '00000002 00000004'));
  assert.deepEqual(decodeReply(out), { xid: XID, kind: 'accepted_error', stat: AcceptStat.PROG_MISMATCH, low: 2, high: 4 });
});

test('denied RPC_MISMATCH reports version 2 as low and high', { timeout: 60_000 }, () => {
  // xid, REPLY=1, MSG_DENIED=1, RPC_MISMATCH=0, mismatch_info { low, high }
  const out = build((w) => encodeRpcMismatch(w, XID));
  assert.deepEqual(out, hex('12345678 00000001 00000001 00000000 00000002 00000002'));
  assert.deepEqual(decodeReply(out), { xid: XID, kind: 'rpc_mismatch', low: 2, high: 2 });
});

test('denied AUTH_ERROR carries the auth_stat', { timeout: 60_000 }, () => {
  // xid, REPLY=1, MSG_DENIED=1, AUTH_ERROR=1, auth_stat
  const out = build((w) => encodeAuthError(w, XID, AuthStat.AUTH_TOOWEAK));
  assert.deepEqual(out, hex('12345678 00000001 00000001 00000001 00000005'));
  assert.deepEqual(decodeReply(out), { xid: XID, kind: 'auth_error', stat: AuthStat.AUTH_TOOWEAK });
  const bad = build((w) => encodeAuthError(w, XID, AuthStat.AUTH_BADCRED));
  assert.deepEqual(bad, hex('12345678 00000001 00000001 00000001 00000001'));
});

test('decodeReply rejects calls, unknown reply/reject stats and truncation', { timeout: 60_000 }, () => {
  assert.throws(() => decodeReply(CALL_HEADER));
  assert.throws(() => decodeReply(hex('12345678 00000001 00000002')));
  assert.throws(() => decodeReply(hex('12345678 00000001 00000001 00000002')));
  assert.throws(() => decodeReply(hex('12345678 00000001')), XdrError);
  assert.throws(() => decodeReply(accepted('00000002', '00000002')), XdrError);
});
