import { createHash } from 'node:crypto';
import path from 'node:path';
import { alive } from './block-store.js';
import * as f from './fs-cb.js';

/**
 * Layout of a cache directory:
 *
 *   DIR/blocks/...          shared read cache (any session, any process)
 *   DIR/tmp/                block files being written (renamed into blocks/)
 *   DIR/sessions/<name>/    one session's own state: journal-*.log, lock,
 *                           control (where its control socket is), stats.json,
 *                           hot.list (its protected blocks, for the next start)
 *
 * A session directory belongs to one live proxy client at a time (the lock
 * file holds its pid); a restarted proxy client of the same session takes it
 * over and finishes the flush its journal describes.
 */
export function sessionDirName(session: string): string {
  return /^[A-Za-z0-9._-]{1,64}$/.test(session) && !session.startsWith('.') ? session : createHash('sha256').update(session).digest('hex').slice(0, 32);
}

export function sessionPath(cacheDir: string, session: string): string {
  return path.join(cacheDir, 'sessions', sessionDirName(session));
}

export async function listSessions(cacheDir: string): Promise<string[]> {
  return (await f.readdir(path.join(cacheDir, 'sessions')).catch(() => [] as string[])).sort();
}

export class SessionInUseError extends Error {
  override name = 'SessionInUseError';
}

/** Take the session directory's lock (a stale lock of a dead process is taken over). */
export async function lockSession(dir: string): Promise<{ release(): Promise<void> }> {
  await f.mkdir(dir);
  const lock = path.join(dir, 'lock');
  for (let i = 0; i < 5; i++) {
    try {
      const fd = await f.open(lock, 'wx');
      await f.writeAll(fd, Buffer.from(`${process.pid}\n`), 0);
      await f.close(fd);
      return {
        release: () => f.unlink(lock).catch(() => undefined),
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const pid = await readPid(lock);
    if (pid !== undefined && pid !== process.pid && alive(pid)) throw new SessionInUseError(`cache session directory ${dir} is in use by process ${pid}`);
    if (pid === process.pid) throw new SessionInUseError(`cache session directory ${dir} is already open in this process`);
    await f.unlink(lock).catch(() => undefined);
  }
  throw new SessionInUseError(`could not lock ${dir}`);
}

export async function readPid(file: string): Promise<number | undefined> {
  try {
    const fd = await f.open(file, 'r');
    try {
      const b = Buffer.alloc(32);
      const n = await f.readFully(fd, b, 0, 32, 0);
      const pid = Number(b.subarray(0, n).toString().trim());
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } finally {
      await f.close(fd);
    }
  } catch {
    return undefined;
  }
}

/** Replace a small file atomically (temp + rename). */
export async function writeFileAtomic(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = await f.open(tmp, 'w');
  try {
    await f.writeAll(fd, Buffer.isBuffer(data) ? data : Buffer.from(data), 0);
  } finally {
    await f.close(fd);
  }
  await f.rename(tmp, file);
}

export async function readSmallFile(file: string): Promise<string | undefined> {
  try {
    const fd = await f.open(file, 'r');
    try {
      const size = (await f.fstat(fd)).size;
      if (size > 64 << 20) return undefined;
      const b = Buffer.alloc(size);
      await f.readFully(fd, b, 0, size, 0);
      return b.toString();
    } finally {
      await f.close(fd);
    }
  } catch {
    return undefined;
  }
}
