import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { writeKeyFile } from '../../src/channel/session-key.js';
import { startChain, type Chain } from '../helpers/chain.js';
import { skewedClock } from '../helpers/skewed-clock.js';
import { spawnMount, type MountProc } from '../integration/fuse/mount-helper.js';

export { fuseSkip } from '../integration/fuse/mount-helper.js';
export const run = promisify(execFile);

/** The mount configurations issue 15's failures were seen on. */
export type MountKind = 'write-back' | 'write-through' | 'no-cache';

export interface Issue15Mount {
  c: Chain;
  m: MountProc;
  /** A directory on the mount every user may write (the session maps to alice). */
  dir: string;
  /** The same directory on the upstream server's disk. */
  up: string;
  cacheDir?: string;
  stop(): Promise<void>;
}

/**
 * programs → FUSE mount → proxy client (with the disk cache as `kind` says)
 * → proxy server → gvfs serve, as a user runs `gvfs mount --cache-dir`;
 * `serverClockAheadMs`: the server's clock runs that far ahead of ours
 * (negative: behind), as another machine's may.
 */
export async function startIssue15Mount(kind: MountKind, extra: string[] = [], o: { cacheDir?: string; serverClockAheadMs?: number; beforeMount?: (up: string) => Promise<void> } = {}): Promise<Issue15Mount> {
  const skew = o.serverClockAheadMs;
  const c = await startChain('gvfs', skew ? { wrapUpstream: (b) => skewedClock(b, skew) } : {});
  const up = path.join(c.upstream.dir, 'pub');
  await fs.mkdir(up, { mode: 0o777 });
  await fs.chmod(up, 0o777);
  await o.beforeMount?.(up);
  const keyFile = path.join(c.base, 'alice.key');
  await writeKeyFile(keyFile, c.key);
  const cacheDir = kind === 'no-cache' ? undefined : (o.cacheDir ?? path.join(c.base, 'cache'));
  const cacheArgs = cacheDir ? ['--cache-dir', cacheDir, kind === 'write-back' ? '--write-back' : '--write-through'] : [];
  let m: MountProc;
  try {
    m = await spawnMount(`127.0.0.1:${c.proxyServerPort}`, path.join(c.base, 'mnt'), ['--key', keyFile, ...cacheArgs, ...extra]);
  } catch (e) {
    await c.stop();
    throw e;
  }
  return {
    c,
    m,
    dir: path.join(m.mnt, 'pub'),
    up,
    cacheDir,
    async stop() {
      await m.stop();
      await c.stop();
    },
  };
}

/** Compile a C program given as source text into `dir`; returns the executable's path. */
export async function compileC(dir: string, name: string, source: string): Promise<string> {
  const src = path.join(dir, `${name}.c`);
  const exe = path.join(dir, name);
  await fs.writeFile(src, source);
  await run('cc', ['-O1', '-Wall', '-o', exe, src]);
  return exe;
}

/** A tmpfs of `size` (e.g. '3m') mounted on a fresh directory under `parent`; root only. */
export async function smallTmpfs(parent: string, name: string, size: string): Promise<{ dir: string; unmount(): Promise<void> }> {
  const dir = path.join(parent, name);
  await fs.mkdir(dir, { recursive: true });
  await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0777`, 'tmpfs', dir]);
  return {
    dir,
    async unmount() {
      await run('umount', ['-l', dir]).catch(() => undefined);
    },
  };
}
