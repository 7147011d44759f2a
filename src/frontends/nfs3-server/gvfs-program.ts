import { randomBytes } from 'node:crypto';
import { clientProof, NONCE_LEN, proofEquals, serverProof } from '../../channel/proof.js';
import { expired, type SessionKey } from '../../channel/session-key.js';
import type { SessionRegistry } from '../../channel/sessions.js';
import {
  authArgs,
  authRes,
  AuthStatus,
  challengeRes,
  GVFS_PROGRAM,
  GVFS_V1,
  helloArgs,
  helloRes,
  HelloStatus,
  type AuthArgs,
  type AuthRes,
  type HelloArgs,
  type HelloRes,
} from '../../ext/codec.js';
import type { FsError } from '../../backend/errors.js';
import { DELEGATE, DELEGATE_READ, delegateArgs, delegateReadArgs, delegateReadRes, delegateRes, RENEW, renewArgs, renewRes, type DelegateArgs, type DelegateReadArgs, type DelegateReadRes, type DelegateRes, type RenewArgs, type RenewRes } from '../../ext/callback-codec.js';
import { GET_CHUNK, getChunkArgs, getChunkRes, STORE_FILE, storeFileArgs, storeFileRes, type GetChunkArgs, type GetChunkRes, type StoreFileArgs, type StoreFileRes } from '../../ext/chunks-codec.js';
import { CHANGES_SINCE, changesArgs, changesRes, type ChangesArgs, type ChangesRes } from '../../ext/changes-codec.js';
import { STATUS_OF } from '../../nfs3/status.js';
import { MetaStatus, bulkReadArgs, bulkReadRes, getMetaArgs, getMetaRes, setOrderArgs, setOrderRes, type BulkReadArgs, type BulkReadRes, type GetMetaArgs, type GetMetaRes, type SetOrderArgs, type SetOrderRes } from '../../ext/meta-codec.js';
import type { CallContext, ConnectionState, Procedure, ProgramVersion } from '../../rpc/program.js';
import { VOID } from '../../rpc/program.js';
import { defaultAuthenticator, type Authenticator } from '../../rpc/server.js';
import { AuthStat } from '../../rpc/types.js';
import { logger } from '../../util/log.js';
import type { GuardedProcedure } from './read-only.js';

const log = logger('gvfs-ext');
const PRINCIPAL = 'gvfs.principal';
const SESSION = 'gvfs.session';
const NONCE = 'gvfs.nonce';
const FAILURES = 'gvfs.authFailures';
/** Failed proofs tolerated on one connection before it is closed. */
export const MAX_AUTH_FAILURES = 3;

export interface GvfsProgramOptions {
  /** Keyed server: connections prove a session key (CHALLENGE/AUTH). */
  sessions?: SessionRegistry;
  /** Insecure server: HELLO binds a grid identity if `acceptHello` allows it. */
  acceptHello?: (principal: string) => boolean;
  /** Called once a connection has proved a session, before AUTH answers (the proxy server's SessionFence). */
  beforeSession?: (sessionId: string) => Promise<void>;
  /** Meta-data procedures (GET_META, BULK_READ, SET_ORDER; ext/meta-codec.ts): absent, they are PROC_UNAVAIL. */
  meta?: MetaProcedures;
  /** The change log's procedure (CHANGES_SINCE, ext/changes-codec.ts): absent, it is PROC_UNAVAIL. */
  changes?: ChangesProcedures;
  /** DELEGATE, DELEGATE_READ and RENEW (callback model, ext/callback-codec.ts): absent, they are PROC_UNAVAIL. */
  delegations?: {
    delegate(cred: CallContext['cred'], a: DelegateArgs): Promise<DelegateRes>;
    delegateRead(cred: CallContext['cred'], a: DelegateReadArgs): Promise<DelegateReadRes>;
    renew(cred: CallContext['cred'], a: RenewArgs): RenewRes;
  };
  /** STORE_FILE and GET_CHUNK (ext/chunks-codec.ts; proxy/chunk-server.ts): absent, they are PROC_UNAVAIL. */
  chunks?: ChunkProcedures;
}

/** What the chunk procedures run (proxy/chunk-server.ts). */
export interface ChunkProcedures {
  storeFile(cred: CallContext['cred'], a: StoreFileArgs): Promise<StoreFileRes>;
  getChunk(cred: CallContext['cred'], a: GetChunkArgs): Promise<GetChunkRes>;
}

