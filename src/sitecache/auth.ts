import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The site tier's request protocol (HTTP/1.1, optionally over TLS 1.3):
 *   GET /v1/chunks/SHA256HEX?len=N[&image=NAME&path=PATH]
 *                                    the stored chunk (codec byte + payload, as in the store);
 *                                    image/path: the file it belongs to (STORE_FILE's answer),
 *                                    which a proxy-server upstream needs to fetch a miss
 *   GET /v1/stats                    the tier's counters (JSON)
 * With a site key every request carries `authorization: GVFS-HMAC HEX`,
 * HEX = HMAC-SHA256(key, what) over "chunk HASH LEN", "chunk HASH LEN
 * ["IMAGE","PATH"]" (JSON) or "stats". A token
 * answers one question only: one seen on the wire lets its holder ask for
 * a chunk it already knows the hash of, nothing more.
 */
export const SITE_KEY_LEN = 32;
export const HASH_RE = /^[0-9a-f]{64}$/;

/** With the file named (a proxy-server upstream fetches chunks by file), the token covers it too. */
export const chunkWhat = (hash: string, len: number, file?: { image: string; path: string }) => (file ? `chunk ${hash} ${len} ${JSON.stringify([file.image, file.path])}` : `chunk ${hash} ${len}`);
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
