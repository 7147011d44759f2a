import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { DEFAULT_ATTR_CACHE_MS } from '../../../src/backends/local-export/local-export.js';
import { StableHow } from '../../../src/nfs3/constants.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';
import { readName, readsWithin, ROOT, startCacheChain, type CacheChain, type Session } from './helpers.js';

const run = promisify(execFile);

/**
 * The callback model with changes made on the proxy server's own disk by
 * other programs (issue 20, cb20): the disk watcher's events recall the
 * delegations of what changed, so a client serving a file from its cache
 * under a delegation sees a change made by `sh -c 'echo x > f'` on the
 * server within a bounded time (the recall's trip), not never; lost events
 * recall every delegation of the export. An export that is not watched gets
 * no delegations: its callback clients ask every call and write through.
 * Timeouts are an hour, so only a recall (or asking) can show a change.
 */
const BOUND = 10_000; // a recall's trip on a loaded machine: generous
const cache = { consistency: 'callback' as const, writeBack: false, attrTimeoutMs: 3_600_000, dirTimeoutMs: 3_600_000 };

const get = readName;
/** Wait until `s` reads `want` from `name`; fails once `bound` ms have passed since the change. */
const sees = (s: Session, name: string, want: string, bound = BOUND): Promise<number> => readsWithin(s, name, want, bound);

const asked = (c: CacheChain) => ['GETATTR', 'LOOKUP', 'READ', 'ACCESS'].reduce((n, p) => n + (c.proxyServer.server.stats.callsByProc.get(`nfs3.${p}`) ?? 0), 0);

/** Read `name` until a read asks the server nothing (B trusts its copy: only a recall can refresh it). */
async function trusted(c: CacheChain, s: Session, name: string, want: string): Promise<void> {
  for (let i = 0; ; i++) {
    const n0 = asked(c);
    assert.equal(await get(s, name), want);
    if (asked(c) === n0) return;
    assert.ok(i < 20, `B never came to trust its copy of ${name}`);
  }
}

describe('callback: a change on the server disk recalls the delegations of what changed', { skip: requirePrereq(isRoot()), timeout: 300_000 }, () => {
  let c: CacheChain;
  let b: Session;
  const onDisk = (script: string) => run('sh', ['-c', script], { cwd: c.exportDir });

  before(async () => {
    c = await startCacheChain({ localExport: true });
    assert.ok(c.proxyServer.diskWatchers[0], 'the proxy server does not watch its local export (root is needed: are we?)');
    b = await c.startSession({ cacheDir: path.join(c.base, 'cache-b'), cache });
    await onDisk('echo "version 1" > f && echo keep > g && echo other > h');
  });
  after(async () => {
    await c?.stop();
  });

  it('B serves f from its cache under a delegation; `sh -c "echo x > f"` on the server reaches B within a bounded time', async () => {
    await trusted(c, b, 'f', 'version 1\n');
    assert.ok(b.cache.held!.count > 0, 'B holds delegations');
    for (let round = 2; round <= 4; round++) {
      const text = `version ${round}`; // same size each round: only the recall tells B
      const r0 = c.proxyServer.delegations.c.changedElsewhere;
      await onDisk(`echo "${text}" > f`);
      await sees(b, 'f', `${text}\n`);
      assert.ok(c.proxyServer.delegations.c.changedElsewhere > r0, 'the disk change recalled a delegation');
      await trusted(c, b, 'f', `${text}\n`);
    }
  });

  it('a rename on the server disk retires the names B trusted in the directory', async () => {
    await trusted(c, b, 'g', 'keep\n');
    await onDisk('mv g g-moved');
    const t0 = Date.now();
    while (await b.lookup('g').then(() => true, () => false)) {
      assert.ok(Date.now() - t0 <= BOUND, 'B still finds a name moved away on disk');
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(await get(b, 'g-moved'), 'keep\n');
  });

  it('a lost event queue (overflow) recalls every delegation of the export', async () => {
    const max = Number(readFileSync('/proc/sys/fs/fanotify/max_queued_events', 'utf8'));
    const w = c.proxyServer.diskWatchers[0]!;
    await trusted(c, b, 'h', 'other\n');
    const lost0 = c.proxyServer.delegations.c.lostAll;
    await onDisk('mkdir -p ../filler-cb');
    w.fan.pause(true);
    try {
      // Fill the kernel's queue while nobody reads it; the change to h comes after, so its event is lost.
      await onDisk(`cd ../filler-cb && i=0; while [ $i -lt ${max + 2000} ]; do : > f$i; i=$((i+1)); done`);
      await onDisk('echo "OTHER" > h');
    } finally {
      w.fan.pause(false);
    }
    await sees(b, 'h', 'OTHER\n', 60_000);
    assert.ok(c.proxyServer.delegations.c.lostAll > lost0, 'the lost events recalled every delegation');
  });
});

describe('callback: an export the proxy server does not watch gets no delegations', { timeout: 120_000 }, () => {
  let c: CacheChain;
  let b: Session;

  before(async () => {
    c = await startCacheChain({ localExport: true, watchDisk: false });
    assert.equal(c.proxyServer.diskWatchers[0], undefined);
    b = await c.startSession({ cacheDir: path.join(c.base, 'cache-b'), cache: { ...cache, writeBack: true } });
    await fs.writeFile(path.join(c.exportDir, 'f'), 'one\n');
  });
  after(async () => {
    await c?.stop();
  });

  it("DELEGATE is refused; a change on disk is seen once the export's attribute cache lets it through; a write-back write is written through", async () => {
    assert.equal(await get(b, 'f'), 'one\n');
    assert.equal(c.proxyServer.delegations.c.granted, 0, 'a delegation was granted on an unwatched export');
    assert.equal(b.cache.held!.count, 0);
    const n0 = asked(c);
    assert.equal(await get(b, 'f'), 'one\n');
    assert.ok(asked(c) > n0, 'B trusted its copy without a delegation');
    await fs.writeFile(path.join(c.exportDir, 'f'), 'two\n');
    // Asked every call: seen once the export's own short attribute cache (1 s, not dropped: nothing watches) lets it through.
    await sees(b, 'f', 'two\n', DEFAULT_ATTR_CACHE_MS + 4000);
    const fh = await b.lookup('f');
    await b.client.write(ROOT, fh, 0, Buffer.from('THREE\n'), StableHow.UNSTABLE);
    assert.equal(await fs.readFile(path.join(c.exportDir, 'f'), 'utf8'), 'THREE\n', 'written through: on the server when WRITE returned');
    assert.equal(b.cache.held!.c.notDelegable > 0, true);
  });
});
