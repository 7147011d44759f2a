import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs/promises';
import type { Account } from '../api/types.js';

/**
 * The session service's users: a JSON file (owner-only) naming each user,
 * the SHA-256 of their bearer token (the token itself is never stored), the
 * local accounts their sessions may map to, and whether they are an
 * administrator (sees every session on the dashboard and the API).
 *
 *   {"users": {"alice": {"tokenSha256": "…64 hex…", "accounts": ["2001:2001:2001,3000"], "admin": false}}}
 */
export interface User {
  name: string;
  tokenSha256: Buffer;
  accounts: Account[];
  admin: boolean;
}

export function parseAccount(v: string): Account {
  const m = /^(\d+):(\d+)(?::(\d+(?:,\d+)*))?$/.exec(v);
  if (!m) throw new Error(`expected UID:GID[:G1,G2...], got "${v}"`);
  return { uid: Number(m[1]), gid: Number(m[2]), gids: m[3] ? m[3].split(',').map(Number) : [] };
}

export function formatAccount(a: Account): string {
  return `${a.uid}:${a.gid}${a.gids.length ? ':' + a.gids.join(',') : ''}`;
}

export const tokenHash = (token: string): Buffer => createHash('sha256').update(token).digest();

export class Users {
  private constructor(private readonly users: User[]) {}

  static fromJson(j: any, where = 'users file'): Users {
    if (!j || typeof j.users !== 'object') throw new Error(`${where}: expected {"users": {...}}`);
    const out: User[] = [];
    for (const [name, u] of Object.entries<any>(j.users)) {
      if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name)) throw new Error(`${where}: bad user name "${name}"`);
      if (typeof u.tokenSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(u.tokenSha256)) throw new Error(`${where}: user ${name}: tokenSha256 must be 64 hex digits`);
      const accounts = (u.accounts ?? []).map((a: string) => parseAccount(a));
      out.push({ name, tokenSha256: Buffer.from(u.tokenSha256, 'hex'), accounts, admin: !!u.admin });
    }
    return new Users(out);
  }

  static async load(file: string): Promise<Users> {
    const st = await fs.stat(file);
    if (st.mode & 0o077) throw new Error(`${file}: users file is accessible by others; chmod 600 it`);
    return Users.fromJson(JSON.parse(await fs.readFile(file, 'utf8')), file);
  }

  /** The user a bearer token belongs to (constant-time comparison of hashes). */
  authenticate(token: string): User | undefined {
    const h = tokenHash(token);
    let found: User | undefined;
    for (const u of this.users) if (timingSafeEqual(u.tokenSha256, h)) found = u;
    return found;
  }

  get size(): number {
    return this.users.length;
  }
}

/** Add (or replace) a user in a users file; returns the new token, which is shown once and never stored. */
export async function addUser(file: string, name: string, accounts: Account[], admin: boolean): Promise<string> {
  let j: any = { users: {} };
  try {
    j = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const token = `gvfs_${randomBytes(32).toString('base64url')}`;
  j.users[name] = { tokenSha256: tokenHash(token).toString('hex'), accounts: accounts.map(formatAccount), admin };
  Users.fromJson(j);
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(j, null, 2) + '\n', { mode: 0o600 });
  await fs.rename(tmp, file);
  return token;
}
