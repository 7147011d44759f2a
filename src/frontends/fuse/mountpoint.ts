import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface MountEntry {
  mountPoint: string;
  /** major:minor of the mounted file system (names its /sys/class/bdi entry). */
  dev: string;
  fsType: string;
  source: string;
}

/** Octal escapes in /proc/self/mountinfo fields (space → \040 ...). */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The mount at exactly `dir` (the last one, if stacked), from /proc/self/mountinfo. */
export async function mountAt(dir: string): Promise<MountEntry | undefined> {
  const want = await canonical(dir);
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  let found: MountEntry | undefined;
  for (const line of text.split('\n')) {
    if (!line) continue;
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (sep < 0 || f.length < sep + 3) continue;
    const mp = unescape(f[4]);
    if (mp === want) found = { mountPoint: mp, dev: f[2], fsType: f[sep + 1], source: unescape(f[sep + 2]) };
  }
  return found;
}

/**
 * The absolute path of `dir` with symlinks resolved in its parent: realpath
 * of the mountpoint itself fails on a dead FUSE mount ("Transport endpoint
 * is not connected"), which is exactly the case to detect.
 */
export async function canonical(dir: string): Promise<string> {
  const abs = path.resolve(dir);
  if (abs === '/') return abs;
  try {
    return path.join(await fs.realpath(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

/**
 * 'live': answers; 'stale': a FUSE mount whose process is gone (ENOTCONN /
 * ECONNABORTED); 'unresponsive': its process is there but a stat through it
 * failed or took longer than the probe's bound (e.g. its server is down).
 */
export type MountState = 'none' | 'live' | 'stale' | 'unresponsive';

/** Longest a stat through a mount may take before it counts as unresponsive (ms). */
export const PROBE_MS = 3000;

/**
 * What is mounted at `dir`. The stat through the mount runs in a child
 * process killed after `probeMs`: in this process it would hold a libuv
 * thread (and the exit) until the mount's own call timed out, which with
 * its server down is a minute or more.
 */
export async function mountState(dir: string, probeMs = PROBE_MS): Promise<{ state: MountState; entry?: MountEntry; reason?: string }> {
  const entry = await mountAt(dir);
  if (!entry) return { state: 'none' };
  const code = await statCode(entry.mountPoint, probeMs);
  if (code === 'OK') return { state: 'live', entry };
  if (code === 'ENOTCONN' || code === 'ECONNABORTED') return { state: 'stale', entry };
  return { state: 'unresponsive', entry, reason: code };
}

/**
 * "OK", the stat's error code, or "TIMEOUT": from a child process, so a
 * hanging mount cannot hang us. On TIMEOUT the child is killed but not
 * waited for: once the mount's process has read the request, the kernel
 * waits for its answer even for SIGKILL (until the mount's own call
 * deadline), and until then the child holds the mount busy.
 */
function statCode(p: string, ms: number): Promise<string> {
  const script = 'require("fs").stat(process.argv[1], (e) => process.stdout.write(e ? String(e.code) : "OK"))';
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script, p], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      child.stdout!.destroy();
      child.unref();
      resolve('TIMEOUT');
    }, ms);
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', (e) => {
      clearTimeout(t);
      resolve(`probe failed: ${e.message}`);
    });
    child.once('close', () => {
      clearTimeout(t);
      resolve(out.trim() || 'probe failed: no answer');
    });
  });
}

export const isFuse = (e: MountEntry): boolean => e.fsType === 'fuse' || e.fsType.startsWith('fuse.');

/**
 * Unmount a FUSE mount: `fusermount -u` (lazy with -z), else `umount` (-l),
 * which root may use when fusermount refuses (e.g. a mount it did not record).
 * Throws with both tools' complaints if neither succeeds.
 */
export async function fuseUnmount(dir: string, o: { lazy?: boolean } = {}): Promise<void> {
  const mp = await canonical(dir);
  const errors: string[] = [];
  for (const [cmd, args] of [
    ['fusermount', o.lazy ? ['-u', '-z', mp] : ['-u', mp]],
    // -c: no canonicalising, which would stat through the mount (a dead server's mount answers EIO, or not at all).
    ['umount', o.lazy ? ['-c', '-l', mp] : ['-c', mp]],
  ] as const) {
    try {
      await run(cmd, [...args], { timeout: 30_000 });
      return;
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      errors.push(`${cmd}: ${(err.stderr || err.message).trim()}`);
      if (!(await mountAt(mp))) return; // gone anyway
    }
  }
  throw new Error(`could not unmount ${mp}: ${errors.join('; ')}`);
}

/**
 * Poll until `dir` is no longer the given mount (unmounted from outside); returns a stop function. `dev`:
 * the mount's major:minor, so another FUSE mount made at the path since (ours detached from outside while
 * a busy file kept it) counts as ours gone.
 */
export function watchUnmount(dir: string, intervalMs: number, onGone: () => void, dev?: string): () => void {
  let stopped = false;
  const t = setInterval(async () => {
    try {
      const e = await mountAt(dir);
      if (!stopped && (!e || !isFuse(e) || (dev !== undefined && e.dev !== dev))) {
        stopped = true;
        clearInterval(t);
        onGone();
      }
    } catch {
      /* transient read failure of mountinfo: try again next tick */
    }
  }, intervalMs);
  t.unref();
  return () => {
    stopped = true;
    clearInterval(t);
  };
}
