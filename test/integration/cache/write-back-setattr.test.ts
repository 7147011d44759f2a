import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import { ROOT, startCacheChain, type CacheChain } from './helpers.js';

/**
 * tar's per-file SETATTRs (owner, mode, times) after it wrote a file wait in
 * the write-back journal behind the file's writes instead of crossing the
 * link at once; what the server could refuse (set-id bits, a new owner, a
 * size, the server's time) is still sent at once.
 */
describe('cache: write-back SETATTRs', { timeout: 300_000 }, () => {
  let c: CacheChain;
  before(async () => {
    c = await startCacheChain();
  });
  after(() => c.stop());

  test("a file's chown (to itself), chmod and utimes after its writes: answered at once, shown at once, delivered after the writes in one SETATTR", async () => {
    const s = await c.startSession({ cache: { maxDirtyAgeMs: 600_000 } });
    const f = await s.client.create(ROOT, s.root, 'x.txt', { mode: 'unchecked', attrs: { mode: 0o644 } });
    const fh = f.fh!;
    const data = Buffer.from('hello, journalled attributes\n');
    await s.client.write(ROOT, fh, 0, data, StableHow.UNSTABLE);
    const own = await s.client.getattr(ROOT, fh);
    const [sa0, w0] = [c.upstreamCalls('SETATTR'), c.upstreamCalls('WRITE')];
    const atime = { sec: 1_000_000_001, nsec: 123_456_789 };
    const mtime = { sec: 1_000_000_002, nsec: 987_654_321 };
    await s.client.setattr(ROOT, fh, { uid: own.uid, gid: own.gid });
    const w = await s.client.setattr(ROOT, fh, { mode: 0o600 });
    assert.equal(w.after?.mode, 0o600, "the reply's attributes have the new mode");
    await s.client.setattr(ROOT, fh, { atime, mtime });
    assert.equal(c.upstreamCalls('SETATTR') - sa0, 0, 'no SETATTR crossed yet');
    assert.equal(c.upstreamCalls('WRITE') - w0, 0, 'nor a WRITE');
    assert.equal(s.cache.stats().setattrsJournalled, 3);
    const a = await s.client.getattr(ROOT, fh);
    assert.deepEqual([a.mode, a.size, a.atime, a.mtime], [0o600, data.length, atime, mtime], 'GETATTR shows what is owed');
    const onDisk = await fs.stat(path.join(c.exportDir, 'x.txt'), { bigint: true });
    assert.equal(Number(onDisk.mode) & 0o777, 0o644, 'the server still has the old mode');
    assert.equal((await s.cache.flush()).failed.length, 0);
    assert.equal(c.upstreamCalls('SETATTR') - sa0, 1, 'the three SETATTRs crossed as one');
    const st = await fs.stat(path.join(c.exportDir, 'x.txt'), { bigint: true });
    assert.equal(Number(st.mode) & 0o7777, 0o600);
    assert.equal(st.mtimeNs, 1_000_000_002_987_654_321n, 'the mtime set after the writes is the one the server keeps');
    assert.equal(st.atimeNs, 1_000_000_001_123_456_789n);
    assert.ok((await fs.readFile(path.join(c.exportDir, 'x.txt'))).equals(data));
    await s.stop();
  });

  test('what the server may refuse or change is sent at once, after the writes: set-id bits, another owner, a size, the server clock', async () => {
    const s = await c.startSession({ cache: { maxDirtyAgeMs: 600_000 } });
    const f = await s.client.create(ROOT, s.root, 'y.txt', { mode: 'unchecked', attrs: { mode: 0o644 } });
    const fh = f.fh!;
    const own = await s.client.getattr(ROOT, fh);
    const cases: Array<[string, Parameters<typeof s.client.setattr>[2]]> = [
      ['a set-uid bit', { mode: 0o4755 }],
      ['another owner', { uid: own.uid + 1 }],
      ['a size', { size: 3 }],
      ["the server's time", { mtime: 'server' }],
    ];
    for (const [what, attrs] of cases) {
      await s.client.write(ROOT, fh, 0, Buffer.from('abcdef'), StableHow.UNSTABLE);
      const [sa0, w0] = [c.upstreamCalls('SETATTR'), c.upstreamCalls('WRITE')];
      await s.client.setattr(ROOT, fh, attrs).catch(() => undefined); // refused or not: it was asked at once
      assert.equal(c.upstreamCalls('SETATTR') - sa0, 1, `${what}: the SETATTR crossed at once`);
      assert.ok(c.upstreamCalls('WRITE') - w0 >= 1, `${what}: after the file's writes`);
    }
    assert.equal(s.cache.stats().setattrsJournalled, 0);
    await s.stop();
  });

  test('the journal cannot take the SETATTR (cache disk full): it is sent at once, after the writes, never lost', async () => {
    let full = false;
    // A SETATTR's batch is 60 bytes (record 24 + 36), with the file's FILE record when the segment lacks it; DONE marks (36) still go in.
    const failAppend = (bytes: number) => (full && bytes >= 60 && bytes <= 200 ? Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }) : undefined);
    const s = await c.startSession({ cache: { maxDirtyAgeMs: 600_000, journal: { failAppend } } });
    const f = await s.client.create(ROOT, s.root, 'full.txt', { mode: 'unchecked', attrs: { mode: 0o644 } });
    const data = Buffer.alloc(4096, 7);
    await s.client.write(ROOT, f.fh!, 0, data, StableHow.UNSTABLE);
    const [sa0, w0] = [c.upstreamCalls('SETATTR'), c.upstreamCalls('WRITE')];
    full = true;
    const w = await s.client.setattr(ROOT, f.fh!, { mode: 0o600 });
    full = false;
    assert.equal(w.after?.mode, 0o600);
    assert.equal(c.upstreamCalls('SETATTR') - sa0, 1, 'sent at once');
    assert.ok(c.upstreamCalls('WRITE') - w0 >= 1, 'after the writes it follows');
    assert.equal(Number((await fs.stat(path.join(c.exportDir, 'full.txt'))).mode) & 0o777, 0o600);
    assert.ok((await fs.readFile(path.join(c.exportDir, 'full.txt'))).equals(data));
    assert.equal(s.cache.stats().setattrsJournalled, 0);
    await s.stop();
  });

  test('a directory made here: chmod and utimes wait in the journal, and go before any call that names the directory', async () => {
    const s = await c.startSession({ cache: { maxDirtyAgeMs: 600_000 } });
    const d = (await s.client.mkdir(ROOT, s.root, 'made', { mode: 0o755 })).fh!;
    const own = await s.client.getattr(ROOT, d);
    const mtime = { sec: 1_100_000_000, nsec: 5 };
    const sa0 = c.upstreamCalls('SETATTR');
    await s.client.setattr(ROOT, d, { uid: own.uid, gid: own.gid });
    await s.client.setattr(ROOT, d, { mode: 0o750 });
    await s.client.setattr(ROOT, d, { mtime });
    assert.equal(c.upstreamCalls('SETATTR') - sa0, 0, 'nothing crossed yet');
    const a = await s.client.getattr(ROOT, d);
    assert.deepEqual([a.mode, a.mtime], [0o750, mtime]);
    assert.equal(Number((await fs.stat(path.join(c.exportDir, 'made'))).mode) & 0o777, 0o755, 'the server still has the old mode');
    // A call naming the directory: the SETATTR it owes crosses first (the server checks the create against the new mode).
    const c0 = c.upstreamCalls('CREATE');
    await s.client.create(ROOT, d, 'inside', { mode: 'unchecked', attrs: { mode: 0o644 } });
    assert.equal(c.upstreamCalls('SETATTR') - sa0, 1, 'one SETATTR, merged');
    assert.equal(c.upstreamCalls('CREATE') - c0, 1);
    assert.equal(Number((await fs.stat(path.join(c.exportDir, 'made'))).mode) & 0o777, 0o750, 'on the server before the create');

    // Listing it, looking in it: the same.
    for (const [what, call] of [
      ['READDIRPLUS', (h: Buffer) => s.client.readdirplus(ROOT, h, 0n, Buffer.alloc(8), 4096, 65536)],
      ['LOOKUP', (h: Buffer) => s.client.lookup(ROOT, h, 'nothing-here').catch(() => undefined)],
    ] as const) {
      const h = (await s.client.mkdir(ROOT, s.root, `made-${what}`, { mode: 0o755 })).fh!;
      await s.client.setattr(ROOT, h, { mode: 0o700 });
      const before = c.upstreamCalls('SETATTR');
      await call(h);
      assert.equal(c.upstreamCalls('SETATTR') - before, 1, `${what}: the owed SETATTR crossed first`);
      assert.equal(Number((await fs.stat(path.join(c.exportDir, `made-${what}`))).mode) & 0o777, 0o700);
    }

    // Removed while it owes a SETATTR: the SETATTR goes first, and nothing is left owing to a dead handle.
    const e = (await s.client.mkdir(ROOT, s.root, 'gone', { mode: 0o755 })).fh!;
    await s.client.setattr(ROOT, e, { mode: 0o711 });
    await s.client.rmdir(ROOT, s.root, 'gone');
    const st = s.cache.stats();
    assert.equal(st.flushBacklog.records, 0);
    assert.deepEqual(st.flushErrors, []);

    // A directory this cache did not make: sent at once.
    await fs.mkdir(path.join(c.exportDir, 'theirs'));
    const t = await s.lookup('theirs');
    const b = c.upstreamCalls('SETATTR');
    await s.client.setattr(ROOT, t, { mode: 0o700 });
    assert.equal(c.upstreamCalls('SETATTR') - b, 1);
    assert.equal(s.cache.stats().setattrsJournalled, 6); // 3 of `made`, 1 of each listed one, 1 of `gone`
    await s.stop();
  });
});
