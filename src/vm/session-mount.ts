import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { gvfsArgsOf, gvfsArgv } from '../cli/self.js';
import { mountState } from '../frontends/fuse/mountpoint.js';
import type { MountRef } from './clone.js';
import { pidAlive } from './qemu.js';

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
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  // Clones started at once share one mount: the first starts it, the others wait for it.
  const unlock = await lock(path.join(dir, 'lock'));
  try {
    const rec = JSON.parse(await fs.readFile(recFile, 'utf8').catch(() => 'null')) as MountRef | null;
    if (rec?.pid && (await pidAlive(rec.pid, rec.mnt)) && (await mountState(mnt)).state === 'live') return rec;
    await fs.mkdir(mnt, { recursive: true, mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOTCONN' && e.code !== 'EEXIST') throw e;
    });
    const info = await spawnMount([...mountArgs, mnt], path.join(dir, 'mount.log'));
    const ref: MountRef = { mnt: info.mounted, pid: info.pid, cacheDir: info.cacheDir ?? cacheDir, owned: true };
    await fs.writeFile(recFile, JSON.stringify(ref) + '\n');
    return ref;
  } finally {
    await unlock();
  }
}

/**
 * `gvfs mount ... --foreground --json` started detached (its own session,
 * stderr to `logFile`), as `gvfs mount` without --foreground does, minus
 * the second Node start; resolves with its first line once it has mounted.
 */
async function spawnMount(args: string[], logFile: string): Promise<{ mounted: string; pid: number; cacheDir?: string | null }> {
  const log = await fs.open(logFile, 'a');
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(process.execPath, gvfsArgv(['mount', ...args, '--foreground', '--json']), { detached: true, stdio: ['ignore', 'pipe', log.fd] });
  } finally {
    await log.close();
  }
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('error', reject);
    child.once('exit', (code) => {
      void fs
        .readFile(logFile, 'utf8')
        .catch(() => '')
        .then((text) => reject(new Error(`gvfs mount failed (exit ${code}); ${logFile}:\n${text.trim().split('\n').slice(-5).join('\n')}`)));
    });
  });
  child.stdout!.destroy();
  child.removeAllListeners('exit');
  child.unref();
  return JSON.parse(line);
}

/** An exclusive lock file holding our PID; a lock whose holder is gone is taken over. */
async function lock(file: string, timeoutMs = 120_000): Promise<() => Promise<void>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fh = await fs.open(file, 'wx', 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => fs.rm(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = Number(await fs.readFile(file, 'utf8').catch(() => ''));
    if (holder && !(await pidAlive(holder))) {
      await fs.rm(file, { force: true });
      continue;
    }
    if (Date.now() > end) throw new Error(`${file}: held by pid ${holder} for over ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The cache directory of a running `gvfs mount` at `mnt`, read from the
 * mount process's command line (its --cache-dir), so `gvfs vm suspend` can
 * flush the write-back cache of a mount it did not start. Undefined when
 * the mount has no cache (writes then reach the server at close).
 */
export async function cacheDirOfMount(mnt: string): Promise<string | undefined> {
  const want = path.resolve(mnt);
  for (const pid of await fs.readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    const args = gvfsArgsOf((await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0'));
    if (args?.[0] !== 'mount') continue;
    const cwd = await fs.readlink(`/proc/${pid}/cwd`).catch(() => '/');
    if (!args.slice(1).some((a) => path.resolve(cwd, a) === want)) continue;
    const c = args.findIndex((a) => a === '--cache-dir' || a.startsWith('--cache-dir='));
    if (c < 0) return undefined;
    const v = args[c].includes('=') ? args[c].slice(args[c].indexOf('=') + 1) : args[c + 1];
    return path.resolve(cwd, v);
  }
  return undefined;
}
