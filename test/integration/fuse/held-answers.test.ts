import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { gvfsArgv } from '../../../src/cli/self.js';
import { controlRequest, controlSocketOf } from '../../../src/wrappers/cache/control-socket.js';
import { listSessions } from '../../../src/wrappers/cache/session-dir.js';
import { fuseSkip, run, spawnMount, startCachedMount, type CachedMount, type MountProc } from './mount-helper.js';

/** The cache's counters now (`gvfs cache stats --json` of the mount's cache directory). */
async function cacheStats(cacheDir: string): Promise<Record<string, number>> {
  return JSON.parse((await run(process.execPath, gvfsArgv(['cache', 'stats', '--cache-dir', cacheDir, '--json']))).stdout).sessions[0].stats;
}

/** A live change of the mount's cache (its control socket, as a session's agent sends it). */
async function configure(cacheDir: string, req: { attrTimeoutMs: number }): Promise<void> {
  for (const s of await listSessions(cacheDir)) {
    const c = await controlSocketOf(path.join(cacheDir, 'sessions', s));
    if (!c) continue;
    const out = await controlRequest(c.socket, { op: 'configure', ...req }, 30_000);
    assert.ok(out.ok, out.error);
    return;
  }
  assert.fail(`no control socket under ${cacheDir}`);
}

/**
 * stat() `file` (its size `size`) every `everyMs` for `forMs`: the cache's counters that moved meanwhile
 * (`d(name)`) and how many stats there were.
 */
async function statEvery(file: string, size: number, cacheDir: string, forMs: number, everyMs: number): Promise<{ d: (k: string) => number; asks: number }> {
  const s0 = await cacheStats(cacheDir);
  const end = performance.now() + forMs;
  let asks = 0;
  while (performance.now() < end) {
    assert.equal((await fs.stat(file)).size, size);
    asks++;
    await delay(everyMs);
  }
  const s = await cacheStats(cacheDir);
  return { d: (k) => s[k] - s0[k], asks };
}

/** Resolves at `t` (performance.now()): here the passage of time is what is tested (the attribute budget). */
async function at(t: number): Promise<void> {
  const left = t - performance.now();
  if (left > 0) await delay(left);
}

/**
 * The kernel's budgets over a disk cache (HeldAnswers): a name or
 * attributes the cache answers from what it holds are kept by the kernel
 * for what is left of --attr-timeout counted from when the server said
 * them — not a whole budget from when the cache answered, which let a
 * change made elsewhere hide for up to twice the timeout. And a file or
 * directory kept in use is renewed ahead, so it never waits for the server.
 */
describe('gvfs mount over a disk cache: the kernel budgets and renewing ahead', { skip: fuseSkip(), timeout: 300_000 }, () => {
  let slow: CachedMount | undefined;
  let other: MountProc | undefined;

  before(async () => {
    slow = await startCachedMount('gvfs-held-answers-', ['--attr-timeout', '3']);
    // Another client of the same proxy server: no cache, asks the server every time.
    other = await spawnMount(slow.m.info.server as string, path.join(slow.base, 'other'), ['--key', path.join(slow.base, 'k.key'), '--attr-timeout', '0']);
  });
  after(async () => {
    await other?.stop();
    await slow?.close();
  });

  test('a change made elsewhere shows within --attr-timeout, also when the kernel forgot the file and the cache answered it again', async () => {
    const { exportDir, m } = slow!;
    const BUDGET = 3000;
    // The bound is only put to the test when the cache answered the old file halfway (below); a machine that
    // held this test back past the cache's own timeout there gets another try, in a new directory.
    for (let attempt = 1; ; attempt++) {
      const sub = `sub${attempt}`;
      // In a directory new to the cache, so that no fetch of its attributes comes after the change (its new
      // mtime would retire the names the cache holds in it).
      await fs.mkdir(path.join(exportDir, sub));
      await fs.writeFile(path.join(exportDir, sub, 'g'), 'x'.repeat(10));
      const g = path.join(m.mnt, sub, 'g');
      const t0 = performance.now();
      assert.equal((await fs.stat(g)).size, 10);
      // Twice: the first LOOKUP of the directory brought the root's new mtime (it was just made), which retired its name.
      await fs.writeFile('/proc/sys/vm/drop_caches', '2');
      assert.equal((await fs.stat(g)).size, 10);
      // Another client replaces g: a new file renamed over it (a new inode, a new size).
      await fs.writeFile(path.join(other!.mnt, sub, 'g2'), 'y'.repeat(20));
      await fs.rename(path.join(other!.mnt, sub, 'g2'), path.join(other!.mnt, sub, 'g'));
      const changed = performance.now();
      // Halfway through the budget the kernel forgets g; its next LOOKUP is answered from the cache, half a budget old.
      await at(t0 + BUDGET / 2);
      await fs.writeFile('/proc/sys/vm/drop_caches', '2');
      const mid = await fs.stat(g);
      if (mid.size !== 10 || performance.now() - t0 >= BUDGET) {
        assert.ok(attempt < 3, `three tries and the cache never answered the old file halfway through the budget`);
        continue;
      }
      // One budget after the change (and a margin for the calls), the mount shows it.
      await at(changed + BUDGET + 300);
      const s = await fs.stat(g);
      assert.equal(s.size, 20, 'the new file, one budget after the change');
      assert.equal(s.ino, (await fs.stat(path.join(exportDir, sub, 'g'))).ino);
      return;
    }
  });
});

