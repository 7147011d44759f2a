import { randomBytes } from 'node:crypto';
import type { XdrReader, XdrWriter } from '../xdr/index.js';
import { authArgs, authRes, AuthStatus, challengeRes, GVFS_PROGRAM, GVFS_V1, GvfsProc } from '../ext/codec.js';
import { RpcError, type OpaqueAuth } from '../rpc/types.js';
import { clientProof, NONCE_LEN, proofEquals, serverProof } from './proof.js';
import type { SessionKey } from './session-key.js';

type CallFn = <R>(prog: number, vers: number, proc: number, enc: (w: XdrWriter) => void, dec: (r: XdrReader) => R, opts?: { cred?: OpaqueAuth; timeoutMs?: number }) => Promise<R>;

/**
 * Client side of the session proof, run on every new connection before any
 * NFS call: CHALLENGE, then AUTH with a proof over the connection's nonce;
 * the server's proof is checked too. Failures are RpcError('auth_error'),
 * which stops the RPC client from retrying.
 */
export async function proveSession(call: CallFn, k: SessionKey, timeoutMs = 10_000): Promise<void> {
  const nonce = await call(GVFS_PROGRAM, GVFS_V1, GvfsProc.CHALLENGE, () => undefined, challengeRes.dec, { timeoutMs });
  if (nonce.length !== NONCE_LEN) throw new RpcError('session proof: bad challenge from server', 'auth_error');
  const clientNonce = randomBytes(NONCE_LEN);
  const r = await call(
    GVFS_PROGRAM,
    GVFS_V1,
    GvfsProc.AUTH,
    (w) => authArgs.enc(w, { sessionId: k.id, clientNonce, proof: clientProof(k.key, k.id, nonce, clientNonce) }),
    authRes.dec,
    { timeoutMs },
  );
  if (r.status === AuthStatus.EXPIRED) throw new RpcError(`session ${k.id} has expired`, 'auth_error');
  if (r.status !== AuthStatus.OK) throw new RpcError(`session key refused by server (session ${k.id})`, 'auth_error');
  if (!proofEquals(r.serverProof, serverProof(k.key, k.id, nonce, clientNonce))) {
    throw new RpcError('the proxy server could not prove the session key: wrong server?', 'auth_error');
  }
}
