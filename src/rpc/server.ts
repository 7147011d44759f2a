import net from 'node:net';
import { crc32 } from 'node:zlib';
import { XdrError, type XdrReader, XdrWriter } from '../xdr/index.js';
import { isReplyRecord, PeerCalls } from './peer-call.js';
import { decodeAuthSys } from './auth.js';
import { DuplicateRequestCache } from './drc.js';
import {
  encodeAcceptedReply,
  encodeAuthError,
} from './message.js';
import { type CallContext, type ConnectionState, garbageArgs, type Procedure, type ProgramTable, type ProgramVersion, type ReplyChunks, routeCall } from './program.js';
import { frameRecord, RecordDecoder, RecordTooLargeError } from './record.js';
import { directReadAccepted, directReaderOf } from './direct-read.js';
import { AcceptStat, AuthFlavor, AuthStat, type CallHeader, type Credentials, RpcError } from './types.js';
import { BufferPool } from '../util/buffer-pool.js';
import { logger } from '../util/log.js';
import type { Logger } from 'pino';

const log = logger('rpc');

/** Every network-facing limit of the RPC server, explicit and overridable. */
export interface RpcServerLimits {
  /** Largest record accepted (bytes); a larger one closes the connection. */
  maxRecord: number;
  /** Calls executing at once per connection; reading pauses at the cap. */
  maxInFlight: number;
  /**
   * Concurrent admitted connections; more are refused (closed at once). With
   * a handshake (session proof), only proven connections count here: a
   * connection is admitted when it has proved, and refused then if full.
   */
  maxConnections: number;
  /** Concurrent admitted connections from one peer address (proven ones only, with a handshake). */
  maxConnectionsPerPeer: number;
  /**
   * Connections accepted but not yet through the transport upgrade (TLS) and
   * the handshake (session proof), counted from accept. When full, the
   * oldest of them is dropped to make room; a proven connection never is.
   * Used only when the server has a transport upgrade or a handshake.
   */
  maxUnproven: number;
  /** A record started but not finished within this time closes the connection (ms). */
  partialRecordTimeoutMs: number;
  /** A connection with nothing in flight and no traffic for this long is closed (ms). */
  idleTimeoutMs: number;
  /**
   * Bytes of replies queued in the socket before no new call is started and
   * reading pauses. With maxInFlight this bounds a connection's memory:
   * about maxInFlight × (largest reply) + maxQueuedReplyBytes + one socket
   * chunk of undecoded requests, whatever the peer sends and never reads.
   */
  maxQueuedReplyBytes: number;
}

export const DEFAULT_LIMITS: RpcServerLimits = {
  maxRecord: (1 << 20) + 64 * 1024,
  maxInFlight: 64,
  maxConnections: 512,
  maxConnectionsPerPeer: 128,
  maxUnproven: 64,
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
  /** A connection must satisfy `done` within `timeoutMs` of its accept (e.g. prove a session key) or be closed. */
  handshake?: {
    timeoutMs: number;
    done: (conn: ConnectionState) => boolean;
    /** Fields of every later log line about the proven connection (the proxy server's: its session). */
    describe?: (conn: ConnectionState) => Record<string, unknown>;
  };
  /**
   * Whether to serve a connection the listener accepted (e.g. who owns the
   * peer socket). Nothing is read from the socket until it settles; false
   * (or a rejection) closes it.
   */
  admit?: (s: net.Socket) => Promise<boolean>;
  /** Run on every accepted socket before RPC starts (the TLS handshake); must finish within its timeout of accept. */
  transport?: TransportUpgrade;
}

/** Turns an accepted TCP socket into the stream RPC runs on (channel/tls.ts: the TLS handshake). */
export interface TransportUpgrade {
  /** For logs ("TLS"). */
  readonly name: string;
  /** The upgrade must be done within this time of accept (ms). */
  readonly timeoutMs: number;
  upgrade(raw: net.Socket): Promise<net.Socket>;
}

/**
 * Watches finished calls (metrics/rpc.ts). Called once per call that named
 * a known procedure, on the hot path: it must not throw and should not
 * allocate beyond its own bookkeeping.
 */
export interface RpcObserver {
  /**
   * `key` is "program.procedure" (the string the server already builds);
   * `ms` the time from decoded arguments to encoded reply; `accept` the
   * AcceptStat of the reply, or AUTH_REFUSED when the call was refused
   * with an auth error; `result` the handler's result on SUCCESS (an NFS
   * status lives in it).
   */
  call(key: string, ms: number, accept: number, result: unknown): void;
}

