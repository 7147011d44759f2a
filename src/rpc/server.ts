import net from 'node:net';
import { crc32 } from 'node:zlib';
import { XdrError, XdrWriter } from '../xdr/index.js';
import { decodeAuthSys } from './auth.js';
import { DuplicateRequestCache } from './drc.js';
import {
  decodeCall,
  encodeAcceptedReply,
  encodeAuthError,
  encodeProgMismatch,
  encodeRpcMismatch,
} from './message.js';
import type { CallContext, ConnectionState, Procedure, ProgramTable } from './program.js';
import { frameRecord, RecordDecoder, RecordTooLargeError } from './record.js';
import { AcceptStat, AuthFlavor, AuthStat, type CallHeader, type Credentials, RpcError } from './types.js';
import { logger } from '../util/log.js';

const log = logger('rpc');

/** Every network-facing limit of the RPC server, explicit and overridable. */
export interface RpcServerLimits {
  /** Largest record accepted (bytes); a larger one closes the connection. */
  maxRecord: number;
  /** Calls executing at once per connection; reading pauses at the cap. */
  maxInFlight: number;
  /** Concurrent connections; more are refused (closed at once). */
  maxConnections: number;
  /** Concurrent connections from one peer address. */
  maxConnectionsPerPeer: number;
  /** A record started but not finished within this time closes the connection (ms). */
  partialRecordTimeoutMs: number;
  /** A connection with nothing in flight and no traffic for this long is closed (ms). */
  idleTimeoutMs: number;
  /** Bytes of replies queued in the socket before reading pauses. */
  maxQueuedReplyBytes: number;
}

export const DEFAULT_LIMITS: RpcServerLimits = {
  maxRecord: (1 << 20) + 64 * 1024,
  maxInFlight: 64,
  maxConnections: 512,
  maxConnectionsPerPeer: 128,
  partialRecordTimeoutMs: 30_000,
  idleTimeoutMs: 15 * 60_000,
  maxQueuedReplyBytes: 8 << 20,
};

/**
 * Decides who a call is. Returns credentials, or an auth_stat to refuse
 * with. The default accepts AUTH_NONE (as the anonymous user) and AUTH_SYS.
 */
export type Authenticator = (call: CallHeader, conn: ConnectionState, proc: Procedure) => Credentials | AuthStat;

export const ANONYMOUS_UID = 65534;

export function defaultAuthenticator(call: CallHeader, _conn: ConnectionState, proc: Procedure): Credentials | AuthStat {
  if (call.cred.flavor === AuthFlavor.AUTH_SYS) {
    try {
      const a = decodeAuthSys(call.cred.body);
      return { flavor: AuthFlavor.AUTH_SYS, uid: a.uid, gid: a.gid, gids: a.gids, machine: a.machine };
    } catch {
      return AuthStat.AUTH_BADCRED;
    }
  }
  if (call.cred.flavor === AuthFlavor.AUTH_NONE) {
    if (proc.needsCred) return AuthStat.AUTH_TOOWEAK;
    return { flavor: AuthFlavor.AUTH_NONE, uid: ANONYMOUS_UID, gid: ANONYMOUS_UID, gids: [] };
  }
  return AuthStat.AUTH_REJECTEDCRED;
}

export interface RpcServerOptions {
  programs: ProgramTable;
  limits?: Partial<RpcServerLimits>;
  authenticate?: Authenticator;
  drc?: DuplicateRequestCache;
  /** A connection must satisfy `done` within `timeoutMs` of opening (e.g. prove a session key) or be closed. */
  handshake?: { timeoutMs: number; done: (conn: ConnectionState) => boolean };
  /**
   * Whether to serve a connection the listener accepted (e.g. who owns the
   * peer socket). Nothing is read from the socket until it settles; false
   * (or a rejection) closes it.
   */
  admit?: (s: net.Socket) => Promise<boolean>;
}

export interface RpcServerStats {
  connections: number;
  calls: number;
  callsByProc: Map<string, number>;
  refused: number;
  drcHits: number;
}

/**
 * ONC RPC server over TCP: frames records, decodes call headers, checks
 * credentials, routes through the program table and writes replies as
 * calls complete (out of order). Many calls run at once per connection,
 * up to `maxInFlight`, after which the socket is paused.
 */
export class RpcServer {
  readonly limits: RpcServerLimits;
  readonly programs: ProgramTable;
  readonly drc: DuplicateRequestCache;
  readonly handshake?: RpcServerOptions['handshake'];
  private readonly authenticate: Authenticator;
  private readonly server: net.Server;
  private readonly conns = new Set<Connection>();
  private readonly perPeer = new Map<string, number>();
  private nextConnId = 1;
  readonly stats: RpcServerStats = { connections: 0, calls: 0, callsByProc: new Map(), refused: 0, drcHits: 0 };

