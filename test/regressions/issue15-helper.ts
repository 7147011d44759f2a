import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

export { fuseSkip } from '../integration/fuse/mount-helper.js';
export const run = promisify(execFile);

// The mount set-up lives in test/helpers/cached-mount.ts; issue 15's tests know it by these names.
export { startCachedMount as startIssue15Mount, type CachedMount as Issue15Mount, type MountKind } from '../helpers/cached-mount.js';

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
