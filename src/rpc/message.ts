import { XdrReader, XdrWriter } from '../xdr/index.js';
import { readOpaqueAuth, writeOpaqueAuth, AUTH_NONE_BODY } from './auth.js';
import {
  AcceptStat,
  type CallHeader,
  MsgType,
  type OpaqueAuth,
  RejectStat,
  ReplyStat,
  RPC_VERSION,
} from './types.js';

/**
 * Call and reply headers (RFC 5531 §9). Socket-free: encode to an XdrWriter,
 * decode from an XdrReader positioned at the start of a record.
 */

/** Result of reading a record's first words: a call, or something to refuse. */
export type DecodedCall =
  | { ok: true; call: CallHeader; args: XdrReader }
  | { ok: false; xid: number; reason: 'rpc_mismatch' | 'garbage' | 'not_call' };

export function decodeCall(record: Buffer): DecodedCall {
  const r = new XdrReader(record);
  let xid = 0;
  try {
    xid = r.u32();
    const mtype = r.u32();
    if (mtype !== MsgType.CALL) return { ok: false, xid, reason: 'not_call' };
    const rpcvers = r.u32();
    if (rpcvers !== RPC_VERSION) return { ok: false, xid, reason: 'rpc_mismatch' };
    const prog = r.u32();
    const vers = r.u32();
    const proc = r.u32();
    const cred = readOpaqueAuth(r);
    const verf = readOpaqueAuth(r);
    return { ok: true, call: { xid, prog, vers, proc, cred, verf }, args: r };
  } catch {
    return { ok: false, xid, reason: 'garbage' };
  }
}

export function encodeCallHeader(
  w: XdrWriter,
  xid: number,
  prog: number,
  vers: number,
  proc: number,
  cred: OpaqueAuth,
  verf: OpaqueAuth = AUTH_NONE_BODY,
): void {
  w.u32(xid).u32(MsgType.CALL).u32(RPC_VERSION).u32(prog).u32(vers).u32(proc);
  writeOpaqueAuth(w, cred);
  writeOpaqueAuth(w, verf);
}

/** Accepted reply header; the caller appends the results for SUCCESS. */
export function encodeAcceptedReply(w: XdrWriter, xid: number, stat: AcceptStat, verf: OpaqueAuth = AUTH_NONE_BODY): void {
  w.u32(xid).u32(MsgType.REPLY).u32(ReplyStat.MSG_ACCEPTED);
  writeOpaqueAuth(w, verf);
  w.u32(stat);
}

export function encodeProgMismatch(w: XdrWriter, xid: number, low: number, high: number): void {
  encodeAcceptedReply(w, xid, AcceptStat.PROG_MISMATCH);
  w.u32(low).u32(high);
}

export function encodeRpcMismatch(w: XdrWriter, xid: number): void {
  w.u32(xid).u32(MsgType.REPLY).u32(ReplyStat.MSG_DENIED).u32(RejectStat.RPC_MISMATCH);
  w.u32(RPC_VERSION).u32(RPC_VERSION);
}

export function encodeAuthError(w: XdrWriter, xid: number, stat: number): void {
  w.u32(xid).u32(MsgType.REPLY).u32(ReplyStat.MSG_DENIED).u32(RejectStat.AUTH_ERROR).u32(stat);
}

/** A decoded reply header; `body` is positioned at the results when accepted with SUCCESS. */
export type DecodedReply =
  | { xid: number; kind: 'success'; verf: OpaqueAuth; body: XdrReader }
  | { xid: number; kind: 'accepted_error'; stat: AcceptStat; low?: number; high?: number }
  | { xid: number; kind: 'rpc_mismatch'; low: number; high: number }
  | { xid: number; kind: 'auth_error'; stat: number };

export function decodeReply(record: Buffer): DecodedReply {
  const r = new XdrReader(record);
  const xid = r.u32();
  if (r.u32() !== MsgType.REPLY) throw new Error('not a reply');
  const rstat = r.u32();
  if (rstat === ReplyStat.MSG_ACCEPTED) {
    const verf = readOpaqueAuth(r);
    const stat = r.u32();
    if (stat === AcceptStat.SUCCESS) return { xid, kind: 'success', verf, body: r };
    if (stat === AcceptStat.PROG_MISMATCH) return { xid, kind: 'accepted_error', stat, low: r.u32(), high: r.u32() };
    return { xid, kind: 'accepted_error', stat };
  }
  if (rstat !== ReplyStat.MSG_DENIED) throw new Error(`bad reply_stat ${rstat}`);
  const rj = r.u32();
  if (rj === RejectStat.RPC_MISMATCH) return { xid, kind: 'rpc_mismatch', low: r.u32(), high: r.u32() };
  if (rj === RejectStat.AUTH_ERROR) return { xid, kind: 'auth_error', stat: r.u32() };
  throw new Error(`bad reject_stat ${rj}`);
}
