import fs from 'node:fs/promises';
import path from 'node:path';
import { writeKeyFile } from '../../src/channel/session-key.js';
import { spawnMount, type MountProc } from '../integration/fuse/mount-helper.js';
import { startChain, type Chain } from './chain.js';
import { skewedClock } from './skewed-clock.js';

/** The mount configurations: a write-back or write-through disk cache, or none. */
export type MountKind = 'write-back' | 'write-through' | 'no-cache';

export interface CachedMount {
  c: Chain;
  /** The running `gvfs mount` (replaced by remount()). */
  m: MountProc;
  /** A directory on the mount every user may write (the session maps to alice). */
  dir: string;
  /** The same directory on the upstream server's disk. */
  up: string;
  cacheDir?: string;
  /** kill -9 the mount process: no flush, no unmount; its write-back journal stays in the cache directory. */
  crash(): Promise<void>;
  /** `gvfs mount` again with the same arguments and cache directory (after crash(), or a clean stop of `m`). */
  remount(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * programs → FUSE mount → proxy client (with the disk cache as `kind` says)
 * → proxy server → gvfs serve, as a user runs `gvfs mount --cache-dir`;
 * `serverClockAheadMs`: the server's clock runs that far ahead of ours
 * (negative: behind), as another machine's may.
 */
export async function startCachedMount(kind: MountKind, extra: string[] = [], o: { cacheDir?: string; serverClockAheadMs?: number; beforeMount?: (up: string) => Promise<void> } = {}): Promise<CachedMount> {
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
  const mount = () => spawnMount(`127.0.0.1:${c.proxyServerPort}`, path.join(c.base, 'mnt'), ['--key', keyFile, ...cacheArgs, ...extra]);
  let m: MountProc;
  try {
    m = await mount();
  } catch (e) {
    await c.stop();
    throw e;
  }
  const t: CachedMount = {
    c,
    m,
    dir: path.join(m.mnt, 'pub'),
    up,
    cacheDir,
    async crash() {
      const p = t.m.proc;
      if (p.exitCode !== null || p.signalCode !== null) return;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await gone;
    },
    async remount() {
      t.m = await mount();
    },
    async stop() {
      await t.m.stop();
      await c.stop();
    },
  };
  return t;
}
