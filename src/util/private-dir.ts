import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/**
 * A directory only we can use, for files other local users must not plant
 * or read (logs of detached mounts, control sockets whose usual place is
 * too long a path): /run/gvfs for root, else $XDG_RUNTIME_DIR/gvfs, else
 * $XDG_STATE_HOME/gvfs/run (~/.local/state/gvfs/run); GVFS_RUNTIME_DIR
 * overrides (tests, several independent setups on one host). Never a shared
 * directory such as /tmp, where a name can be taken or a symbolic link
 * planted before we open it.
 *
 * The directory is created 0700 and then checked without following links:
 * a directory (not a symlink), owned by us, no access for group or others.
 */
export async function privateDir(): Promise<string> {
  const uid = process.getuid?.() ?? 0;
  const dir = process.env.GVFS_RUNTIME_DIR
    ? path.resolve(process.env.GVFS_RUNTIME_DIR)
    : uid === 0
      ? '/run/gvfs'
      : process.env.XDG_RUNTIME_DIR
        ? path.join(process.env.XDG_RUNTIME_DIR, 'gvfs')
        : path.join(process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state'), 'gvfs', 'run');
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await fs.lstat(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory (a symbolic link?): refusing to keep private files there`);
  if (st.uid !== uid) throw new Error(`${dir} belongs to uid ${st.uid}, not to us (${uid}): refusing to keep private files there`);
  if (st.mode & 0o077) await fs.chmod(dir, 0o700);
  return dir;
}

/**
 * Create a new file, owner-only, that did not exist (O_EXCL) and is not a
 * symbolic link (O_NOFOLLOW): `prefix-<pid>[-n].log` in `dir`.
 */
export async function createPrivateFile(dir: string, prefix: string, suffix = '.log'): Promise<{ path: string; handle: fs.FileHandle }> {
  const flags = constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_APPEND;
  for (let n = 0; ; n++) {
    const p = path.join(dir, `${prefix}-${process.pid}${n ? `-${n}` : ''}${suffix}`);
    try {
      return { path: p, handle: await fs.open(p, flags, 0o600) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || n >= 100) throw e;
    }
  }
}

/** Open a file the user named for appending, refusing a symbolic link as its last component. */
export async function openAppendNoFollow(file: string): Promise<fs.FileHandle> {
  return fs.open(file, constants.O_RDWR | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW, 0o600);
}

/** The last `lines` lines of an open file, read through its descriptor (never by name again). */
export async function tailOf(h: fs.FileHandle, lines: number, maxBytes = 64 * 1024): Promise<string> {
  const { size } = await h.stat();
  const len = Math.min(size, maxBytes);
  const buf = Buffer.alloc(len);
  const { bytesRead } = await h.read(buf, 0, len, size - len);
  return buf.subarray(0, bytesRead).toString('utf8').trim().split('\n').slice(-lines).join('\n');
}