  constructor(opts: RpcServerOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.programs = opts.programs;
    this.authenticate = opts.authenticate ?? defaultAuthenticator;
    this.drc = opts.drc ?? new DuplicateRequestCache();
    this.handshake = opts.handshake;
    const admit = opts.admit;
    this.server = net.createServer({ noDelay: true, pauseOnConnect: !!admit }, (s) => {
      if (!admit) return this.accept(s);
      s.on('error', () => undefined);
      admit(s).then(
        (ok) => (ok && !s.destroyed ? (this.accept(s), s.resume()) : (this.stats.refused++, s.destroy())),
        () => (this.stats.refused++, s.destroy()),
      );
    });
    this.server.on('error', (err) => log.error({ err }, 'listener error'));
  }

  listen(port: number, host = '127.0.0.1'): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onErr = (e: Error) => reject(e);
      this.server.once('error', onErr);
      this.server.listen(port, host, () => {
        this.server.off('error', onErr);
        const a = this.server.address() as net.AddressInfo;
        resolve({ address: a.address, port: a.port });
      });
    });
  }

  address(): { address: string; port: number } {
    const a = this.server.address() as net.AddressInfo;
    return { address: a.address, port: a.port };
  }

  /** Serve an already-connected stream (a tunnel channel, a TLS socket). */
  acceptStream(s: net.Socket): void {
    this.accept(s);
  }

  private accept(s: net.Socket): void {
    const peer = { address: s.remoteAddress ?? 'local', port: s.remotePort ?? 0 };
    const n = this.perPeer.get(peer.address) ?? 0;
    if (this.conns.size >= this.limits.maxConnections || n >= this.limits.maxConnectionsPerPeer) {
      this.stats.refused++;
      log.warn({ peer, open: this.conns.size }, 'connection refused: limit reached');
      s.destroy();
      return;
    }
    this.perPeer.set(peer.address, n + 1);
    this.stats.connections++;
    const c = new Connection(this, s, this.nextConnId++, peer);
    this.conns.add(c);
    s.once('close', () => {
      this.conns.delete(c);
      const left = (this.perPeer.get(peer.address) ?? 1) - 1;
      if (left <= 0) this.perPeer.delete(peer.address);
      else this.perPeer.set(peer.address, left);
    });
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** Stop listening, close every connection. */
  async close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Run one call; returns the encoded reply message (not yet framed), or undefined to send nothing. */
  async dispatch(record: Buffer, conn: ConnectionState): Promise<Buffer[] | undefined> {
    const d = decodeCall(record);
    const w = new XdrWriter();
    if (!d.ok) {
      if (d.reason === 'not_call') return undefined; // a reply sent to a server: ignore
      if (d.reason === 'rpc_mismatch') encodeRpcMismatch(w, d.xid);
      else encodeAcceptedReply(w, d.xid, AcceptStat.GARBAGE_ARGS);
      return w.chunks();
    }
    const { call, args } = d;
    this.stats.calls++;
    const pv = this.programs.lookup(call.prog, call.vers);
    if ('missing' in pv) {
      if (pv.missing === 'prog') encodeAcceptedReply(w, call.xid, AcceptStat.PROG_UNAVAIL);
      else encodeProgMismatch(w, call.xid, pv.low, pv.high);
      return w.chunks();
    }
    const proc = pv.procedures[call.proc];
    if (!proc) {
      encodeAcceptedReply(w, call.xid, AcceptStat.PROC_UNAVAIL);
      return w.chunks();
    }
    const key = `${pv.name}.${proc.name}`;
    log.debug({ xid: call.xid, proc: key, conn: conn.id }, 'call');
    this.stats.callsByProc.set(key, (this.stats.callsByProc.get(key) ?? 0) + 1);
    const cred = this.authenticate(call, conn, proc);
    if (typeof cred === 'number') {
      encodeAuthError(w, call.xid, cred);
      return w.chunks();
    }
    let decoded: unknown;
    try {
      decoded = proc.decode(args);
      args.end();
    } catch (e) {
      if (!(e instanceof XdrError)) log.error({ err: e, proc: key }, 'argument decoder failed');
      encodeAcceptedReply(w, call.xid, AcceptStat.GARBAGE_ARGS);
      return w.chunks();
    }
    const ctx: CallContext = { call, cred, peer: conn.peer, conn };
    if (proc.idempotent) return this.execute(proc, decoded, ctx, key);
    // Non-idempotent: consult the duplicate-request cache.
    const drcKey = `${conn.peer.address}|${call.prog}|${call.vers}|${call.proc}|${call.xid}|${crc32(record)}`;
    const hit = this.drc.get(drcKey);
    if (hit) {
      this.stats.drcHits++;
      log.debug({ xid: call.xid, proc: key }, 'duplicate request answered from cache');
      return hit;
    }
    const run = this.execute(proc, decoded, ctx, key);
    this.drc.begin(drcKey, run);
    return run;
  }

  private async execute(proc: Procedure, args: unknown, ctx: CallContext, key: string): Promise<Buffer[] | undefined> {
    const w = new XdrWriter();
    try {
      const res = await proc.handle(args, ctx);
      encodeAcceptedReply(w, ctx.call.xid, AcceptStat.SUCCESS);
      proc.encode(w, res);
      return w.chunks();
    } catch (e) {
      const w2 = new XdrWriter();
      if (e instanceof RpcError && e.kind === 'garbage_args') {
        encodeAcceptedReply(w2, ctx.call.xid, AcceptStat.GARBAGE_ARGS);
      } else if (e instanceof RpcError && e.kind === 'auth_error') {
        encodeAuthError(w2, ctx.call.xid, e.detail ?? AuthStat.AUTH_FAILED);
      } else {
        log.error({ err: e, proc: key }, 'procedure failed: replying SYSTEM_ERR');
        encodeAcceptedReply(w2, ctx.call.xid, AcceptStat.SYSTEM_ERR);
      }
      return w2.chunks();
    }
  }
}

