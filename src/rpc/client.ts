import net from 'node:net';
import type { Duplex } from 'node:stream';
import { XdrReader, XdrWriter } from '../xdr/index.js';
import { AUTH_NONE_BODY } from './auth.js';
import { decodeReply, encodeCallHeader } from './message.js';
import { frameRecord, RecordDecoder } from './record.js';
import { FOREIGN_PROTOCOL_NAME, foreignProtocolOf } from './peer-protocol.js';
import { AcceptStat, type OpaqueAuth, RpcError } from './types.js';
import { dispatchPeerCall, isCallRecord } from './peer-call.js';
import type { ConnectionState, ProgramTable } from './program.js';
import { logger } from '../util/log.js';
import { BufferPool } from '../util/buffer-pool.js';
import { directReaderOf, directReadSocket } from './direct-read.js';

const log = logger('rpc');

/** Opens a byte stream to the server: plain TCP by default; TLS or an SSH channel later. */
export type Dialer = () => Promise<Duplex>;

/**
 * The server a stream reaches, when a dialer knows it (failover-dialer.ts
 * names each stream it opens). The client resends a call that may have run
 * on one server to another only when the call is resendable (see
 * RpcClientOptions.resendable); streams without a name are all one server.
 */
export const PEER_NAME = Symbol('gvfs.rpc.peerName');
export type NamedStream = Duplex & { [PEER_NAME]?: string };

/** Dial attempts (with back-off, ~0.75 s in all) before calls fail when the server was never reached. */
const INITIAL_CONNECT_ATTEMPTS = 5;

export function tcpDialer(host: string, port: number, connectTimeoutMs = 10_000): Dialer {
  return () =>
    new Promise((resolve, reject) => {
      const s = directReadSocket({ host, port, noDelay: true });
      const t = setTimeout(() => {
        s.destroy();
        reject(new RpcError(`connect to ${host}:${port} timed out`, 'disconnected'));
      }, connectTimeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        s.setKeepAlive(true, 30_000);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(new RpcError(`connect to ${host}:${port}: ${e.message}`, 'disconnected'));
      });
    });
}

export interface RpcClientOptions {
  dial: Dialer;
  /** Calls on the wire at once; more wait in a queue (the window). */
  maxInFlight?: number;
  /** Per-call deadline including queueing and resends (ms). */
  timeoutMs?: number;
  /** Largest reply record accepted. */
  maxRecord?: number;
  /** Default credential for calls. */
  cred?: OpaqueAuth;
  /** Resend calls after a reconnect (false: fail them with 'disconnected'). */
  reconnect?: boolean;
  /** Runs on every new connection before queued calls are sent (e.g. a session proof). */
  onConnect?: (conn: { call: RpcClient['callOnConnection']; stream: Duplex }) => Promise<void>;
  /** Label for logs and errors. */
  name?: string;
  /**
   * Programs the server may call over this client's connections (reverse
   * direction, e.g. the callback model's RECALL). Absent: incoming calls
   * are ignored, as before.
   */
  callbacks?: ProgramTable;
  /**
   * Abandon a connection on which calls are outstanding and nothing at all
   * has arrived for this long (ms): a server that accepts and then answers
   * nothing, or a link that stopped forwarding. The stream is destroyed, so
   * the dialer is asked again (failover-dialer.ts then goes to the next
   * server) and the calls are resent there. Absent: only the per-call
   * deadline bounds a hung server.
   */
  stallMs?: number;
  /**
   * Whether a call that was sent to one server may be resent to ANOTHER
   * (a reconnect that reaches a differently named stream, PEER_NAME). The
   * same server's duplicate-request cache makes any resend to it safe; another
   * server has no record of the first, so a non-idempotent call that may have
   * run there fails with 'disconnected' instead of running twice. Default: every call may.
   */
  resendable?: (prog: number, vers: number, proc: number) => boolean;
}

interface Pending {
  xid: number;
  message: Buffer[];
  decode: (r: XdrReader) => unknown;
  resolve: (v: any) => void;
  reject: (e: Error) => void;
  /** When the call fails with 'timeout' (performance.now() ms: a clock that steps with the wall clock would move every deadline): checked by the client's sweep (RpcClient.sweep). */
  deadline: number;
  sent: boolean;
  /** Only for calls bound to one connection (handshakes): fail rather than resend. */
  pinned?: Duplex;
  prog: number;
  vers: number;
  proc: number;
  /** The server (PEER_NAME of the stream) it was last written to. */
  sentTo?: string;
  /** The caller takes a pooled reply record (CallOptions.lend). */
  lend?: (release: () => void) => void;
}

