import { XdrReader, XdrWriter } from '../xdr/index.js';
import { AUTH_NONE_BODY } from './auth.js';
import { decodeReply, encodeAcceptedReply, encodeCallHeader } from './message.js';
import { type CallContext, type ConnectionState, garbageArgs, type ProgramTable, routeCall } from './program.js';
import { AcceptStat, AuthFlavor, MsgType, RpcError } from './types.js';
import { logger } from '../util/log.js';

const log = logger('rpc');

/**
 * Reverse-direction RPC (the callback consistency model's RECALL): a
 * connection carries calls both ways. The side that accepted the
 * connection can call the side that dialled it; each side tells a CALL
 * from a REPLY by the message type word, and matches replies to its own
 * XIDs only (the two directions' XIDs are independent).
 */

/** The message type of a record (the word after the XID), or undefined when the record is too short. */
export function messageType(record: Buffer): number | undefined {
  return record.length >= 8 ? record.readUInt32BE(4) : undefined;
}
export const isCallRecord = (record: Buffer): boolean => messageType(record) === MsgType.CALL;
export const isReplyRecord = (record: Buffer): boolean => messageType(record) === MsgType.REPLY;

/** Calls to the peer of a connection we accepted; sends through `send` (one framed record per call). */
export class PeerCalls {
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void; decode: (r: XdrReader) => unknown; timer: NodeJS.Timeout }>();
  private xid = (Math.random() * 0x7fff_ffff) >>> 0;
  private closed = false;

  constructor(
    private readonly send: (message: Buffer[]) => void,
    private readonly label: string,
  ) {}

  call<R>(prog: number, vers: number, proc: number, encodeArgs: (w: XdrWriter) => void, decode: (r: XdrReader) => R, timeoutMs: number): Promise<R> {
    if (this.closed) return Promise.reject(new RpcError(`${this.label}: connection closed`, 'disconnected'));
    this.xid = (this.xid + 1) >>> 0;
    const xid = this.xid;
    const w = new XdrWriter(128);
    encodeCallHeader(w, xid, prog, vers, proc, AUTH_NONE_BODY);
    encodeArgs(w);
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(xid);
        reject(new RpcError(`${this.label}: reverse call ${prog}/${vers}/${proc} timed out`, 'timeout'));
      }, timeoutMs);
      this.pending.set(xid, { resolve, reject, decode, timer });
      this.send(w.chunks());
    });
  }

  /** A REPLY record arrived on the connection: settle the call it answers (unknown XIDs are dropped). */
  onReply(record: Buffer): void {
    let d;
    try {
      d = decodeReply(record);
    } catch (e) {
      log.warn({ err: e }, `${this.label}: undecodable reply to a reverse call dropped`);
      return;
    }
    const p = this.pending.get(d.xid);
    if (!p) return;
    this.pending.delete(d.xid);
    clearTimeout(p.timer);
    if (d.kind !== 'success') {
      const detail = d.kind === 'accepted_error' ? d.stat : d.kind === 'auth_error' ? d.stat : undefined;
      const kind = d.kind === 'accepted_error' ? (['system_err', 'prog_unavail', 'prog_mismatch', 'proc_unavail', 'garbage_args', 'system_err'] as const)[d.stat] ?? 'system_err' : d.kind === 'auth_error' ? 'auth_error' : 'rpc_mismatch';
      p.reject(new RpcError(`${this.label}: reverse call refused (${kind})`, kind, detail));
      return;
    }
    try {
      p.resolve(p.decode(d.body));
    } catch (e) {
      p.reject(new RpcError(`${this.label}: undecodable reverse-call result: ${(e as Error).message}`, 'bad_reply'));
    }
  }

  /** The connection is gone: every pending call fails now (not at its deadline). */
  closeAll(): void {
    this.closed = true;
    for (const [xid, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(xid);
      p.reject(new RpcError(`${this.label}: connection closed before the reverse call was answered`, 'disconnected'));
    }
  }

  get inFlight(): number {
    return this.pending.size;
  }
}

/**
 * The dialling side: run a CALL the server sent, from a small program table
 * (no duplicate-request cache, no credentials: the connection itself is the
 * proved session). Returns the reply message (unframed).
 */
export async function dispatchPeerCall(programs: ProgramTable, record: Buffer, peer: { address: string; port: number }, conn: ConnectionState): Promise<Buffer[] | undefined> {
  const routed = routeCall(programs, record);
  if ('refusal' in routed) return routed.refusal;
  const { call, args, proc } = routed;
  let a: unknown;
  try {
    a = proc.decode(args);
    args.end();
  } catch {
    return garbageArgs(call.xid);
  }
  const ctx: CallContext = { call, cred: { flavor: AuthFlavor.AUTH_NONE, uid: 65534, gid: 65534, gids: [] }, peer, conn };
  try {
    const res = await proc.handle(a, ctx);
    const out = new XdrWriter(128);
    encodeAcceptedReply(out, call.xid, AcceptStat.SUCCESS);
    proc.encode(out, res);
    return out.chunks();
  } catch (e) {
    log.error({ err: e, proc: proc.name }, 'reverse-call handler failed');
    const w = new XdrWriter(32);
    encodeAcceptedReply(w, call.xid, AcceptStat.SYSTEM_ERR);
    return w.chunks();
  }
}