/** What CHANGES_SINCE runs (proxy/changes-server.ts). */
export interface ChangesProcedures {
  changesSince(cred: CallContext['cred'], a: ChangesArgs): Promise<ChangesRes>;
}

/** What the meta-data procedures run (proxy/meta-server.ts); `cred` is the caller as authenticated. */
export interface MetaProcedures {
  getMeta(cred: CallContext['cred'], fh: Buffer, offset: number, count: number): Promise<GetMetaRes>;
  bulkRead(cred: CallContext['cred'], a: BulkReadArgs): Promise<BulkReadRes>;
  setOrder(cred: CallContext['cred'], a: SetOrderArgs): Promise<SetOrderRes>;
}

/**
 * Server side of the GVFS extension program: HELLO for insecure sessions,
 * CHALLENGE/AUTH for keyed ones (the proof is bound to the connection's
 * nonce, see channel/proof.ts). The authenticators below stamp what a
 * connection established on each of its calls.
 */
export function gvfsProgram(o: GvfsProgramOptions): ProgramVersion {
  const hello: Procedure = {
    name: 'HELLO',
    decode: helloArgs.dec,
    encode: helloRes.enc,
    idempotent: true,
    public: !o.sessions,
    handle: (a: HelloArgs, ctx): HelloRes => {
      if (!o.acceptHello?.(a.principal)) {
        log.warn({ peer: ctx.peer, principal: a.principal, reason: 'identity not mapped' }, 'HELLO refused: identity not mapped');
        return { status: HelloStatus.DENIED };
      }
      ctx.conn.data.set(PRINCIPAL, a.principal);
      return { status: HelloStatus.OK };
    },
  };
  const challenge: Procedure = {
    name: 'CHALLENGE',
    ...VOID,
    encode: challengeRes.enc,
    idempotent: true,
    public: true,
    handle: (_: void, ctx) => {
      const n = randomBytes(NONCE_LEN);
      ctx.conn.data.set(NONCE, n);
      return n;
    },
  };
  const auth: Procedure = {
    name: 'AUTH',
    decode: authArgs.dec,
    encode: authRes.enc,
    idempotent: true,
    public: true,
    handle: async (a: AuthArgs, ctx): Promise<AuthRes> => {
      const none = Buffer.alloc(0);
      const failures = (ctx.conn.data.get(FAILURES) as number | undefined) ?? 0;
      // Past the limit nothing is verified, however many attempts were pipelined behind it.
      if (failures >= MAX_AUTH_FAILURES) {
        ctx.conn.close();
        return { status: AuthStatus.DENIED, serverProof: none };
      }
      const nonce = ctx.conn.data.get(NONCE) as Buffer | undefined;
      if (!nonce) return { status: AuthStatus.NO_CHALLENGE, serverProof: none };
      ctx.conn.data.delete(NONCE); // one proof attempt per challenge
      const k = o.sessions?.lookup(a.sessionId);
      const reason = !k
        ? 'unknown session id'
        : a.clientNonce.length !== NONCE_LEN
          ? 'bad client nonce'
          : !proofEquals(clientProof(k.key, k.id, nonce, a.clientNonce), a.proof)
            ? 'proof does not match the session key'
            : undefined;
      if (reason !== undefined || !k) {
        const n = failures + 1;
        ctx.conn.data.set(FAILURES, n);
        // One line per proof verified: operators (and the proof-limit test) count them.
        log.warn({ peer: ctx.peer, session: a.sessionId, reason: reason ?? 'unknown session id', failures: n, max: MAX_AUTH_FAILURES }, 'session proof refused');
        if (n >= MAX_AUTH_FAILURES) {
          log.warn({ peer: ctx.peer }, `${MAX_AUTH_FAILURES} failed session proofs: closing connection`);
          ctx.conn.close();
        }
        return { status: AuthStatus.DENIED, serverProof: none };
      }
      if (expired(k)) {
        log.warn({ peer: ctx.peer, session: k.id, reason: 'session expired' }, 'session proof refused');
        return { status: AuthStatus.EXPIRED, serverProof: none };
      }
      await o.beforeSession?.(k.id);
      ctx.conn.data.set(SESSION, k);
      log.debug({ peer: ctx.peer, session: k.id, user: k.user }, 'session proved');
      return { status: AuthStatus.OK, serverProof: serverProof(k.key, k.id, nonce, a.clientNonce) };
    },
  };
  const m = o.meta;
  const metaProcs: GuardedProcedure[] = m
    ? [
        { name: 'GET_META', decode: getMetaArgs.dec, encode: getMetaRes.enc, idempotent: true, needsCred: true, handle: (a: GetMetaArgs, ctx) => m.getMeta(ctx.cred, a.fh, a.offset, a.count) },
        { name: 'BULK_READ', decode: bulkReadArgs.dec, encode: bulkReadRes.enc, idempotent: true, needsCred: true, handle: (a: BulkReadArgs, ctx) => m.bulkRead(ctx.cred, a) },
        {
          name: 'SET_ORDER',
          decode: setOrderArgs.dec,
          encode: setOrderRes.enc,
          idempotent: false,
          needsCred: true,
          // Rewrites the file's meta-data (its prefetch order): a change, refused on a read-only export.
          mutating: true,
          target: { handles: (a: SetOrderArgs) => [a.fh], refused: (_a: SetOrderArgs, e: FsError): SetOrderRes => ({ status: MetaStatus.NFSERR, nfsstat: STATUS_OF[e.code] }) },
          handle: (a: SetOrderArgs, ctx) => m.setOrder(ctx.cred, a),
        },
      ]
    : [];
  const ch = o.changes;
  // Rows are indexed by procedure number: a program without the meta-data rows leaves their numbers empty.
  const procedures: Array<Procedure | undefined> = [{ name: 'NULL', ...VOID, handle: () => undefined, idempotent: true, public: true }, hello, challenge, auth, ...metaProcs];
  if (ch) procedures[CHANGES_SINCE] = { name: 'CHANGES_SINCE', decode: changesArgs.dec, encode: changesRes.enc, idempotent: true, needsCred: true, handle: (a: ChangesArgs, ctx) => ch.changesSince(ctx.cred, a) };
  const dg = o.delegations;
  if (dg) procedures[DELEGATE] = { name: 'DELEGATE', decode: delegateArgs.dec, encode: delegateRes.enc, idempotent: true, needsCred: true, handle: (a: DelegateArgs, ctx) => dg.delegate(ctx.cred, a) };
  if (dg) procedures[DELEGATE_READ] = { name: 'DELEGATE_READ', decode: delegateReadArgs.dec, encode: delegateReadRes.enc, idempotent: true, needsCred: true, handle: (a: DelegateReadArgs, ctx) => dg.delegateRead(ctx.cred, a) };
  if (dg) procedures[RENEW] = { name: 'RENEW', decode: renewArgs.dec, encode: renewRes.enc, idempotent: true, needsCred: true, handle: (a: RenewArgs, ctx) => dg.renew(ctx.cred, a) };
  const ck = o.chunks;
  if (ck) {
    procedures[STORE_FILE] = { name: 'STORE_FILE', decode: storeFileArgs.dec, encode: storeFileRes.enc, idempotent: true, needsCred: true, handle: (a: StoreFileArgs, ctx) => ck.storeFile(ctx.cred, a) };
    procedures[GET_CHUNK] = { name: 'GET_CHUNK', decode: getChunkArgs.dec, encode: getChunkRes.enc, idempotent: true, needsCred: true, handle: (a: GetChunkArgs, ctx) => ck.getChunk(ctx.cred, a) };
  }
  return { prog: GVFS_PROGRAM, vers: GVFS_V1, name: 'gvfs', procedures };
}

