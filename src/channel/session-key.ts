import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import type { LocalAccount } from '../wrappers/identity-map/map-file.js';

/**
 * A GVFS session key: a fresh random 256-bit secret with an id, the grid
 * identity of the session, optionally the local account it maps to, and an
 * expiry. Stored as JSON in a file readable by its owner only:
 *
 *   {"gvfsSessionKey":1,"id":"…32 hex…","key":"…base64…","user":"alice",
 *    "expires":"2026-11-26T00:00:00.000Z","account":{"uid":2001,"gid":2001,"gids":[]}}
 *
 * `account` absent: the proxy server maps `user` through its --map.
 */
export interface SessionKey {
  id: string;
  key: Buffer;
  user: string;
  expires?: Date;
  account?: LocalAccount;
}

export class KeyFileError extends Error {
  override name = 'KeyFileError';
}

export function newSessionKey(user: string, lifetimeSec?: number, account?: LocalAccount): SessionKey {
  return {
    id: randomBytes(16).toString('hex'),
    key: randomBytes(32),
    user,
    expires: lifetimeSec ? new Date(Date.now() + lifetimeSec * 1000) : undefined,
    account,
  };
}

export async function writeKeyFile(file: string, k: SessionKey): Promise<void> {
  const body = JSON.stringify({
    gvfsSessionKey: 1,
    id: k.id,
    key: k.key.toString('base64'),
    user: k.user,
    ...(k.expires ? { expires: k.expires.toISOString() } : {}),
    ...(k.account ? { account: k.account } : {}),
  });
  // Created owner-only and exclusively: never overwrite a key someone may be using.
  const fh = await fs.open(file, 'wx', 0o600);
  try {
    await fh.writeFile(body + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Read a key file; refuses files that others can read or write. */
export async function readKeyFile(file: string): Promise<SessionKey> {
  const st = await fs.stat(file).catch((e) => {
    throw new KeyFileError(`${file}: ${(e as Error).message}`);
  });
  if (st.mode & 0o077) throw new KeyFileError(`${file}: key file is accessible by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
  if (process.getuid && st.uid !== process.getuid()) throw new KeyFileError(`${file}: key file is owned by uid ${st.uid}, not by this user`);
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (e) {
    throw new KeyFileError(`${file}: not a GVFS session key (${(e as Error).message})`);
  }
  if (j.gvfsSessionKey !== 1) throw new KeyFileError(`${file}: not a GVFS session key (version ${String(j.gvfsSessionKey)})`);
  if (typeof j.id !== 'string' || !/^[0-9a-f]{32}$/.test(j.id)) throw new KeyFileError(`${file}: bad session id`);
  if (typeof j.key !== 'string') throw new KeyFileError(`${file}: no key`);
  const key = Buffer.from(j.key, 'base64');
  if (key.length !== 32) throw new KeyFileError(`${file}: key must be 32 bytes`);
  if (typeof j.user !== 'string' || !j.user) throw new KeyFileError(`${file}: no user`);
  const expires = j.expires === undefined ? undefined : new Date(String(j.expires));
  if (expires && Number.isNaN(expires.getTime())) throw new KeyFileError(`${file}: bad expiry`);
  const a = j.account as LocalAccount | undefined;
  if (a !== undefined && !(Number.isInteger(a.uid) && Number.isInteger(a.gid) && Array.isArray(a.gids))) throw new KeyFileError(`${file}: bad account`);
  return { id: j.id, key, user: j.user, expires, account: a };
}

export function expired(k: SessionKey, now = Date.now()): boolean {
  return k.expires !== undefined && k.expires.getTime() <= now;
}
