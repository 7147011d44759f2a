import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The site tier's request protocol (HTTP/1.1, optionally over TLS 1.3):
 *   GET /v1/chunks/SHA256HEX?len=N   the stored chunk (codec byte + payload, as in the store)
 *   GET /v1/stats                    the tier's counters (JSON)
 * With a site key every request carries `authorization: GVFS-HMAC HEX`,
 * HEX = HMAC-SHA256(key, what) over "chunk HASH LEN" or "stats". A token
 * answers one question only: one seen on the wire lets its holder ask for
 * a chunk it already knows the hash of, nothing more.
 */
export const SITE_KEY_LEN = 32;
export const HASH_RE = /^[0-9a-f]{64}$/;

export const chunkWhat = (hash: string, len: number) => `chunk ${hash} ${len}`;
export const STATS_WHAT = 'stats';

export function siteToken(key: Buffer, what: string): string {
  return createHmac('sha256', key).update(what).digest('hex');
}

/** Does the authorization header prove the key for `what`? (constant time) */
export function checkSiteToken(key: Buffer, what: string, header: string | undefined): boolean {
  const m = /^GVFS-HMAC ([0-9a-f]{64})$/.exec(header ?? '');
  if (!m) return false;
  return timingSafeEqual(Buffer.from(m[1], 'hex'), Buffer.from(siteToken(key, what), 'hex'));
}

export async function readSiteKey(file: string): Promise<Buffer> {
  const { readFile } = await import('node:fs/promises');
  const b = await readFile(file);
  if (b.length !== SITE_KEY_LEN) throw new Error(`site key ${file}: expected exactly ${SITE_KEY_LEN} bytes (head -c 32 /dev/urandom), found ${b.length}`);
  return b;
}
