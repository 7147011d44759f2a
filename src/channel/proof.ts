import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Session-key proof, bound to one connection (socket-free).
 *
 *   server → client: serverNonce (32 random bytes, fresh per connection)
 *   client → server: sessionId, clientNonce (32), clientProof
 *   server → client: serverProof
 *
 *   clientProof = HMAC-SHA256(key, "gvfs client proof v1" | sessionId | serverNonce | clientNonce)
 *   serverProof = HMAC-SHA256(key, "gvfs server proof v1" | sessionId | clientNonce | serverNonce)
 *
 * A proof is valid only for the server nonce of the connection it was made
 * on, so recording it and replaying it on another connection fails; the
 * server's proof shows the client it reached a holder of the same key.
 */
export const NONCE_LEN = 32;

function mac(key: Buffer, label: string, id: string, a: Buffer, b: Buffer): Buffer {
  return createHmac('sha256', key).update(label).update(id).update(a).update(b).digest();
}

export function clientProof(key: Buffer, sessionId: string, serverNonce: Buffer, clientNonce: Buffer): Buffer {
  return mac(key, 'gvfs client proof v1', sessionId, serverNonce, clientNonce);
}

export function serverProof(key: Buffer, sessionId: string, serverNonce: Buffer, clientNonce: Buffer): Buffer {
  return mac(key, 'gvfs server proof v1', sessionId, clientNonce, serverNonce);
}

export function proofEquals(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