/**
 * A large reply read into a pooled buffer (direct reads): the caller of a
 * call made with `lend` gets `release` and gives the record back once
 * nothing refers to its bytes (a READ's data is on the next socket). Fresh
 * 1 MiB buffers per READ reply were most of a proxy hop's garbage
 * collection (a mark-compact per ~26 MiB read).
 */
const LENT_MIN = 64 * 1024;
const LENT_HELD = 16 << 20;

export interface CallOptions {
  cred?: OpaqueAuth;
  timeoutMs?: number;
  /**
   * Run (before the call resolves) with `release` when the reply's record
   * is a pooled buffer the decoded result may refer to: call it once nothing
   * does. Never called otherwise; a release never made leaves the buffer to
   * the garbage collector.
   */
  lend?: (release: () => void) => void;
}

/**
 * ONC RPC client over one stream: calls are pipelined (XID-matched replies in
 * any order) within a bounded window; a dropped stream is re-dialled and the
 * calls that were in flight are resent with their original XIDs (the server's
 * duplicate-request cache makes that safe for non-idempotent calls). Every
 * call has a deadline, so a dead server gives an error, never a hang.
 */
export class RpcClient {
  private stream?: Duplex;
  private connecting?: Promise<Duplex>;
  private ready = false;
  private readonly waiting: Pending[] = [];
  private readonly inflight = new Map<number, Pending>();
  private xid = (Math.random() * 0x7fff_ffff) >>> 0;
  private closed = false;
  private backoffMs = 50;
  private everConnected = false;
  /** When the connection was lost (for the "regained" line), and why. */
  private lost?: { at: number; reason: string };
  private lastError?: string;
  private firstAttempts = 0;
  readonly maxInFlight: number;
  readonly timeoutMs: number;
  cred: OpaqueAuth;
  /** Counters for tests and benchmarks. */
  readonly stats = {
    calls: 0,
    resends: 0,
    reconnects: 0,
    bytesOut: 0,
    bytesIn: 0,
    /** of bytesIn: read straight into a large reply's own buffer (TCP only) */ directBytesIn: 0,
    /** connections abandoned for silence (stallMs) */ stalls: 0,
    /** non-idempotent calls failed rather than resent to another server */ notResent: 0,
  };
  /** Last time bytes arrived, or a call left on an idle connection (the stall watchdog's clock). */
  private quietSince = Date.now();
  private watchdog?: NodeJS.Timeout;
  /** Reply records of `lend` calls (see LENT_MIN), and the one being filled now. */
  readonly lentRecords = new BufferPool(LENT_MIN, 64 << 20, LENT_HELD);
  private filling?: { xid: number; buf: Buffer };

  constructor(private readonly opts: RpcClientOptions) {
    this.maxInFlight = opts.maxInFlight ?? 32;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.cred = opts.cred ?? AUTH_NONE_BODY;
    const stall = opts.stallMs;
    if (stall !== undefined && stall > 0) {
      this.watchdog = setInterval(() => this.checkStall(stall), Math.max(25, Math.floor(stall / 4)));
      this.watchdog.unref();
    }
  }

  /** Calls outstanding on the current stream and silence for `stallMs`: the server or the link hung; drop the stream. */
  private checkStall(stallMs: number): void {
    const s = this.stream;
    if (!s || this.inflight.size === 0) return;
    const quietMs = Date.now() - this.quietSince;
    if (quietMs < stallMs) return;
    this.stats.stalls++;
    const peer = (s as NamedStream)[PEER_NAME] ?? this.label;
    log.warn({ peer, quietMs, inFlight: this.inflight.size }, `${this.label}: no answer from ${peer} for ${quietMs} ms with calls outstanding: connection abandoned`);
    this.lastError = `no answer for ${quietMs} ms`;
    s.destroy();
  }

  private nextXid(): number {
    this.xid = (this.xid + 1) >>> 0;
    return this.xid;
  }