/** One client connection: framing, flow control, timers. Dispatch is the server's. */
class Connection implements ConnectionState {
  readonly data = new Map<string, unknown>();
  private readonly decoder: RecordDecoder;
  private inFlight = 0;
  private paused = false;
  private closed = false;
  private partialTimer?: NodeJS.Timeout;
  private idleTimer?: NodeJS.Timeout;

  constructor(
    private readonly server: RpcServer,
    private readonly sock: net.Socket,
    readonly id: number,
    readonly peer: { address: string; port: number },
  ) {
    this.decoder = new RecordDecoder((r) => this.onRecord(r), server.limits.maxRecord);
    sock.on('data', (chunk) => this.onData(chunk));
    sock.on('error', (err) => log.debug({ err, peer }, 'connection error'));
    sock.on('close', () => {
      this.closed = true;
      clearTimeout(this.partialTimer);
      clearTimeout(this.idleTimer);
    });
    sock.on('drain', () => this.updateFlow());
    this.armIdle();
    const hs = server.handshake;
    if (hs) {
      const t = setTimeout(() => {
        if (!hs.done(this)) {
          log.warn({ peer }, 'no session proof within the handshake timeout: closing connection');
          this.sock.destroy();
        }
      }, hs.timeoutMs);
      t.unref();
      sock.once('close', () => clearTimeout(t));
    }
  }

  destroy(): void {
    this.sock.destroy();
  }

  /** End the connection once the replies written in this turn have gone out. */
  close(): void {
    setImmediate(() => this.sock.end());
  }

  private onData(chunk: Buffer): void {
    try {
      this.decoder.push(chunk);
    } catch (e) {
      if (e instanceof RecordTooLargeError) log.warn({ peer: this.peer, size: e.size, max: e.max }, 'record too large: closing connection');
      else log.error({ err: e }, 'framing error: closing connection');
      this.sock.destroy();
      return;
    }
    this.armPartial();
    this.armIdle();
  }

  private armPartial(): void {
    if (this.decoder.partial) {
      if (!this.partialTimer) {
        this.partialTimer = setTimeout(() => {
          log.warn({ peer: this.peer, buffered: this.decoder.buffered }, 'partial record stalled: closing connection');
          this.sock.destroy();
        }, this.server.limits.partialRecordTimeoutMs);
        this.partialTimer.unref();
      }
    } else if (this.partialTimer) {
      clearTimeout(this.partialTimer);
      this.partialTimer = undefined;
    }
  }

  private armIdle(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.inFlight === 0) {
        log.debug({ peer: this.peer }, 'idle connection closed');
        this.sock.end();
      } else this.armIdle();
    }, this.server.limits.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private onRecord(record: Buffer): void {
    this.inFlight++;
    this.updateFlow();
    this.server.dispatch(record, this).then(
      (reply) => this.send(reply),
      (err) => {
        log.error({ err }, 'dispatch failed');
        this.send(undefined);
      },
    );
  }

  private corked = false;

  /**
   * Replies completed in the same event-loop turn leave in one writev: the
   * socket is corked at the first and uncorked once the turn's I/O
   * callbacks have run (setImmediate), costing no latency.
   */
  private send(reply: Buffer[] | undefined): void {
    this.inFlight--;
    if (reply && !this.closed) {
      if (!this.corked) {
        this.corked = true;
        this.sock.cork();
        setImmediate(() => {
          this.corked = false;
          this.sock.uncork();
        });
      }
      for (const c of frameRecord(reply)) this.sock.write(c);
    }
    this.updateFlow();
  }

  /** Pause reading while too many calls run or too many reply bytes are queued; resume below. */
  private updateFlow(): void {
    if (this.closed) return;
    const over = this.inFlight >= this.server.limits.maxInFlight || this.sock.writableLength > this.server.limits.maxQueuedReplyBytes;
    if (over && !this.paused) {
      this.paused = true;
      this.sock.pause();
    } else if (!over && this.paused) {
      this.paused = false;
      this.sock.resume();
    }
  }
}