export function connectionSession(conn: ConnectionState): SessionKey | undefined {
  return conn.data.get(SESSION) as SessionKey | undefined;
}

/** Insecure servers: AUTH_SYS/AUTH_NONE as usual, plus the principal the connection's HELLO announced. */
export const principalAuthenticator: Authenticator = (call, conn, proc) => {
  const c = defaultAuthenticator(call, conn, proc);
  if (typeof c === 'number') return c;
  const p = conn.data.get(PRINCIPAL) as string | undefined;
  return p === undefined ? c : { ...c, principal: p };
};

/**
 * Keyed servers: until the connection has proved a session key only public
 * procedures are answered (everything else: AUTH_REJECTEDCRED, i.e. "begin
 * a session first"); afterwards every call carries the session's identity,
 * and a session that expires mid-connection is cut off.
 */
export const sessionAuthenticator: Authenticator = (call, conn, proc) => {
  const k = connectionSession(conn);
  if (!k) return proc.public ? defaultAuthenticator(call, conn, proc) : AuthStat.AUTH_REJECTEDCRED;
  if (expired(k)) {
    conn.data.delete(SESSION);
    conn.close();
    return AuthStat.AUTH_REJECTEDCRED;
  }
  const c = defaultAuthenticator(call, conn, proc);
  if (typeof c === 'number') return c;
  return { ...c, principal: k.user, session: k.id };
};