describe('gvfs mount over a disk cache: a path kept in use never waits', { skip: fuseSkip(), timeout: 300_000 }, () => {
  let cm: CachedMount | undefined;
  before(async () => {
    // Budgets of seconds, not fractions: a renewal has a quarter of the budget to come back, also on a loaded machine.
    cm = await startCachedMount('gvfs-renew-ahead-', ['--attr-timeout', '2']);
  });
  after(async () => {
    await cm?.close();
  });

  test('stat of a file two directories down every tenth of the budget for five budgets: no miss in the cache, renewals instead', async () => {
    const { exportDir, cacheDir, m } = cm!;
    await fs.mkdir(path.join(exportDir, 'd', 'e'), { recursive: true });
    await fs.writeFile(path.join(exportDir, 'd', 'e', 'f'), 'data');
    const f = path.join(m.mnt, 'd', 'e', 'f');
    assert.equal((await fs.stat(f)).size, 4);
    const { d, asks } = await statEvery(f, 4, cacheDir, 10_000, 200);
    // Without renewing ahead, each of the three names and their attributes would miss once a budget (15 and more).
    // A loaded machine may hold a step past the second half now and then.
    assert.ok(d('lookupMisses') <= 2, `name misses: ${d('lookupMisses')} in ${asks} stats`);
    assert.ok(d('attrMisses') <= 2, `attribute misses: ${d('attrMisses')} in ${asks} stats`);
    assert.ok(d('renewals') >= 8, `renewals: ${d('renewals')}`);
  });
});

/**
 * A session's agent changes a running mount's attribute timeout through its
 * cache's control socket alone: the kernel's budgets follow the cache's
 * (HeldAnswers.budgets), so a shorter timeout holds for what the kernel is
 * told from then on, and renewing ahead stays in step with the cache.
 */
describe('gvfs mount over a disk cache: a live change of the timeout is the whole mount\'s', { skip: fuseSkip(), timeout: 300_000 }, () => {
  test('timeout 5 s changed to 0: what the kernel learns afterwards it asks for again at once', async () => {
    const cm = await startCachedMount('gvfs-live-ttl0-', ['--attr-timeout', '5']);
    const other = await spawnMount(cm.m.info.server as string, path.join(cm.base, 'other'), ['--key', path.join(cm.base, 'k.key'), '--attr-timeout', '0']);
    try {
      const { exportDir, cacheDir, m } = cm;
      await fs.writeFile(path.join(exportDir, 'g'), 'x'.repeat(10));
      const g = path.join(m.mnt, 'g');
      assert.equal((await fs.stat(g)).size, 10);
      await configure(cacheDir, { attrTimeoutMs: 0 });
      // What the kernel holds from before keeps its budget; it forgets it here, and learns g again.
      await fs.writeFile('/proc/sys/vm/drop_caches', '2');
      assert.equal((await fs.stat(g)).size, 10);
      // Another client changes g; the next stat through the mount asks the server.
      await fs.appendFile(path.join(other.mnt, 'g'), 'y'.repeat(10));
      assert.equal((await fs.stat(g)).size, 20, 'the kernel was told a budget of 0 for what it learned after the change');
      // A new name made elsewhere is found at once too (no negative entry kept).
      await assert.rejects(fs.stat(path.join(m.mnt, 'h')), { code: 'ENOENT' });
      await fs.writeFile(path.join(other.mnt, 'h'), 'h');
      assert.equal((await fs.stat(path.join(m.mnt, 'h'))).size, 1);
    } finally {
      await other.stop();
      await cm.close();
    }
  });

  test('timeout 4 s changed to 2 s: a file in use is renewed ahead at the new budget, never missed', async () => {
    // Budgets of seconds, not fractions: a renewal has a quarter of the budget to come back, also on a loaded machine.
    const cm = await startCachedMount('gvfs-live-ttl-half-', ['--attr-timeout', '4']);
    try {
      const { exportDir, cacheDir, m } = cm;
      await fs.mkdir(path.join(exportDir, 'd'));
      await fs.writeFile(path.join(exportDir, 'd', 'f'), 'data');
      const f = path.join(m.mnt, 'd', 'f');
      await configure(cacheDir, { attrTimeoutMs: 2000 });
      await fs.writeFile('/proc/sys/vm/drop_caches', '2');
      assert.equal((await fs.stat(f)).size, 4);
      const { d, asks } = await statEvery(f, 4, cacheDir, 8000, 200);
      // Kernel budgets from the mount's 4 s would have it ask when the cache's 2 s trust had run out: a miss each time.
      assert.ok(d('lookupMisses') + d('attrMisses') <= 3, `misses: ${d('lookupMisses')} names, ${d('attrMisses')} attributes in ${asks} stats`);
      assert.ok(d('renewals') >= 6, `renewals: ${d('renewals')}`);
    } finally {
      await cm.close();
    }
  });
});
