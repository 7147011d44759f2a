import { constants as C } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { exportRootIdentity } from '../../proxy/export-root.js';

/** An error with the HTTP status the route answers with. */
export class AgentError extends Error {
  override name = 'AgentError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Confinement of what the agent (root) does for a session to the host's
 * --export-root and --mount-root directories, checked every time it is
 * used — at the first start and at every restart — never once and then
 * trusted: a session user may own directories under those roots and swap
 * one for a symbolic link between two uses.
 */

/** An exported directory as it was checked: its real path and its device and inode. */
export interface CheckedExport {
  /** The path the session asked for. */
  dir: string;
  real: string;
  dev: string;
  ino: string;
}

async function realRoots(roots: string[]): Promise<string[]> {
  return Promise.all(roots.map((r) => fs.realpath(r).catch(() => path.resolve(r))));
}

const inside = (p: string, root: string) => p === root || p.startsWith(root.endsWith('/') ? root : root + '/');

/**
 * Resolve an exported directory and check it lies under one of `roots`.
 * With `recorded` (a restart), it must also still be the same directory
 * (real path, device, inode): swapped for a link or another directory, it is
 * refused (403 CONFINEMENT).
 */
export async function checkExportDir(host: string, dir: string, roots: string[], recorded?: CheckedExport): Promise<CheckedExport> {
  if (!path.isAbsolute(dir)) throw new AgentError(400, 'BAD_PATH', `export path must be absolute: ${dir}`);
  let real: string;
  try {
    real = await fs.realpath(dir);
    if (!(await fs.stat(real)).isDirectory()) throw new AgentError(400, 'BAD_PATH', `${dir} on ${host} is not a directory`);
  } catch (e) {
    if (e instanceof AgentError) throw e;
    throw new AgentError(400, 'BAD_PATH', `${dir} does not exist on ${host}`);
  }
  if (!(await realRoots(roots)).some((r) => inside(real, r))) {
    throw new AgentError(403, 'NOT_ALLOWED', `host ${host} does not allow exports at ${dir}${real !== dir ? ` (it resolves to ${real})` : ''}${roots.length ? ` (allowed under ${roots.join(', ')})` : ' (it allows none)'}`);
  }
  let id;
  try {
    id = await exportRootIdentity(real);
  } catch (e) {
    throw new AgentError(403, 'CONFINEMENT', `export ${dir} on ${host}: ${(e as Error).message}`);
  }
  const now: CheckedExport = { dir, real, dev: String(id.dev), ino: String(id.ino) };
  if (recorded && (recorded.real !== now.real || recorded.dev !== now.dev || recorded.ino !== now.ino)) {
    throw new AgentError(403, 'CONFINEMENT', `export ${dir} on ${host} is no longer the directory that was checked (it was ${recorded.real}, device:inode ${recorded.dev}:${recorded.ino}; now ${now.real}, ${now.dev}:${now.ino}): not served`);
  }
  return now;
}

/**
 * A mount point's path as the agent will use it: absolute, already
 * normal (no ".", "..", "//" or trailing "/": `mnt/<link>/../name` would be
 * one path to a lexical check and another to the kernel), under one of
 * `roots`. Returns the root it lies under (as configured) and the
 * components below it.
 */
export function mountPath(host: string, mnt: string, roots: string[]): { root: string; parts: string[] } {
  if (!path.isAbsolute(mnt)) throw new AgentError(400, 'BAD_PATH', `mount path must be absolute: ${mnt}`);
  if (path.posix.normalize(mnt) !== mnt || mnt.endsWith('/') || mnt.split('/').some((c) => c === '.' || c === '..')) {
    throw new AgentError(400, 'BAD_PATH', `mount point ${mnt} is not a normal path (no ".", ".." or repeated or trailing "/")`);
  }
  for (const r of roots) {
    const root = path.resolve(r);
    if (mnt !== root && inside(mnt, root)) return { root, parts: mnt.slice(root.length).split('/').filter(Boolean) };
  }
  throw new AgentError(403, 'NOT_ALLOWED', `host ${host} does not allow mounts at ${mnt}${roots.length ? ` (allowed under ${roots.join(', ')})` : ' (it allows none)'}`);
}

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

/**
 * Walk from the mount root to the mount point one component at a time on
 * open directory descriptors (`/proc/self/fd/N/name` is `openat(N, name)`:
 * no path is resolved again), refusing any symbolic link and, with
 * `create`, making missing directories there (mkdir never follows a link
 * it would create over; the new directory is then opened O_NOFOLLOW like
 * any other). Returns which directories it made (deepest last).
 */
export async function walkMountPoint(host: string, mnt: string, roots: string[], create: boolean): Promise<{ made: string[] }> {
  const { root, parts } = mountPath(host, mnt, roots);
  const made: string[] = [];
  let dir = await fs.open(root, C.O_RDONLY | C.O_DIRECTORY).catch((e: NodeJS.ErrnoException) => {
    throw new AgentError(400, 'BAD_PATH', `mount root ${root} on ${host}: ${e.code}`);
  });
  let shown = root;
  try {
    for (const [i, name] of parts.entries()) {
      const last = i === parts.length - 1;
      shown = path.join(shown, name);
      const at = `/proc/self/fd/${dir.fd}/${name}`;
      // ENOTCONN: the mount point of a gvfs mount whose process died (a directory underneath).
      const st = await fs.lstat(at).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : last && e.code === 'ENOTCONN' ? 'stale' : Promise.reject(e)));
      if (st === 'stale') break;
      if (st?.isSymbolicLink()) throw new AgentError(403, 'NOT_ALLOWED', `${shown} on ${host} is a symbolic link; mount points and the directories above them must be directories`);
      if (st && !st.isDirectory()) throw new AgentError(400, 'BAD_PATH', `${shown} on ${host} is not a directory`);
      if (!st) {
        if (!create) throw new AgentError(400, 'BAD_PATH', `${shown} does not exist on ${host}`);
        await fs.mkdir(at, { mode: 0o755 });
        made.push(shown);
      }
      // The mount point itself is not entered (it may be a live mount); what is above it is, without following links.
      if (last) break;
      const next = await fs.open(at, DIR_FLAGS).catch((e: NodeJS.ErrnoException) => {
        // ELOOP: swapped for a link since the lstat; ENOTDIR: for something else.
        throw new AgentError(403, 'NOT_ALLOWED', `${shown} on ${host} changed under the agent (${e.code}); not used as a mount point`);
      });
      await dir.close();
      dir = next;
    }
  } finally {
    await dir.close();
  }
  return { made };
}
