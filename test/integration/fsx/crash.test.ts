import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { forceUnmount, run as runCmd } from '../fuse/mount-helper.js';
import { describeRun, ensureFsx, lastFsync, mountArgs, runFsx, startFsxServer, type FsxServer } from './helpers.js';
import { fuseSkipUnlessCi } from './suite.js';
import { gvfsArgv } from '../../../src/cli/self.js';

/** Fixed in CI; each seed fixes the sequence and when the mount is killed (after how many fsyncs, plus how long). */
const CRASH_SEEDS = (process.env.GVFS_FSX_CRASH_SEEDS ?? '11,12,13').split(',').map(Number);

/**
 * kill -9 of the mount under a running gvfs-fsx, then a new mount on the
 * same cache directory (it recovers the write-back journal), then its end
 * (SIGTERM flushes). The server's file must then be explained by the model:
 *
 *   - its size is one the file had between the last fsync that returned
 *     and the operation under way when the mount died;
 *   - every byte is one that position held at some point in that window
 *     (what was fsync'ed and not overwritten since is there exactly; data
 *     written after the last fsync may be there or not, a position past
 *     EOF at some point may read 0), never a byte that was never written
 *     there (gvfs-fsx -K F:K).
 */
for (const config of ['write-back', 'write-through'] as const) {
  describe(`gvfs-fsx crash: kill -9 of a ${config} mount, remount, flush`, { skip: fuseSkipUnlessCi(), timeout: 10 * 60_000 }, () => {
    let s: FsxServer;
    let key: string;
    before(async () => {
      await ensureFsx();
      s = await startFsxServer();
      key = await s.newKey();
    });
    after(async () => {
      await s?.stop();
    });

    for (const seed of CRASH_SEEDS) {
      test(`seed ${seed}: the server's file after the crash is explained by the model up to the last fsync`, { timeout: 5 * 60_000 }, async (t) => {
        const cacheDir = path.join(s.base, 'cache');
        const args = mountArgs(config, cacheDir)[0];
        const name = `crash-${config}-${seed}.bin`;
        const log = path.join(s.base, `${name}.fsync-log`);
        const m = await s.mount('mnt', key, args);
        const run = runFsx(['-S', String(seed), '-N', '100000000', '-f', log, path.join(m.mnt, name)], { timeoutMs: 240_000 });
        let ended = false;
        void run.then(() => (ended = true));
        // When to kill: after 1..12 fsyncs have returned, and 0..400 ms more (from the seed, so a failure replays closely).
        const fsyncs = 1 + (seed * 7) % 12;
        const extraMs = (seed * 131) % 400;
        while (!ended && (await fs.readFile(log, 'utf8').catch(() => '')).split('\n').length <= fsyncs) await new Promise((r) => setTimeout(r, 25));
        await new Promise((r) => setTimeout(r, extraMs));
        if (ended) assert.fail(`gvfs-fsx ended before the kill: ${describeRun(await run)}`);
        m.proc.kill('SIGKILL');
        if (m.proc.exitCode === null && m.proc.signalCode === null) await once(m.proc, 'exit');
        const r = await run;
        // Until the kill, every check passed (a mismatch before it is a bug of its own); then a call failed.
        assert.equal(r.result, 'error', `the exerciser should end on a failed call when its mount dies: ${describeRun(r)}`);
        const k = r.op!;
        const f = await lastFsync(log);
        await forceUnmount(m.mnt);
        // The next mount of the session recovers the journal; gvfs flush (through its control socket) delivers it.
        const again = await s.mount('mnt', key, args);
        let stopped = false;
        try {
          const flushed = await runCmd(process.execPath, gvfsArgv(['flush', '--cache-dir', cacheDir, '--json']));
          const check = await runFsx(['-S', String(seed), '-K', `${f}:${k}`, path.join(s.exportDir, name)]);
          t.diagnostic(`${config}, seed ${seed}: killed at op ${k}, last fsync at op ${f}: ${check.stdout.trim() || check.stderr.trim()}`);
          assert.equal(check.code, 0, `${config}, seed ${seed}: killed at op ${k}, last fsync at op ${f}: ${describeRun(check)}\ngvfs flush: ${flushed.stdout}`);
          // And the recovering mount ends cleanly.
          stopped = true;
          const code = await again.stop();
          assert.equal(code, 0, `the remount ended with ${code ?? again.proc.signalCode}: ${again.stderr().slice(-3000)}`);
        } finally {
          // A failed seed must not leave its mount holding the cache directory for the next one.
          if (!stopped) await again.stop();
        }
      });
    }
  });
}
