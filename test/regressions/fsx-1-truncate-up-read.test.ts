import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { fuseSkip, run, startIssue15Mount, type Issue15Mount, type MountKind } from './issue15-helper.js';

/**
 * gvfs-fsx failure 1 (bench/results/fsx-long, write-through seed 2 op 24826): after a small ftruncate UP,
 * a read across the old EOF stopped at the OLD size although fstat said the new one, when another
 * descriptor was reading the file meanwhile. The front end cleared the read-ahead before SETATTR, so a
 * read arriving during it refilled a chunk with the old size; the kernel took the short reply as EOF.
 * The hand repro (tools/fsx/repro/truncate-up-read-race.py) failed ~60% of iterations before the fix.
 */
// dist/test/regressions → the repository (the repro is not compiled into dist).
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const REPRO = path.join(REPO, 'tools', 'fsx', 'repro', 'truncate-up-read-race.py');
const ITERS = Number(process.env.GVFS_FSX_ITERS ?? 200);

for (const kind of ['no-cache', 'write-through'] as MountKind[]) {
  describe(`fsx (1): a read after a truncate up sees the new size while another descriptor reads, ${kind}`, { skip: fuseSkip(), timeout: 300_000 }, () => {
    let t: Issue15Mount;
    before(async () => {
      t = await startIssue15Mount(kind);
    });
    after(async () => {
      await t?.stop();
    });

    test(`${ITERS} truncates up: fstat and the read both see the new size`, { timeout: 240_000 }, async () => {
      const r = await run('python3', [REPRO, path.join(t.dir, 'f.bin'), String(ITERS)], { timeout: 200_000 });
      assert.match(r.stdout, new RegExp(`^0/${ITERS} failed`, 'm'), r.stdout);
    });
  });
}
