import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { fusePrereqs, requirePrereq } from '../../helpers/prereq.js';
import { gvfsArgv } from '../../../src/cli/self.js';
import { newSessionKey, writeKeyFile } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import { tempDir } from '../../helpers/local-server.js';

export const run = promisify(execFile);

/** FUSE mounts need /dev/fuse, fusermount and (for allow_other and the tests' other users) root. */
export function fuseSkip(): string | false {
  return requirePrereq(...fusePrereqs());
}

export interface MountProc {
  mnt: string;
  pid: number;
  proc: ChildProcess;
  info: Record<string, unknown>;
  /** stderr so far (logs; the final stats line). */
  stderr(): string;
  /** SIGTERM and wait for the exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** The stats the process printed when it stopped. */
  stats(): Record<string, any> | undefined;
}

/** `gvfs mount ... --foreground --json` in its own process; resolves once it has mounted. */
export async function spawnMount(server: string, mnt: string, extra: string[] = []): Promise<MountProc> {
  // A dead mount left there answers ENOTCONN: `gvfs mount` is to clear it, not the helper.
  await fs.mkdir(mnt, { recursive: true }).catch((e) => {
    if ((e as NodeJS.ErrnoException).code !== 'ENOTCONN') throw e;
  });
  const proc = spawn(process.execPath, gvfsArgv(['mount', '--server', server, mnt, '--foreground', '--json', ...extra]), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, GVFS_LOG_LEVEL: process.env.GVFS_LOG_LEVEL ?? 'warn' },
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  const rl = createInterface({ input: proc.stdout! });
  const line = await new Promise<string>((resolve, reject) => {
    rl.once('line', resolve);
    void exited.then((c) => reject(new Error(`gvfs mount exited with ${c} before mounting:\n${err}`)));
  });
  const info = JSON.parse(line) as Record<string, unknown>;
  return {
    mnt: info.mounted as string,
    pid: proc.pid!,
    proc,
    info,
    stderr: () => err,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const code = await exited;
      // Belt and braces: never leave a mount behind a failed test.
      await forceUnmount(mnt);
      return code;
    },
    stats() {
      // The mount's stderr is its JSON log: the line whose msg is "gvfs mount: stats".
      for (const line of err.split('\n')) {
        if (!line.includes('"gvfs mount: stats"')) continue;
        return JSON.parse(line).stats;
      }
      return undefined;
    },
  };
}

/**
 * The kernel forgets its cached pages of `file` on a mount (FUSE passes
 * POSIX_FADV_DONTNEED on to the page cache), so the next read reaches the mount.
 */
export async function dropPages(file: string): Promise<void> {
  await run('python3', ['-c', 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)', file]);
}

/** Lazily unmount whatever is still mounted at `mnt` (ignores "not mounted"). */
export async function forceUnmount(mnt: string): Promise<void> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  if (!text.split('\n').some((l) => l.split(' ')[4] === mnt)) return;
  await run('fusermount', ['-u', '-z', mnt]).catch(() => run('umount', ['-l', mnt]).catch(() => undefined));
}

/** Run a command as an unprivileged user (uid/gid 1000, no groups). */
export function runAs(uid: number, cmd: string, args: string[]) {
  return run('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', cmd, ...args]);
}

/** errno code of a failed child (e.g. from its stderr) or fs call. */
export async function errCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    return err.code && typeof err.code === 'string' ? err.code : String(err.stderr ?? err.message);
  }
  return 'no error';
}

/** A proxy server exporting a fresh directory (alice mapped to root) and a `gvfs mount` of it with a disk cache. */
export interface CachedMount {
  base: string;
  exportDir: string;
  cacheDir: string;
  ps: ProxyServer;
  m: MountProc;
  /** Stop the mount and the server; remove the directories. */
  close(): Promise<void>;
}

/** Start a CachedMount in a new directory named with `prefix`; `mountArgs` beside --key and --cache-dir. */
export async function startCachedMount(prefix: string, mountArgs: string[]): Promise<CachedMount> {
  const base = await tempDir(prefix);
  const exportDir = path.join(base, 'export');
  const cacheDir = path.join(base, 'cache');
  await fs.mkdir(exportDir);
  const k = newSessionKey('alice');
  const ps = await createProxyServer({
    sessions: new SessionRegistry([k]),
    exports: [{ kind: 'local', dir: exportDir }],
    map: new Map([['alice', { uid: 0, gid: 0, gids: [] }]]),
    stateDir: path.join(base, 'ps-state'),
  });
  let m: MountProc | undefined;
  const close = async () => {
    await m?.stop();
    await ps.close();
    await fs.rm(base, { recursive: true, force: true });
  };
  try {
    const port = (await ps.listen(0, '127.0.0.1')).port;
    await writeKeyFile(path.join(base, 'k.key'), k);
    m = await spawnMount(`127.0.0.1:${port}`, path.join(base, 'mnt'), ['--key', path.join(base, 'k.key'), '--cache-dir', cacheDir, ...mountArgs]);
  } catch (e) {
    await close();
    throw e;
  }
  return { base, exportDir, cacheDir, ps, m, close };
}

/**
 * Read `file` at each [offset, length] through one open descriptor and check
 * the bytes against `data` (short only at its end). `dropEach`: the kernel's
 * pages dropped before each read, so that each reaches the mount.
 */
export async function checkReadsAt(file: string, data: Buffer, ranges: Array<[number, number]>, o: { dropEach?: boolean } = {}): Promise<void> {
  const fh = await fs.open(file, 'r');
  try {
    for (const [off, len] of ranges) {
      if (o.dropEach) await dropPages(file);
      const b = Buffer.alloc(len);
      const { bytesRead } = await fh.read(b, 0, len, off);
      const want = data.subarray(off, off + len);
      assert.equal(bytesRead, want.length, `${off}+${len}: length`);
      assert.ok(b.subarray(0, bytesRead).equals(want), `${off}+${len}: bytes`);
    }
  } finally {
    await fh.close();
  }
}
