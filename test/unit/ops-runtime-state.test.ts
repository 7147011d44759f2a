import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';

/** A daemon's state file keeps its recent warnings and errors (what gvfs status shows), and is gone after close. */
describe('runtime state files', { timeout: 60_000 }, () => {
  test('warnings and errors logged by any layer land in the state file, the last 20 of them', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-rt-'));
    process.env.GVFS_RUNTIME_DIR = dir;
    const { registerDaemon, listDaemons, RECENT_ERRORS } = await import('../../src/util/runtime-state.js');
    const { logger } = await import('../../src/util/log.js');
    const reg = await registerDaemon({ role: 'test' });
    const log = logger('cache');
    log.info('not this one');
    log.warn('disk almost full');
    log.error({ err: new Error('EIO on block 7') }, 'flush failed');
    for (let i = 0; i < 30; i++) log.warn(`w${i}`);
    let mine;
    for (let i = 0; i < 100; i++) {
      mine = (await listDaemons()).find((d) => d.pid === process.pid);
      if (mine?.recentErrors.at(-1)?.msg === 'w29') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(mine?.alive, true);
    assert.equal(mine.recentErrors.length, RECENT_ERRORS);
    assert.deepEqual(mine.recentErrors.map((e) => e.msg), Array.from({ length: 20 }, (_, i) => `w${i + 10}`));
    assert.equal(mine.recentErrors[0].layer, 'cache');
    assert.equal(mine.recentErrors[0].level, 'warn');
    await reg.close();
    assert.equal((await listDaemons()).find((d) => d.pid === process.pid), undefined);
    // Early lines, before the last 20: the error with its cause was kept while it was recent.
    const reg2 = await registerDaemon({ role: 'test2' });
    log.error({ err: new Error('EIO on block 7') }, 'flush failed');
    for (let i = 0; i < 100; i++) {
      const d = (await listDaemons()).find((x) => x.role === 'test2');
      if (d?.recentErrors.length) {
        assert.deepEqual([d.recentErrors[0].level, d.recentErrors[0].msg], ['error', 'flush failed: EIO on block 7']);
        break;
      }
      assert.ok(i < 99, 'error never reached the state file');
      await new Promise((r) => setTimeout(r, 100));
    }
    await reg2.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
});
