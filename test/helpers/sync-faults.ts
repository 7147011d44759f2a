import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
// dist/test/helpers → the repository (tools/ is not compiled into dist).
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * tools/faults/sync-faults.c built into `dir` with Debian's cc: the
 * LD_PRELOAD shim that makes a process's syncs slow (GVFS_SYNC_DELAY_MS) or
 * fail (GVFS_SYNC_FAIL_DIRS), and logs them (GVFS_SYNC_LOG). Returns the .so.
 */
export async function syncFaults(dir: string): Promise<string> {
  const so = path.join(dir, 'sync-faults.so');
  await run('cc', ['-O2', '-Wall', '-shared', '-fPIC', '-o', so, path.join(REPO, 'tools', 'faults', 'sync-faults.c'), '-ldl']);
  return so;
}
