import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { mountState } from '../frontends/fuse/mountpoint.js';
import type { MountRef } from './clone.js';
import { pidAlive } from './qemu.js';

const run = promisify(execFile);
const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');

/**
 * The GVFS session mount `gvfs vm clone|resume --server ...` uses: one
 * `gvfs mount` per proxy server and session (the same link options) under
 * `<state root>/mounts/<id>/`, started detached the first time and reused
 * by every later clone, so clones of a host share one proxy client and its
 * disk cache. `gvfs vm stop` ends it with its last clone.
 */
export async function ensureSessionMount(stateRoot: string, mountArgs: string[], cacheDir?: string): Promise<MountRef> {
  const id = createHash('sha256').update(JSON.stringify(mountArgs)).digest('hex').slice(0, 12);
  const dir = path.join(stateRoot, 'mounts', id);
  const mnt = path.join(dir, 'mnt');
  const recFile = path.join(dir, 'mount.json');
  const rec = JSON.parse(await fs.readFile(recFile, 'utf8').catch(() => 'null')) as MountRef | null;
  if (rec?.pid && (await pidAlive(rec.pid)) && (await mountState(mnt)).state === 'live') return rec;
  await fs.mkdir(mnt, { recursive: true, mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOTCONN' && e.code !== 'EEXIST') throw e;
  });
  const { stdout } = await run(process.execPath, [CLI, 'mount', ...mountArgs, '--log', path.join(dir, 'mount.log'), '--json', mnt]).catch((e: { stderr?: string; message: string }) => {
    throw new Error(`gvfs mount failed: ${(e.stderr ?? e.message).trim()}`);
  });
  const info = JSON.parse(stdout.trim().split('\n').pop()!) as { mounted: string; pid: number; cacheDir?: string | null };
  const ref: MountRef = { mnt: info.mounted, pid: info.pid, cacheDir: info.cacheDir ?? cacheDir, owned: true };
  await fs.writeFile(recFile, JSON.stringify(ref) + '\n');
  return ref;
}