/** RpcObserver.call's `accept` for a call refused with an auth error (not an AcceptStat). */
export const AUTH_REFUSED = -1;

/** Why a connection was refused or dropped: the limit (RpcServerLimits) or check that did it. */
export type RefusalReason = 'maxConnections' | 'maxConnectionsPerPeer' | 'admit' | 'maxUnproven' | 'handshakeTimeout';

export interface RpcServerStats {
  connections: number;
  calls: number;
  callsByProc: Map<string, number>;
  refused: number;
  drcHits: number;
  /** Unproven connections dropped to make room for a newer one (maxUnproven). */
  unprovenDropped: number;
  /** Unproven connections closed because the transport upgrade or the handshake did not finish in time. */
  unprovenTimedOut: number;
  /** Refusals and drops by the limit or check that did them (`refused` counts the first three). */
  refusedBy: Record<RefusalReason, number>;
  /** Bytes of the RPC stream read from and written to clients (inside TLS when there is TLS). */
  bytesIn: number;
  /** Of bytesIn: read straight into a large call's pooled record (plain TCP, admitted connections). */
  directBytesIn: number;
  bytesOut: number;
}

/**
 * Bytes of a record the duplicate-request cache checksums, from its start
 * (header, credentials, and the arguments' handles, offsets and counts),
 * with the record's length: like Linux knfsd (RC_CSUMLEN), a 1 MiB WRITE
 * is not checksummed whole on every call. The key also holds the peer,
 * program, procedure and xid, so two different calls only share an entry
 * if one client reused an xid for a same-sized call whose first bytes match.
 */
export const DRC_CHECKSUM_BYTES = 512;

export function drcChecksum(record: Buffer): string {
  const head = record.length <= DRC_CHECKSUM_BYTES ? record : record.subarray(0, DRC_CHECKSUM_BYTES);
  return `${record.length}.${crc32(head)}`;
}

/** "prog.PROC" per procedure of a program version, built once (it names the call in stats and logs). */
const procKeys = new WeakMap<ProgramVersion, string[]>();
function procKey(pv: ProgramVersion, n: number, proc: Procedure): string {
  let keys = procKeys.get(pv);
  if (!keys) procKeys.set(pv, (keys = []));
  return (keys[n] ??= `${pv.name}.${proc.name}`);
}

/** Records this large and up are gathered into the server's pool (RpcServer.records); free ones kept at most. */
const RECORD_POOL_MIN = 64 * 1024;
const RECORD_POOL_HELD = 16 << 20;

/**
 * Bytes of large fragments allocated when their header arrived and not yet
 * read in full, over all connections (direct reads): a peer can announce a
 * length and send nothing. Past it a fragment is read the ordinary way, its
 * memory then growing only with the bytes that came.
 */
const DIRECT_AHEAD_MAX = 32 << 20;

/** How long a connection closed by the server (close()) may take to deliver its last replies before it is destroyed (ms). */
const CLOSE_LINGER_MS = 5_000;

/** A connection between accept and proof (transport upgrade, then handshake). */
interface Unproven {
  readonly id: number;
  readonly peer: { address: string; port: number };
  readonly raw: net.Socket;
  conn?: Connection;
  timers: NodeJS.Timeout[];
  gone: boolean;
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
  readonly transport?: TransportUpgrade;
  private readonly authenticate: Authenticator;
  private readonly server: net.Server;
  private readonly conns = new Set<Connection>();
  /**
   * Every accepted TCP socket until it closes. A connection's own stream may
   * be a TLS socket over it: destroying that does not close the TCP socket
   * the listener counts, so close() ends these too (else it waits forever).
   */
  private readonly raw = new Set<net.Socket>();
  /** Admitted connections per peer address (proven ones, with a handshake). */
  private readonly perPeer = new Map<string, number>();
  private admitted = 0;
  /** Connections not yet proven, in accept order (the first is the oldest). */
  private readonly unproven = new Map<number, Unproven>();
  private nextConnId = 1;
  readonly stats: RpcServerStats = {
    connections: 0,
    calls: 0,
    callsByProc: new Map(),
    refused: 0,
    drcHits: 0,
    unprovenDropped: 0,
    unprovenTimedOut: 0,
    refusedBy: { maxConnections: 0, maxConnectionsPerPeer: 0, admit: 0, maxUnproven: 0, handshakeTimeout: 0 },
    bytesIn: 0,
    directBytesIn: 0,
    bytesOut: 0,
  };
  /** Sees every finished call (metrics); set it before traffic. */
  observer?: RpcObserver;
  /**
   * Buffers for records gathered from several socket chunks (a 1 MiB
   * WRITE arrives in sixteen), used again after a call that lends its
   * arguments (Procedure.lendsArgs): fresh 1 MiB buffers were most of a
   * WRITE's garbage collection and page faults.
   */
  readonly records: BufferPool;
  /** Bytes allocated for large fragments ahead of their data (at most DIRECT_AHEAD_MAX). */
  directAhead = 0;

