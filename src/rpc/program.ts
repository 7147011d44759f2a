import { type XdrReader, XdrWriter } from '../xdr/index.js';
import { decodeCall, encodeAcceptedReply, encodeProgMismatch, encodeRpcMismatch } from './message.js';
import { AcceptStat, type CallHeader, type Credentials } from './types.js';

/**
 * A program version is a table of procedures (like ganesha's nfs3_func_desc[]):
 * each row says how to decode the arguments, what to run, how to encode the
 * result, and the flags the server reads in one place (duplicate-request
 * cache, credentials). Handlers never touch bytes.
 */
export interface CallContext {
  readonly call: CallHeader;
  readonly cred: Credentials;
  readonly peer: { address: string; port: number };
  /** State of the connection the call came on (session proof lives here later). */
  readonly conn: ConnectionState;
  /**
   * Set by a handler whose reply refers to a buffer it wants back (a READ's
   * pooled data): run once the reply has left, or could not be sent. Never
   * run for a non-idempotent call, whose reply the duplicate-request cache
   * may send again: its buffers are left to the garbage collector.
   */
  sent?: () => void;
}

/**
 * A reply's chunks, with what to run once they have been written
 * (CallContext.sent), and whether the call's record is free again
 * (Procedure.lendsArgs).
 */
export type ReplyChunks = Buffer[] & { sent?: () => void; argsLent?: boolean };

export interface ConnectionState {
  readonly id: number;
  readonly peer: { address: string; port: number };
  /** Free-form per-connection data owned by programs (e.g. the authenticated session). */
  readonly data: Map<string, unknown>;
  /** Close the connection (after the reply in progress, if any, has been written). */
  close(): void;
  /**
   * Call the peer over this connection (reverse direction: the peer that
   * dialled serves a small program table, e.g. the proxy client's RECALL).
   * Fails with RpcError 'disconnected' when the connection goes, 'timeout'
   * after `timeoutMs`. Absent where a connection cannot carry calls back.
   */
  callPeer?<R>(prog: number, vers: number, proc: number, encodeArgs: (w: XdrWriter) => void, decode: (r: XdrReader) => R, timeoutMs: number): Promise<R>;
}

export interface Procedure<A = any, R = any> {
  readonly name: string;
  decode(r: XdrReader): A;
  handle(args: A, ctx: CallContext): R | Promise<R>;
  encode(w: XdrWriter, res: R): void;
  /** Non-idempotent procedures are answered from the duplicate-request cache when retransmitted. */
  readonly idempotent: boolean;
  /** Refuse AUTH_NONE with AUTH_TOOWEAK (NULL procedures leave this false). */
  readonly needsCred?: boolean;
  /** Callable before the connection has proved a session key (NULL, portmap, the proof itself). */
  readonly public?: boolean;
  /**
   * Makes a change on the server (ganesha's MAKES_WRITE): a front end refuses
   * it on a read-only export before the handler runs. Absent: false.
   */
  readonly mutating?: boolean;
  /**
   * Lends, does not keep, its arguments: once the handler has settled,
   * neither anything it kept nor its result refers to the decoded
   * arguments' bytes (views of the call's record). The server then uses
   * the record's buffer again (a WRITE's 1 MiB). Absent: false.
   */
  readonly lendsArgs?: boolean;
}

export interface ProgramVersion {
  readonly prog: number;
  readonly vers: number;
  readonly name: string;
  readonly procedures: ReadonlyArray<Procedure | undefined>;
}

export const VOID = {
  decode: (_r: XdrReader): void => undefined,
  encode: (_w: XdrWriter, _v: void): void => undefined,
};

/** Registry of programs served by one server (passed in, never global). */
export class ProgramTable {
  private readonly byProg = new Map<number, Map<number, ProgramVersion>>();

  add(p: ProgramVersion): this {
    let m = this.byProg.get(p.prog);
    if (!m) this.byProg.set(p.prog, (m = new Map()));
    m.set(p.vers, p);
    return this;
  }

  lookup(prog: number, vers: number): ProgramVersion | { missing: 'prog' } | { missing: 'vers'; low: number; high: number } {
    const m = this.byProg.get(prog);
    if (!m) return { missing: 'prog' };
    const v = m.get(vers);
    if (v) return v;
    const all = [...m.keys()];
    return { missing: 'vers', low: Math.min(...all), high: Math.max(...all) };
  }

  /** All registered (prog, vers) pairs, for the portmapper. */
  entries(): Array<{ prog: number; vers: number }> {
    const out: Array<{ prog: number; vers: number }> = [];
    for (const [prog, m] of this.byProg) for (const vers of m.keys()) out.push({ prog, vers });
    return out;
  }
}

/** A call found in a table: the procedure to run and the reader at its arguments. */
export interface RoutedCall {
  readonly call: CallHeader;
  readonly args: XdrReader;
  readonly version: ProgramVersion;
  readonly proc: Procedure;
}

/**
 * Decodes a CALL record and finds its procedure, or encodes the refusal RFC 5531
 * prescribes (RPC_MISMATCH, GARBAGE_ARGS, PROG_UNAVAIL, PROG_MISMATCH,
 * PROC_UNAVAIL). One place for both directions of a connection: the server's
 * calls and the reverse calls a proxy client answers. `refusal` undefined:
 * send nothing (the record was a REPLY, not a CALL). A refusal carries the
 * call's header when the header itself decoded.
 */
export function routeCall(programs: ProgramTable, record: Buffer): RoutedCall | { refusal: Buffer[] | undefined; call?: CallHeader } {
  const d = decodeCall(record);
  const w = new XdrWriter(64);
  if (!d.ok) {
    if (d.reason === 'not_call') return { refusal: undefined };
    if (d.reason === 'rpc_mismatch') encodeRpcMismatch(w, d.xid);
    else encodeAcceptedReply(w, d.xid, AcceptStat.GARBAGE_ARGS);
    return { refusal: w.chunks() };
  }
  const { call, args } = d;
  const version = programs.lookup(call.prog, call.vers);
  if ('missing' in version) {
    if (version.missing === 'prog') encodeAcceptedReply(w, call.xid, AcceptStat.PROG_UNAVAIL);
    else encodeProgMismatch(w, call.xid, version.low, version.high);
    return { refusal: w.chunks(), call };
  }
  const proc = version.procedures[call.proc];
  if (!proc) {
    encodeAcceptedReply(w, call.xid, AcceptStat.PROC_UNAVAIL);
    return { refusal: w.chunks(), call };
  }
  return { call, args, version, proc };
}

/** The GARBAGE_ARGS reply to a call whose arguments did not decode. */
export function garbageArgs(xid: number): Buffer[] {
  const w = new XdrWriter(32);
  encodeAcceptedReply(w, xid, AcceptStat.GARBAGE_ARGS);
  return w.chunks();
}