  /** Make one call. The promise settles with the decoded result or an RpcError. */
  call<R>(
    prog: number,
    vers: number,
    proc: number,
    encodeArgs: (w: XdrWriter) => void,
    decode: (r: XdrReader) => R,
    opts: CallOptions = {},
  ): Promise<R> {
    return this.enqueue(prog, vers, proc, encodeArgs, decode, opts);
  }

  /** For onConnect hooks: a call bound to the given connection, sent ahead of the queue. */
  callOnConnection = <R>(
    prog: number,
    vers: number,
    proc: number,
    encodeArgs: (w: XdrWriter) => void,
    decode: (r: XdrReader) => R,
    opts: { cred?: OpaqueAuth; timeoutMs?: number; stream?: Duplex } = {},
  ): Promise<R> => this.enqueue(prog, vers, proc, encodeArgs, decode, { ...opts, pinned: true });

  private enqueue<R>(
    prog: number,
    vers: number,
    proc: number,
    encodeArgs: (w: XdrWriter) => void,
    decode: (r: XdrReader) => R,
    opts: CallOptions & { pinned?: boolean },
  ): Promise<R> {
    if (this.closed) return Promise.reject(new RpcError(`${this.label}: client closed`, 'closed'));
    const xid = this.nextXid();
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const w = new XdrWriter(256);
    encodeCallHeader(w, xid, prog, vers, proc, opts.cred ?? this.cred);
    encodeArgs(w);
    this.stats.calls++;
    return new Promise<R>((resolve, reject) => {
      const p: Pending = {
        xid,
        message: frameRecord(w.chunks()),
        decode,
        resolve,
        reject,
        sent: false,
        prog,
        vers,
        proc,
        lend: opts.lend,
        deadline: performance.now() + timeoutMs,
      };
      this.sweepWithin(timeoutMs);
      if (opts.pinned) {
        p.pinned = this.stream;
        this.inflight.set(xid, p);
        this.write(p);
        return;
      }
      this.waiting.push(p);
      this.pump();
    });
  }

  private get label(): string {
    return this.opts.name ?? 'rpc';
  }

  /**
   * Per-call deadlines are checked by one sweep timer instead of a timer per
   * call (a Timeout made and cleared for every call was a few per cent of a
   * proxy hop's CPU per metadata call). The sweep runs every eighth of the
   * shortest deadline outstanding (at most every second), so a call times out
   * at most that much late; it keeps the process alive while calls are
   * outstanding, as the per-call timers did, and stops when none are.
   */
  private sweeper?: { timer: NodeJS.Timeout; everyMs: number };

  private sweepWithin(timeoutMs: number): void {
    const everyMs = Math.max(1, Math.min(1000, Math.floor(timeoutMs / 8)));
    if (this.sweeper && this.sweeper.everyMs <= everyMs) return;
    if (this.sweeper) clearInterval(this.sweeper.timer);
    this.sweeper = { timer: setInterval(() => this.sweep(), everyMs), everyMs };
  }

  private sweep(): void {
    const now = performance.now();
    const late: Pending[] = [];
    for (const p of this.inflight.values()) if (p.deadline <= now) late.push(p);
    for (const p of this.waiting) if (p.deadline <= now) late.push(p);
    for (const p of late) this.fail(p, new RpcError(`${this.label}: call ${p.prog}/${p.vers}/${p.proc} timed out`, 'timeout'));
    if (this.pending === 0) this.stopSweep();
  }

  private stopSweep(): void {
    if (!this.sweeper) return;
    clearInterval(this.sweeper.timer);
    this.sweeper = undefined;
  }

  /** Wakes the connect loop from its back-off sleep (set while it sleeps). */
  private backoffWake?: () => void;

  /** The connect loop stops with nobody waiting: the next call that needs a connection starts afresh (a first dial at once, its own attempts and back-off). */
  private idle(e: unknown): unknown {
    this.connecting = undefined;
    this.firstAttempts = 0;
    this.backoffMs = 50;
    return e;
  }

  /** Calls that need a connection: queued, or on the wire and resendable on a new one (not pinned to the old). */
  private wanted(): boolean {
    if (this.waiting.length) return true;
    for (const p of this.inflight.values()) if (!p.pinned) return true;
    return false;
  }

