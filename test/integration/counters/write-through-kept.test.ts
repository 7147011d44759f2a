import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import { readAll, ROOT, startCacheChain, type CacheChain } from '../cache/helpers.js';

/**
 * Write-through: a WRITE that covers whole blocks leaves them in the cache
 * as clean blocks of the version the server's wcc data names (the chain of
 * proxies in-process; gvfs mount's write-back case is in counters.test.ts).
 */
describe('counters: written blocks kept (write-through)', { timeout: 180_000 }, () => {
  let c: CacheChain;
  before(async () => {
    c = await startCacheChain();
  });
  after(() => c.stop());

  test('whole blocks written one WRITE at a time are read back with no READ on the wire', async () => {
    const s = await c.startSession({ cache: { writeBack: false } });
    const data = randomBytes(3 * (1 << 20) + 777);
    const fh = (await s.client.create(ROOT, s.root, 'wt.bin', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
    for (let off = 0; off < data.length; off += 1 << 20) await s.client.write(ROOT, fh, off, data.subarray(off, Math.min(data.length, off + (1 << 20))), StableHow.FILE_SYNC);
    assert.ok((await fs.readFile(path.join(c.exportDir, 'wt.bin'))).equals(data));
    await s.cache.settle();
    const st0 = s.cache.stats();
    assert.equal(st0.writtenBlocksKept, 4, JSON.stringify(st0));
    const r0 = c.upstreamCalls('READ');
    assert.ok((await readAll(s.client, fh, data.length)).equals(data));
    const st = s.cache.stats();
    assert.equal(c.upstreamCalls('READ') - r0, 0, 'no READ reached the server');
    assert.equal(st.channelReadBytes, st0.channelReadBytes);
    assert.equal(st.fromCacheBytes - st0.fromCacheBytes, data.length);
    assert.equal(st.fromCacheBytes + st.fromJournalBytes + st.zeroBytes + st.fromChannelBytes, st.readBytes);
    await s.stop();
  });
});
