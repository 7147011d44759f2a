import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fuseSkip } from '../fuse/mount-helper.js';
import { describeRun, ensureFsx, fsxArgs, runFsx, startFsxServer, startTarget, type ConfigName, type FsxServer, type FsxTarget } from './helpers.js';

/**
 * Fixed in CI (a failure prints the seed and how to replay it); GVFS_FSX_SEEDS / GVFS_FSX_OPS change them by
 * hand. 2, 4 and 6 are seeds whose first 2000 operations hit the stale-size bugs of 98df170 in the long runs
 * (bench/results/fsx-long: write-back seed 2 op 945, write-through seed 4 op 1288, no-cache seed 6 op 50 and
 * seed 4 op 1508); the bugs are timing-dependent, so a seed that once failed may pass on another run.
 */
export const SEEDS = (process.env.GVFS_FSX_SEEDS ?? '2,4,6').split(',').map(Number);
export const OPS = Number(process.env.GVFS_FSX_OPS ?? 2000);

/** In CI a missing prerequisite (root, /dev/fuse) fails loudly instead of skipping. */
export const fuseSkipUnlessCi = (): string | false => (process.env.CI ? false : fuseSkip());

/**
 * gvfs-fsx on one mount configuration: every seed's run agrees with the
 * model after every operation (size by fstat and SEEK_END, the bytes
 * touched, the whole file every 100 operations, and for two-mounts the
 * file through the second mount after every close); once the mounts have
 * ended (a write-back cache flushes), the server's copy of every file is the
 * model's final state byte for byte.
 */
export function exerciseConfig(config: ConfigName): void {
  describe(`gvfs-fsx on a gvfs mount: ${config}`, { skip: fuseSkipUnlessCi(), timeout: 15 * 60_000 }, () => {
    let s: FsxServer;
    let t: FsxTarget;
    const passed: number[] = [];
    before(async () => {
      await ensureFsx();
      s = await startFsxServer();
      t = await startTarget(s, config);
    });
    after(async () => {
      await s?.stop();
    });

    for (const seed of SEEDS) {
      test(`seed ${seed}: ${OPS} random operations agree with the model`, { timeout: 8 * 60_000 }, async () => {
        const r = await runFsx(fsxArgs(t, seed, OPS));
        if (r.result === 'ok') passed.push(seed);
        assert.equal(r.result, 'ok', `${config}, seed ${seed}: ${describeRun(r)}`);
        assert.equal(r.code, 0);
      });
    }

    test('after the mounts end, the server holds every file exactly as the model left it', { timeout: 5 * 60_000 }, async (tc) => {
      const codes = await t.stop();
      assert.deepEqual(codes, t.mounts.map(() => 0), t.mounts.map((m) => m.stderr().slice(-3000)).join('\n'));
      // A run that failed is reported by its own test; its file stopped half-way through the sequence.
      tc.diagnostic(`checking the server's copy for seeds ${passed.join(',') || '(none passed)'}`);
      // -K N:N: nothing after the last fsync, so every byte and the size must be the model's final state.
      for (const seed of passed) {
        const r = await runFsx(['-S', String(seed), '-K', `${OPS}:${OPS}`, t.serverFile(seed)]);
        assert.equal(r.code, 0, `${config}, seed ${seed}: the server's copy: ${describeRun(r)}`);
      }
    });
  });
}