  private fail(p: Pending, e: Error): void {
    if (this.inflight.get(p.xid) === p) this.inflight.delete(p.xid);
    const i = this.waiting.indexOf(p);
    if (i >= 0) this.waiting.splice(i, 1);
    p.reject(e);
    if (this.backoffWake && !this.wanted()) this.backoffWake();
    this.pump();
  }

  private pump(): void {
    if (this.closed) return;
    if (!this.stream || !this.ready) {
      if (this.waiting.length || this.inflight.size) void this.ensureConnected();
      return;
    }
    while (this.waiting.length && this.inflight.size < this.maxInFlight) {
      const p = this.waiting.shift()!;
      this.inflight.set(p.xid, p);
      this.write(p);
    }
  }

  private corked?: Duplex;

  /** Calls issued in one event-loop turn leave in one writev (cork now, uncork in setImmediate). */
  private write(p: Pending): void {
    const s = p.pinned ?? this.stream;
    if (!s) return;
    if (p.sent) this.stats.resends++;
    p.sent = true;
    p.sentTo = (s as NamedStream)[PEER_NAME];
    // The silence clock starts when a call goes out on an idle connection.
    if (this.inflight.size <= 1) this.quietSince = Date.now();
    if (this.corked !== s) {
      this.corked = s;
      s.cork();
      setImmediate(() => {
        if (this.corked === s) this.corked = undefined;
        s.uncork();
      });
    }
    for (const c of p.message) {
      s.write(c);
      this.stats.bytesOut += c.length;
    }
  }

  private ensureConnected(): Promise<Duplex> {
    if (this.connecting) return this.connecting;
    this.connecting = (async () => {
      for (;;) {
        if (this.closed) throw new RpcError(`${this.label}: client closed`, 'closed');
        try {
          const s = await this.opts.dial();
          this.attach(s);
          if (this.opts.onConnect) await this.opts.onConnect({ call: this.callOnConnection, stream: s });
          this.ready = true;
          this.everConnected = true;
          if (this.lost) {
            log.warn({ peer: this.label, downMs: Date.now() - this.lost.at, lostBecause: this.lost.reason }, `${this.label}: link regained`);
            this.lost = undefined;
          }
          this.backoffMs = 50;
          this.connecting = undefined;
          // Resend what was in flight on the old stream, then the queue; a non-idempotent call
          // that may have run on another server fails rather than run twice (RpcClientOptions.resendable).
          const peer = (s as NamedStream)[PEER_NAME];
          for (const p of [...this.inflight.values()]) {
            if (p.pinned) continue;
            if (p.sent && p.sentTo !== peer && this.opts.resendable && !this.opts.resendable(p.prog, p.vers, p.proc)) {
              this.stats.notResent++;
              log.warn({ xid: p.xid, prog: p.prog, proc: p.proc, from: p.sentTo, to: peer }, `${this.label}: non-idempotent call may have run on the server that stopped answering: failed, not resent to another`);
              this.fail(p, new RpcError(`${this.label}: call ${p.prog}/${p.vers}/${p.proc} may have run on ${p.sentTo}, which stopped answering; not resent to ${peer} (not idempotent)`, 'disconnected'));
              continue;
            }
            this.write(p);
          }
          this.pump();
          return s;
        } catch (e) {
          this.stream?.destroy();
          this.stream = undefined;
          this.ready = false;
          if (e instanceof RpcError && (e.kind === 'auth_error' || e.kind === 'wrong_channel')) {
            // Authentication (or the channel's kind) will not improve by retrying: fail everything waiting, and say why.
            log.error({ reason: e.message }, `${this.label}: refused: ${e.message}`);
            this.connecting = undefined;
            this.failAll(e);
            throw e;
          }
          if (!this.opts.reconnect && this.opts.reconnect !== undefined) {
            this.connecting = undefined;
            this.failAll(e as Error);
            throw e;
          }
          if (!this.wanted()) throw this.idle(e);
          // Never reached the server at all (wrong address, nothing listening): say so now rather
          // than at the call deadline. Once connected, drops are retried until the deadline.
          if (!this.everConnected && ++this.firstAttempts >= INITIAL_CONNECT_ATTEMPTS) {
            this.connecting = undefined;
            this.firstAttempts = 0;
            this.failAll(e as Error);
            throw e;
          }
          log.debug({ err: e, backoffMs: this.backoffMs }, `${this.label}: connect failed, retrying`);
          await new Promise<void>((r) => {
            const t = setTimeout(r, this.backoffMs).unref();
            this.backoffWake = () => {
              clearTimeout(t);
              r();
            };
          });
          this.backoffWake = undefined;
          this.backoffMs = Math.min(this.backoffMs * 2, 2000);
          // Every call that wanted the connection failed meanwhile: stop, so the next call dials at once
          // rather than after what is left of a back-off of up to 2 s (longer than a short deadline).
          if (!this.wanted()) throw this.idle(e);
        }
      }
    })();
    this.connecting.catch(() => undefined);
    return this.connecting;
  }

