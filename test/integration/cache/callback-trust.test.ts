import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ACCESS3_EXTEND, ACCESS3_MODIFY, ACCESS3_READ } from '../../../src/nfs3/constants.js';
import { ROOT, startCacheChain, type CacheChain, type Session } from './helpers.js';

/**
 * Callback model: what a delegation lets the cache answer without asking.
 * Names found in a directory the cache holds a delegation of, and ACCESS
 * answers for a file it holds one of, are answered locally until another
 * session's change recalls the delegation (the target: a warm
 * read-mostly workload makes no calls but for what others change). Then the
 * very next call sees the change: a rename elsewhere is seen at once, never
 * after a timeout. Timeouts are an hour, so only the recall can show it.
 */
describe('callback: names and ACCESS answered under delegations, and a recall ends it at once', { timeout: 240_000 }, () => {
  let c: CacheChain;
  let a: Session;
  let b: Session;
  const cache = { consistency: 'callback' as const, writeBack: false, attrTimeoutMs: 3_600_000, dirTimeoutMs: 3_600_000 };
  const RW = ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND;

  before(async () => {
    c = await startCacheChain();
    a = await c.startSession({ cacheDir: path.join(c.base, 'cache-a'), cache });
    b = await c.startSession({ cacheDir: path.join(c.base, 'cache-b'), cache });
    await fs.mkdir(path.join(c.exportDir, 'src'));
    for (const n of ['x', 'y', 'z']) await fs.writeFile(path.join(c.exportDir, 'src', n), `file ${n}\n`, { mode: 0o644 });
  });
  after(async () => {
    await c?.stop();
  });

  const calls = () => ({ lookup: c.upstreamCalls('LOOKUP'), access: c.upstreamCalls('ACCESS') });

  it('a second pass of LOOKUP + GETATTR + ACCESS over a delegated directory asks the server nothing', async () => {
    const dir = await b.lookup('src');
    const pass = async () => {
      for (const n of ['x', 'y', 'z']) {
        const fh = (await b.client.lookup(ROOT, dir, n)).fh;
        await b.client.getattr(ROOT, fh);
        const r = await b.client.access(ROOT, fh, RW);
        assert.equal(r.access & RW, RW);
      }
    };
    await pass();
    const was = calls();
    const hits = b.cache.stats().accessHits;
    await pass();
    await pass();
    assert.deepEqual(calls(), was, 'no LOOKUP or ACCESS reached the server on the warm passes');
    assert.equal(b.cache.stats().accessHits - hits, 6, 'six ACCESS answered from the cache');
  });

  it("another session's rename in the directory is seen by the very next LOOKUP (the recall retired the names)", async () => {
    const dirB = await b.lookup('src');
    const x = (await b.client.lookup(ROOT, dirB, 'x')).fh;
    const dirA = await a.lookup('src');
    await a.client.rename(ROOT, dirA, 'x', dirA, 'x2');
    await assert.rejects(b.client.lookup(ROOT, dirB, 'x'), (e: Error & { code?: string }) => e.code === 'NOENT' || /NOENT/.test(e.message));
    assert.deepEqual((await b.client.lookup(ROOT, dirB, 'x2')).fh, x);
  });

  it("another session's chmod is seen by the very next ACCESS and GETATTR (the recall ended the file's trust)", async () => {
    const dirB = await b.lookup('src');
    const y = (await b.client.lookup(ROOT, dirB, 'y')).fh;
    await b.client.getattr(ROOT, y);
    await b.client.access(ROOT, y, RW);
    const was = calls().access;
    await b.client.access(ROOT, y, RW);
    assert.equal(calls().access, was, 'trusted before the change');
    const yA = (await a.client.lookup(ROOT, await a.lookup('src'), 'y')).fh;
    await a.client.setattr(ROOT, yA, { mode: 0o400 });
    const r = await b.client.access(ROOT, y, RW);
    assert.equal(calls().access, was + 1, 'asked the server again');
    assert.equal(r.attr?.mode !== undefined ? r.attr.mode & 0o777 : 0o400, 0o400);
    assert.equal((await b.client.getattr(ROOT, y)).mode & 0o777, 0o400);
  });
});
