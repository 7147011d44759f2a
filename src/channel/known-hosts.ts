import { createHmac } from 'node:crypto';
import fs from 'node:fs/promises';

/**
 * OpenSSH known_hosts, for strict host-key checking of SSH tunnels. Lines:
 * `HOSTS KEYTYPE BASE64KEY [comment]`, HOSTS a comma list of `host`,
 * `[host]:port` or hashed `|1|salt|hash` entries; `@revoked` lines reject
 * the key. (`@cert-authority` lines are not supported and are ignored.)
 */
export interface KnownHostEntry {
  hosts: string[];
  keyType: string;
  key: Buffer;
  revoked: boolean;
}

export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const f = line.split(/\s+/);
    let revoked = false;
    if (f[0].startsWith('@')) {
      if (f[0] === '@revoked') revoked = true;
      else continue;
      f.shift();
    }
    if (f.length < 3) continue;
    out.push({ hosts: f[0].split(','), keyType: f[1], key: Buffer.from(f[2], 'base64'), revoked });
  }
  return out;
}

function hostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function matches(pattern: string, name: string): boolean {
  if (pattern.startsWith('|1|')) {
    const [, , salt, hash] = pattern.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  return pattern === name;
}

/** True if `key` (the raw public key blob the server presented) is known for host:port and not revoked. */
export function hostKeyKnown(entries: KnownHostEntry[], host: string, port: number, key: Buffer): boolean {
  const name = hostName(host, port);
  const mine = entries.filter((e) => e.hosts.some((h) => matches(h, name)));
  if (mine.some((e) => e.revoked && e.key.equals(key))) return false;
  return mine.some((e) => !e.revoked && e.key.equals(key));
}

export async function readKnownHosts(file: string): Promise<KnownHostEntry[]> {
  return parseKnownHosts(await fs.readFile(file, 'utf8'));
}