  /** Set when a stream turned out to speak another protocol (its first bytes); its close fails every call with it. */
  private readonly mismatch = new WeakMap<Duplex, RpcError>();

  private attach(s: Duplex): void {
    this.stream = s;
    this.ready = false;
    const decoder = new RecordDecoder((rec) => (isCallRecord(rec) ? this.onPeerCall(rec, s) : this.onReply(rec)), this.opts.maxRecord ?? (4 << 20));
    // A large reply to a call that lends: read into a pooled buffer (its XID is in the bytes that came with the header).
    decoder.directAlloc = (len, head) => {
      if (head.length < 4) return undefined;
      const xid = head.readUInt32BE(0);
      if (!this.inflight.get(xid)?.lend) return undefined;
      const buf = this.lentRecords.take(len);
      if (buf) this.filling = { xid, buf };
      return buf;
    };
    let first = true;
    this.quietSince = Date.now();
    const onChunk = (chunk: Buffer) => {
      this.stats.bytesIn += chunk.length;
      this.quietSince = Date.now();
      if (first) {
        first = false;
        const other = foreignProtocolOf(chunk);
        if (other) {
          this.mismatch.set(s, new RpcError(`${this.label}: the server answered in ${FOREIGN_PROTOCOL_NAME[other]}, not ONC RPC`, 'wrong_channel'));
          s.destroy();
          return;
        }
      }
      try {
        decoder.push(chunk);
      } catch (e) {
        log.error({ err: e }, `${this.label}: bad reply stream, closing`);
        s.destroy();
      }
    };
    const direct = directReaderOf(s);
    decoder.directReads = !!direct;
    if (direct)
      direct.attach(decoder, onChunk, (n) => {
        this.stats.bytesIn += n;
        this.quietSince = Date.now();
        this.stats.directBytesIn += n;
        decoder.directFilled(n);
      });
    else s.on('data', onChunk);
    s.on('error', (err) => {
      this.lastError = err.message;
      log.debug({ err }, `${this.label}: stream error`);
    });
    s.once('close', () => this.onClose(s));
  }

  private onClose(s: Duplex): void {
    if (this.stream !== s) return;
    this.stream = undefined;
    this.ready = false;
    const wrong = this.mismatch.get(s);
    // Calls pinned to this connection cannot be resent.
    for (const p of [...this.inflight.values()]) {
      if (p.pinned === s) this.fail(p, wrong ?? new RpcError(`${this.label}: connection closed`, 'disconnected'));
    }
    if (this.closed) return;
    if (wrong) {
      // Another protocol will not turn into RPC on a new connection.
      log.error({ reason: wrong.message }, wrong.message);
      this.failAll(wrong);
      return;
    }
    if (this.opts.reconnect === false) {
      this.failAll(new RpcError(`${this.label}: connection closed`, 'disconnected'));
      return;
    }
    this.stats.reconnects++;
    if (this.ready || this.everConnected) {
      // Once per outage: the next successful connect logs "link regained".
      if (!this.lost) {
        this.lost = { at: Date.now(), reason: this.lastError ?? 'closed by the peer' };
        log.warn({ peer: this.label, reason: this.lost.reason, inFlight: this.inflight.size }, `${this.label}: link lost; reconnecting when a call needs it`);
      }
    }
    this.lastError = undefined;
    if (this.inflight.size || this.waiting.length) void this.ensureConnected();
  }

  private failAll(e: Error): void {
    for (const p of [...this.inflight.values(), ...this.waiting]) this.fail(p, e);
  }

