import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/**
 * Where a server keeps what must survive a restart (handle secrets,
 * journals): $XDG_STATE_HOME/gvfs/<kind>/<hash of key>, never inside an
 * export, so clients cannot see or change it.
 */
export function defaultStateDir(kind: string, key: string): string {
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  const id = createHash('sha256').update(key).digest('hex').slice(0, 16);
  return path.join(base, 'gvfs', kind, id);
}

/** Read the 32-byte secret kept in a state directory, creating it (owner-only) on first use. */
export async function loadSecret(stateDir: string): Promise<Buffer> {
  await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = path.join(stateDir, 'handle-secret');
  try {
    const s = await fs.readFile(file);
    if (s.length === 32) return s;
    throw new Error(`${file}: corrupt handle secret (expected 32 bytes, found ${s.length})`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const s = randomBytes(32);
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, s, { mode: 0o600 });
  await fs.rename(tmp, file);
  return s;
}
