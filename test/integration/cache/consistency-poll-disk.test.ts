import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { StableHow } from '../../../src/nfs3/constants.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';
import { readName, readsWithin, ROOT, startCacheChain, type CacheChain, type Session } from './helpers.js';

const run = promisify(execFile);

/**
 * The poll consistency model with changes made on the proxy server's own
 * disk by other programs (issue 20): the proxy server exports a local
 * directory and watches it (fanotify, native/src/fanwatch.c); a file
 * changed there by `sh -c 'echo x > file'` shows on a poll-mode proxy
 * client within one poll period, never later; a lost event queue makes
 * every client drop everything.
 */
const P = 1000;
/** What a loaded machine may add to one poll period (the poll's round trip, a late timer, the event's trip). */
const SLACK = 1500;

describe('consistency: poll sees changes made on the server disk by other programs', { skip: requirePrereq(isRoot()), timeout: 240_000 }, () => {
  let c: CacheChain;
  let a: Session;
  let b: Session;
  const onDisk = (script: string) => run('sh', ['-c', script], { cwd: c.exportDir });

  const get = readName;
  /** Wait until `s` reads `want` from `name`; fails the moment it has taken longer than a period + slack. */
  const seesWithinPeriod = (s: Session, name: string, want: string, bound = P + SLACK): Promise<number> => readsWithin(s, name, want, bound);
  async function inSync(s: Session): Promise<void> {
    for (const t0 = Date.now(); !s.cache.stats().pollInSync; ) {
      if (Date.now() - t0 > 30_000) throw new Error('the poller never got in sync');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  before(async () => {
    c = await startCacheChain({ localExport: true });
    assert.ok(c.proxyServer.diskWatchers[0], 'the proxy server does not watch its local export (root is needed: are we?)');
    const cache = { consistency: 'poll' as const, pollMs: P, attrTimeoutMs: 3_600_000, writeBack: false };
    a = await c.startSession({ cacheDir: path.join(c.base, 'cache-a'), cache });
    b = await c.startSession({ cacheDir: path.join(c.base, 'cache-b'), cache });
    await onDisk('echo "version 1" > f && echo keep > g');
    await Promise.all([inSync(a), inSync(b)]);
  });
  after(async () => {
    await c?.stop();
  });

  it('a file changed by `sh -c "echo x > file"` on the export directory shows on B within one poll period, never later', async () => {
    // B caches f (attributes trusted for an hour under ttl: only the poll can tell it).
    await seesWithinPeriod(b, 'f', 'version 1\n');
    for (let round = 2; round <= 4; round++) {
      const text = `version ${round} ${'x'.repeat(round)}`;
      await onDisk(`echo "${text}" > f`);
      const ms = await seesWithinPeriod(b, 'f', `${text}\n`);
      assert.ok(ms <= P + SLACK, `B saw the change after ${ms} ms`);
    }
    // A new name and a removal, made on disk, show too.
    await assert.rejects(b.lookup('made-on-disk'));
    await onDisk('echo hello > made-on-disk');
    await seesWithinPeriod(b, 'made-on-disk', 'hello\n');
    await onDisk('rm made-on-disk');
    const t0 = Date.now();
    while (await b.lookup('made-on-disk').then(() => true, () => false)) {
      assert.ok(Date.now() - t0 <= P + SLACK, 'B still finds a name removed on disk');
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(await get(b, 'g'), 'keep\n');
  });

  it("the proxy server's own changes are not logged twice (the watcher skips its own process)", async () => {
    const w = c.proxyServer.diskWatchers[0]!;
    const own0 = w.counters.own;
    const log = c.proxyServer.changeLogs[0];
    const inoOf = async (name: string) => (await stat(path.join(c.exportDir, name), { bigint: true })).ino;
    // Export handles (local-export/handles.ts): the inode number at bytes 12..19.
    const logged = (since: bigint) => (log.since(since, 100_000)?.handles ?? []).map((h) => (h.length === 44 ? h.readBigUInt64BE(12) : -1n));
    await a.client.write(ROOT, await a.lookup('g'), 0, Buffer.from('KEEP'), StableHow.FILE_SYNC);
    // A's WRITE is logged as the call settles; anything logging g after this would be the watcher echoing it.
    const s1 = log.seq;
    const g = await inoOf('g');
    // Then a change by another program: once it is logged, the watcher has read past A's write.
    await onDisk('echo later > later');
    const later = await inoOf('later');
    for (const t0 = Date.now(); !logged(s1).includes(later); ) {
      assert.ok(Date.now() - t0 < 30_000, 'the change on disk was never logged');
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(w.counters.own > own0, 'the watcher saw none of our own events');
    assert.ok(!logged(s1).includes(g), "the watcher logged the proxy server's own WRITE again");
    await seesWithinPeriod(b, 'g', 'KEEP\n');
  });

  it('a lost event queue (overflow) makes every poll client drop everything', async () => {
    const max = Number(readFileSync('/proc/sys/fs/fanotify/max_queued_events', 'utf8'));
    const w = c.proxyServer.diskWatchers[0]!;
    await seesWithinPeriod(b, 'f', 'version 4 xxxx\n');
    // B's view of f must be one it trusts (no call to the server), so only a drop-everything can refresh it.
    const asked = () => ['GETATTR', 'LOOKUP', 'READ', 'ACCESS'].reduce((n, p) => n + (c.proxyServer.server.stats.callsByProc.get(`nfs3.${p}`) ?? 0), 0);
    for (let i = 0; ; i++) {
      await b.cache.pollNow();
      const n0 = asked();
      assert.equal(await get(b, 'f'), 'version 4 xxxx\n');
      if (asked() === n0) break;
      assert.ok(i < 20, 'B never came to trust its copy of f');
    }
    const resets0 = b.cache.stats().pollResets;
    const losses0 = c.proxyServer.changeLogs[0].losses;
    // The filler goes OUTSIDE the export (same file system, so the same queue): were it logged, B would be
    // told to drop everything for having more than one reply's worth of changes, overflow or not.
    await onDisk('mkdir ../filler');
    w.fan.pause(true);
    try {
      // Fill the kernel's queue while nobody reads it; the change to f comes after, so its event is lost.
      await onDisk(`cd ../filler && i=0; while [ $i -lt ${max + 2000} ]; do : > f$i; i=$((i+1)); done`);
      await onDisk('echo "changed while the queue was full" > f');
    } finally {
      w.fan.pause(false);
    }
    // The watcher works through the full queue (outside events cost a table lookup each) before the overflow event.
    const ms = await seesWithinPeriod(b, 'f', 'changed while the queue was full\n', 20_000);
    assert.ok(c.proxyServer.changeLogs[0].losses > losses0, 'the change log was not told events were lost');
    // (On a loaded machine B may have seen it by asking, a poll being late: the drop-everything still comes.)
    for (const t0 = Date.now(); b.cache.stats().pollResets === resets0; ) {
      assert.ok(Date.now() - t0 < P + SLACK, `B was not told to drop everything (it saw the change after ${ms} ms)`);
      await new Promise((r) => setTimeout(r, 10));
    }
  });
});