  /** Reverse calls answered (tests). */
  readonly callbackStats = { calls: 0, ignored: 0 };

  /** A CALL from the server on stream `s`: run it from the callback table and answer on the same stream. */
  private onPeerCall(rec: Buffer, s: Duplex): void {
    const table = this.opts.callbacks;
    if (!table) {
      this.callbackStats.ignored++;
      return;
    }
    this.callbackStats.calls++;
    const conn: ConnectionState = { id: 0, peer: { address: this.label, port: 0 }, data: new Map(), close: () => s.destroy() };
    dispatchPeerCall(table, rec, conn.peer, conn).then(
      (reply) => {
        if (!reply || s.destroyed || s !== this.stream) return; // the connection it came on is gone: the server re-asks
        for (const c of frameRecord(reply)) {
          s.write(c);
          this.stats.bytesOut += c.length;
        }
      },
      (e) => log.error({ err: e }, `${this.label}: reverse call failed`),
    );
  }

  private onReply(rec: Buffer): void {
    // The pooled buffer this record was read into, if it is one (a record of several fragments was gathered elsewhere).
    const f = this.filling;
    this.filling = undefined;
    const pooled = f && f.buf.buffer === rec.buffer && f.buf.byteOffset === rec.byteOffset ? f.buf : undefined;
    let lent = false;
    let d;
    try {
      d = decodeReply(rec);
    } catch (e) {
      log.warn({ err: e }, `${this.label}: undecodable reply dropped`);
      return;
    }
    const p = this.inflight.get(d.xid);
    if (!p) {
      if (pooled) this.lentRecords.give(pooled); // late reply to a timed-out call, or a duplicate: nobody saw it
      return;
    }
    this.inflight.delete(d.xid);
    try {
      switch (d.kind) {
        case 'success': {
          const v = p.decode(d.body);
          if (pooled && p.lend) {
            lent = true;
            // Once only: a second call after the record was handed out again would free it under its new holder.
            let given = false;
            p.lend(() => {
              if (given) return;
              given = true;
              this.lentRecords.give(pooled);
            });
          }
          p.resolve(v);
          break;
        }
        case 'accepted_error':
          p.reject(new RpcError(`${this.label}: ${acceptName(d.stat)}`, acceptKind(d.stat), d.stat));
          break;
        case 'rpc_mismatch':
          p.reject(new RpcError(`${this.label}: RPC version mismatch (${d.low}-${d.high})`, 'rpc_mismatch'));
          break;
        case 'auth_error':
          p.reject(new RpcError(`${this.label}: authentication error ${d.stat}`, 'auth_error', d.stat));
          break;
      }
    } catch (e) {
      p.reject(new RpcError(`${this.label}: undecodable result: ${(e as Error).message}`, 'bad_reply'));
    }
    // Not handed to the caller (an error reply, an undecodable one): nothing refers to it.
    if (pooled && !lent) this.lentRecords.give(pooled);
    this.pump();
  }

  /** Calls waiting or on the wire. */
  get pending(): number {
    return this.inflight.size + this.waiting.length;
  }

  /** Drop the current connection (tests: simulate a network failure). */
  dropConnection(): void {
    this.stream?.destroy();
  }

  close(): void {
    this.closed = true;
    if (this.watchdog) clearInterval(this.watchdog);
    this.failAll(new RpcError(`${this.label}: client closed`, 'closed'));
    this.stopSweep();
    this.stream?.destroy();
  }
}

function acceptKind(stat: AcceptStat): RpcError['kind'] {
  switch (stat) {
    case AcceptStat.PROG_UNAVAIL:
      return 'prog_unavail';
    case AcceptStat.PROG_MISMATCH:
      return 'prog_mismatch';
    case AcceptStat.PROC_UNAVAIL:
      return 'proc_unavail';
    case AcceptStat.GARBAGE_ARGS:
      return 'garbage_args';
    default:
      return 'system_err';
  }
}

function acceptName(stat: AcceptStat): string {
  return ['SUCCESS', 'PROG_UNAVAIL', 'PROG_MISMATCH', 'PROC_UNAVAIL', 'GARBAGE_ARGS', 'SYSTEM_ERR'][stat] ?? `accept_stat ${stat}`;
}