  constructor(opts: RpcServerOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.records = new BufferPool(RECORD_POOL_MIN, this.limits.maxRecord, RECORD_POOL_HELD);
    this.programs = opts.programs;
    this.authenticate = opts.authenticate ?? defaultAuthenticator;
    this.drc = opts.drc ?? new DuplicateRequestCache();
    this.handshake = opts.handshake;
    this.transport = opts.transport;
    const admit = opts.admit;
    // Records over plain TCP are read with aimed reads (direct-read.ts), which a socket takes only before it has read.
    const aimed = !this.transport;
    this.server = net.createServer({ noDelay: true, pauseOnConnect: !!admit || aimed }, (accepted) => {
      const s = aimed ? directReadAccepted(accepted) : accepted;
      this.raw.add(s);
      s.once('close', () => this.raw.delete(s));
      if (!admit) {
        this.accept(s);
        if (aimed) s.resume();
        return;
      }
      s.on('error', () => undefined);
      admit(s).then(
        (ok) => (ok && !s.destroyed ? (this.accept(s), s.resume()) : (this.stats.refused++, this.stats.refusedBy.admit++, s.destroy())),
        () => (this.stats.refused++, this.stats.refusedBy.admit++, s.destroy()),
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

  /**
   * Accept hook. Without a handshake or transport upgrade a connection is
   * admitted at once (maxConnections, maxConnectionsPerPeer). Otherwise it
   * is unproven until `handshake.done` holds: it takes a slot of its own
   * (maxUnproven; the oldest is dropped when full), both deadlines run from
   * now, and it is admitted, or refused by the admitted limits, once proven.
   * So unproven connections never take the slots of proven ones.
   */
  private accept(s: net.Socket): void {
    const peer = { address: s.remoteAddress ?? 'local', port: s.remotePort ?? 0 };
    const id = this.nextConnId++;
    if (!this.handshake && !this.transport) {
      if (!this.admit(peer)) {
        s.destroy();
        return;
      }
      this.open(s, id, peer, true);
      return;
    }
    this.stats.connections++;
    if (this.unproven.size >= this.limits.maxUnproven) {
      const oldest = this.unproven.values().next().value as Unproven;
      this.stats.unprovenDropped++;
      this.stats.refusedBy.maxUnproven++;
      log.warn({ peer: oldest.peer, reason: 'maxUnproven', unproven: this.unproven.size, max: this.limits.maxUnproven }, 'unproven connections at their limit: dropping the oldest');
      this.dropUnproven(oldest);
    }
    const acceptedAt = Date.now();
    const u: Unproven = { id, peer, raw: s, timers: [], gone: false };
    this.unproven.set(id, u);
    s.once('close', () => {
      // A client that refuses our TLS certificate (another pinned fingerprint) ends here, during or just after the handshake.
      if (!u.gone) log.warn({ peer, afterMs: Date.now() - acceptedAt, stage: this.stage(u) }, 'connection closed by the peer before it was proven');
      this.dropUnproven(u);
    });
    s.on('error', (err) => log.debug({ err, peer }, 'connection error before proof'));
    const deadline = (ms: number, what: string, pending: () => boolean) => {
      const t = setTimeout(() => {
        if (u.gone || !pending()) return;
        this.stats.unprovenTimedOut++;
        this.stats.refusedBy.handshakeTimeout++;
        log.warn({ peer, ms, reason: 'handshakeTimeout' }, `${what} not finished within ${ms} ms of accept: closing connection`);
        this.dropUnproven(u);
      }, ms);
      t.unref();
      u.timers.push(t);
    };
    const tr = this.transport;
    if (tr) deadline(tr.timeoutMs, `${tr.name} handshake`, () => !u.conn);
    if (this.handshake) deadline(this.handshake.timeoutMs, 'session proof', () => true);
    if (!tr) {
      u.conn = this.open(s, id, peer, false);
      return;
    }
    tr.upgrade(s).then(
      (stream) => {
        if (u.gone) {
          stream.destroy();
          return;
        }
        u.conn = this.open(stream, id, peer, false);
        if (!this.handshake) this.promote(u.conn);
      },
      (err: Error) => {
        if (!u.gone) log.warn({ peer, reason: err.message }, `${tr.name} handshake failed: closing connection`);
        this.dropUnproven(u);
      },
    );
  }

  private stage(u: Unproven): string {
    const tr = this.transport;
    if (tr && !u.conn) return `${tr.name} handshake (a client that refuses our certificate closes here)`;
    return tr ? `handshake after ${tr.name} (a client that refuses our certificate may close here)` : 'handshake';
  }

  /** Take an admitted slot for `peer`, or refuse (logged). */
  private admit(peer: { address: string; port: number }): boolean {
    const n = this.perPeer.get(peer.address) ?? 0;
    if (this.admitted >= this.limits.maxConnections || n >= this.limits.maxConnectionsPerPeer) {
      const reason: RefusalReason = this.admitted >= this.limits.maxConnections ? 'maxConnections' : 'maxConnectionsPerPeer';
      this.stats.refused++;
      this.stats.refusedBy[reason]++;
      log.warn({ peer, reason, open: this.admitted, fromPeer: n, max: this.limits[reason] }, `connection refused: limit reached (${reason})`);
      return false;
    }
    this.perPeer.set(peer.address, n + 1);
    this.admitted++;
    return true;
  }

  private release(peer: { address: string; port: number }): void {
    this.admitted--;
    const left = (this.perPeer.get(peer.address) ?? 1) - 1;
    if (left <= 0) this.perPeer.delete(peer.address);
    else this.perPeer.set(peer.address, left);
  }

  private open(s: net.Socket, id: number, peer: { address: string; port: number }, admitted: boolean): Connection {
    if (admitted) this.stats.connections++;
    const c = new Connection(this, s, id, peer, admitted);
    this.conns.add(c);
    s.once('close', () => {
      this.conns.delete(c);
      if (c.admitted) this.release(peer);
    });
    return c;
  }

  private dropUnproven(u: Unproven): void {
    if (u.gone) return;
    u.gone = true;
    this.unproven.delete(u.id);
    for (const t of u.timers) clearTimeout(t);
    u.conn?.destroy();
    u.raw.destroy();
  }

  /** Called by a connection when the handshake has been satisfied: it leaves the unproven pool and is admitted (or refused). */
  promote(c: Connection): void {
    const u = this.unproven.get(c.id);
    if (!u || u.conn !== c) return;
    this.unproven.delete(c.id);
    for (const t of u.timers) clearTimeout(t);
    u.gone = true; // out of the pool for good
    const fields = this.handshake?.describe?.(c);
    if (fields) c.log = log.child(fields);
    if (!this.admit(c.peer)) {
      c.close();
      return;
    }
    c.admit();
    c.log.info({ peer: c.peer }, 'connection proven');
    c.onClose(() => c.log.info({ peer: c.peer }, 'proven connection closed'));
  }

  /** True while `c` has not passed the handshake (used by connections after each call). */
  isUnproven(c: Connection): boolean {
    return this.unproven.get(c.id)?.conn === c;
  }

  /** Connections past the handshake (a proved session), for reverse calls to a given peer. */
  *provenConnections(): Iterable<ConnectionState> {
    for (const c of this.conns) if (!this.isUnproven(c)) yield c;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** Connections accepted and not yet proven (including those still in the transport upgrade). */
  get unprovenCount(): number {
    return this.unproven.size;
  }

  /** Stop listening, close every connection. */
  async close(): Promise<void> {
    for (const u of [...this.unproven.values()]) this.dropUnproven(u);
    for (const c of this.conns) c.destroy();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.raw) s.destroy();
    await closed;
  }

  /** Run one call; returns the encoded reply message (not yet framed), or undefined to send nothing. */
  async dispatch(record: Buffer, conn: ConnectionState): Promise<ReplyChunks | undefined> {
    const routed = routeCall(this.programs, record);
    if ('refusal' in routed) {
      if (routed.call) this.stats.calls++;
      return routed.refusal;
    }
    const { call, args, version: pv, proc } = routed;
    this.stats.calls++;
    // Only refusals are encoded here; a call that runs gets its writer in execute().
    const w = new XdrWriter(64);
    const key = procKey(pv, call.proc, proc);
    if (log.isLevelEnabled('debug')) log.debug({ xid: call.xid, proc: key, conn: conn.id }, 'call');
    this.stats.callsByProc.set(key, (this.stats.callsByProc.get(key) ?? 0) + 1);
    const cred = this.authenticate(call, conn, proc);
    if (typeof cred === 'number') {
      this.observer?.call(key, 0, AUTH_REFUSED, undefined);
      encodeAuthError(w, call.xid, cred);
      return w.chunks();
    }
    let decoded: unknown;
    try {
      decoded = proc.decode(args);
      args.end();
    } catch (e) {
      if (!(e instanceof XdrError)) connLog(conn).error({ err: e, proc: key }, 'argument decoder failed');
      this.observer?.call(key, 0, AcceptStat.GARBAGE_ARGS, undefined);
      return garbageArgs(call.xid);
    }
    const ctx: CallContext = { call, cred, peer: conn.peer, conn };
    if (proc.idempotent) return this.execute(proc, decoded, ctx, key);
    // Non-idempotent: consult the duplicate-request cache.
    const drcKey = `${conn.peer.address}|${call.prog}|${call.vers}|${call.proc}|${call.xid}|${drcChecksum(record)}`;
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

  private async execute(proc: Procedure, args: unknown, ctx: CallContext, key: string): Promise<ReplyChunks | undefined> {
    const w = new XdrWriter();
    const obs = this.observer;
    const t0 = obs ? performance.now() : 0;
    try {
      const res = await proc.handle(args, ctx);
      encodeAcceptedReply(w, ctx.call.xid, AcceptStat.SUCCESS);
      proc.encode(w, res);
      obs?.call(key, performance.now() - t0, AcceptStat.SUCCESS, res);
      const out: ReplyChunks = w.chunks();
      if (ctx.sent && proc.idempotent) out.sent = ctx.sent;
      if (proc.lendsArgs) out.argsLent = true;
      return out;
    } catch (e) {
      // The reply below refers to nothing the handler lent.
      if (ctx.sent && proc.idempotent) ctx.sent();
      const w2 = new XdrWriter();
      let accept: number;
      if (e instanceof RpcError && e.kind === 'garbage_args') {
        encodeAcceptedReply(w2, ctx.call.xid, (accept = AcceptStat.GARBAGE_ARGS));
      } else if (e instanceof RpcError && e.kind === 'auth_error') {
        encodeAuthError(w2, ctx.call.xid, e.detail ?? AuthStat.AUTH_FAILED);
        accept = AUTH_REFUSED;
      } else {
        connLog(ctx.conn).error({ err: e, proc: key }, 'procedure failed: replying SYSTEM_ERR');
        encodeAcceptedReply(w2, ctx.call.xid, (accept = AcceptStat.SYSTEM_ERR));
      }
      obs?.call(key, performance.now() - t0, accept, undefined);
      const out: ReplyChunks = w2.chunks();
      if (proc.lendsArgs) out.argsLent = true;
      return out;
    }
  }
}

/** A connection's logger (bound to its session once proven), or the layer's. */
const connLog = (c: ConnectionState | undefined): Logger => (c instanceof Connection ? c.log : log);

/**
 * One client connection: framing, flow control, timers. Dispatch is the server's.
 *
 * Flow control: a call is started only while fewer than maxInFlight run and
 * the socket's queued reply bytes are within maxQueuedReplyBytes. Records
 * that arrive in the same chunk beyond that are not decoded: the decoder
 * holds the rest of the chunk as raw bytes and the socket is paused until a
 * call completes or the reply queue drains.
 */
class Connection implements ConnectionState {
  readonly data = new Map<string, unknown>();
  /** This connection's lines: the layer's logger, a child naming the session once proven (handshake.describe). */
  log: Logger = log;
  /** Calls this server makes to the peer over this connection (reverse direction: RECALL). */
  private readonly peerCalls: PeerCalls;
  private readonly decoder: RecordDecoder;
  private inFlight = 0;
  private paused = false;
  private closed = false;
  /** close() was asked for: no further call is started. */
  private closing = false;
  private partialTimer?: NodeJS.Timeout;
  private idleTimer?: NodeJS.Timeout;

  constructor(
    private readonly server: RpcServer,
    private readonly sock: net.Socket,
    readonly id: number,
    readonly peer: { address: string; port: number },
    /** Holds an admitted slot (maxConnections, maxConnectionsPerPeer). */
    public admitted: boolean,
  ) {
    this.peerCalls = new PeerCalls((m) => this.writeRecord(m), `connection ${id} (${peer.address}:${peer.port})`);
    this.decoder = new RecordDecoder((r) => this.onRecord(r), server.limits.maxRecord, (n) => server.records.take(n));
    this.decoder.directAlloc = (n) => {
      if (server.directAhead + n > DIRECT_AHEAD_MAX) return null;
      server.directAhead += n;
      return server.records.take(n);
    };
    this.decoder.directEnded = (n) => void (server.directAhead -= n);
    const direct = directReaderOf(sock);
    this.aimed = !!direct;
    if (direct) direct.attach(this.decoder, (chunk) => this.onData(chunk), (n) => this.onDirect(n));
    else sock.on('data', (chunk: Buffer) => this.onData(chunk));
    if (admitted) this.admit();
    sock.on('error', (err) => this.log.debug({ err, peer }, 'connection error'));
    sock.on('close', () => {
      this.closed = true;
      this.decoder.stopDirect();
      this.peerCalls.closeAll();
      clearTimeout(this.partialTimer);
      clearTimeout(this.idleTimer);
    });
    sock.on('drain', () => {
      this.pump();
      this.updateFlow();
    });
    this.armIdle();
  }

  destroy(): void {
    this.sock.destroy();
  }

  /** Reads can be aimed at a large fragment (plain TCP, direct-read.ts). */
  private readonly aimed: boolean;

  /**
   * Holds an admitted slot now. Only then are large fragments read
   * straight into a pooled record, allocated when their header arrives:
   * before its proof a peer's announced length buys it nothing until the
   * bytes are there.
   */
  admit(): void {
    this.admitted = true;
    this.decoder.directReads = this.aimed;
  }

  /** End the connection once the replies written in this turn have gone out; no further call is started. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    // What still arrives is discarded: reads go back to the scratch buffer, not held to a fragment's rest.
    this.decoder.stopDirect();
    setImmediate(() => {
      this.sock.end();
      this.updateFlow(); // read (and discard) until the peer's end arrives
      // A peer that neither reads its replies nor ends its side is not waited for.
      setTimeout(() => this.sock.destroy(), CLOSE_LINGER_MS).unref();
    });
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return; // after close(): nothing more is decoded
    this.server.stats.bytesIn += chunk.length;
    this.decode(() => this.decoder.push(chunk));
  }

  /** `n` bytes were read straight into the fragment the decoder is filling. */
  private onDirect(n: number): void {
    if (this.closing) return; // after close(): nothing more is decoded
    this.server.stats.bytesIn += n;
    this.server.stats.directBytesIn += n;
    this.decode(() => this.decoder.directFilled(n));
  }

  /** Feed the decoder (a framing error closes the connection), then the timers and flow control. */
  private decode(feed: () => void): void {
    try {
      feed();
    } catch (e) {
      this.framingError(e);
      return;
    }
    this.armPartial();
    this.armIdle();
    this.updateFlow();
  }

  onClose(fn: () => void): void {
    if (this.closed) fn();
    else this.sock.once('close', fn);
  }

  private framingError(e: unknown): void {
    if (e instanceof RecordTooLargeError) this.log.warn({ peer: this.peer, size: e.size, max: e.max }, 'record too large: closing connection');
    else this.log.error({ err: e }, 'framing error: closing connection');
    this.sock.destroy();
  }

  private armPartial(): void {
    if (this.decoder.partial) {
      if (!this.partialTimer) {
        this.partialTimer = setTimeout(() => {
          this.log.warn({ peer: this.peer, buffered: this.decoder.buffered }, 'partial record stalled: closing connection');
          this.sock.destroy();
        }, this.server.limits.partialRecordTimeoutMs);
        this.partialTimer.unref();
      }
    } else if (this.partialTimer) {
      clearTimeout(this.partialTimer);
      this.partialTimer = undefined;
    }
  }

  /** Time of the last traffic from the peer (ms, Date.now()). */
  private lastActive = 0;

  /**
   * Note traffic and keep one idle timer running: it re-checks when it fires
   * rather than being replaced on every chunk (a timer per chunk was a
   * measurable share of a small call's CPU).
   */
  private armIdle(): void {
    this.lastActive = Date.now();
    if (this.idleTimer) return;
    const check = (): void => {
      const idle = this.server.limits.idleTimeoutMs;
      const left = this.lastActive + idle - Date.now();
      if (left > 0 || this.inFlight > 0) {
        this.idleTimer = setTimeout(check, left > 0 ? left : idle);
        this.idleTimer.unref();
        return;
      }
      this.log.debug({ peer: this.peer }, 'idle connection closed');
      this.sock.end();
    };
    this.idleTimer = setTimeout(check, this.server.limits.idleTimeoutMs);
    this.idleTimer.unref();
  }

  /** May another call start now? (the in-flight cap, counting the reply bytes already queued) */
  private canStart(): boolean {
    const l = this.server.limits;
    return !this.closing && !this.closed && this.inFlight < l.maxInFlight && this.sock.writableLength <= l.maxQueuedReplyBytes;
  }

  /** Start a decoded call; returns whether the decoder may hand over another one now. */
  private onRecord(record: Buffer): boolean {
    if (this.closing || this.closed) return false;
    // A reply to one of our reverse calls: settle it; it starts no call and takes no slot.
    if (isReplyRecord(record)) {
      this.peerCalls.onReply(record);
      return this.canStart();
    }
    this.inFlight++;
    this.server.dispatch(record, this).then(
      (reply) => {
        this.send(reply);
        // Nothing refers to the record's bytes any more (a pool ignores buffers it did not hand out).
        if (reply?.argsLent) this.server.records.give(record);
      },
      (err) => {
        this.log.error({ err }, 'dispatch failed');
        this.send(undefined);
      },
    );
    return this.canStart();
  }

  /** Decode held requests while calls may start. */
  private pump(): void {
    if (!this.decoder.holding || !this.canStart()) return;
    try {
      this.decoder.resume();
    } catch (e) {
      this.framingError(e);
      return;
    }
    this.armPartial();
  }

  private corked = false;

  /**
   * Replies completed in the same event-loop turn leave in one writev: the
   * socket is corked at the first and uncorked once the turn's I/O
   * callbacks have run (setImmediate), costing no latency.
   */
  private send(reply: ReplyChunks | undefined): void {
    this.inFlight--;
    if (reply) this.writeRecord(reply, reply.sent);
    const hs = this.server.handshake;
    if (hs && !this.closed && this.server.isUnproven(this) && hs.done(this)) this.server.promote(this);
    this.pump();
    this.updateFlow();
  }

  /** Frame and write one record (a reply, or a reverse call); corked within the turn. */
  private writeRecord(message: Buffer[], sent?: () => void): void {
    if (this.closed) return sent?.();
    if (!this.corked) {
      this.corked = true;
      this.sock.cork();
      setImmediate(() => {
        this.corked = false;
        this.sock.uncork();
      });
    }
    const framed = frameRecord(message);
    for (let i = 0; i < framed.length; i++) {
      const c = framed[i];
      this.server.stats.bytesOut += c.length;
      // Written, or failed (the socket's end): either way nothing reads the lent buffer afterwards.
      if (sent && i === framed.length - 1) this.sock.write(c, () => sent());
      else this.sock.write(c);
    }
  }

  callPeer<R>(prog: number, vers: number, proc: number, encodeArgs: (w: XdrWriter) => void, decode: (r: XdrReader) => R, timeoutMs: number): Promise<R> {
    if (this.closing || this.closed) return Promise.reject(new RpcError(`connection ${this.id}: closed`, 'disconnected'));
    return this.peerCalls.call(prog, vers, proc, encodeArgs, decode, timeoutMs);
  }

  /** Pause reading while requests are held or no call may start; resume when one may. */
  private updateFlow(): void {
    if (this.closed) return;
    const over = !this.closing && (this.decoder.holding > 0 || !this.canStart());
    if (over && !this.paused) {
      this.paused = true;
      this.sock.pause();
    } else if (!over && this.paused) {
      this.paused = false;
      this.sock.resume();
    }
  }
}
