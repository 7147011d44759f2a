import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import { readAll, ROOT, startCacheChain, type CacheChain } from './helpers.js';

describe('cache: write-back', { timeout: 300_000 }, () => {
  let c: CacheChain;
  before(async () => {
    c = await startCacheChain();
  });
  after(() => c.stop());

  test('writes are acknowledged locally, read back, sized, and reach the server on flush', async () => {
    const s = await c.startSession({ cache: { maxDirtyAgeMs: 600_000 } });
    const f = await s.client.create(ROOT, s.root, 'wb.bin', { mode: 'unchecked', attrs: { mode: 0o644 } });
    const fh = f.fh!;
    const model = Buffer.alloc(3 * 1024 * 1024 + 77);
    randomBytes(model.length).copy(model);
    const w0 = c.upstreamCalls('WRITE');
    for (let off = 0; off < model.length; off += 256 * 1024) {
      const piece = model.subarray(off, Math.min(model.length, off + 256 * 1024));
      const r = await s.client.write(ROOT, fh, off, piece, off % 2 ? StableHow.FILE_SYNC : StableHow.UNSTABLE);
      assert.equal(r.count, piece.length);
    }
    await s.client.commit(ROOT, fh, 0, 0);
    assert.equal(c.upstreamCalls('WRITE') - w0, 0, 'nothing reached the server yet');
    assert.equal((await fs.stat(path.join(c.exportDir, 'wb.bin'))).size, 0);
    assert.equal((await s.client.getattr(ROOT, fh)).size, model.length, 'GETATTR counts unflushed writes');
    assert.ok((await readAll(s.client, fh, model.length)).equals(model), 'read-your-writes');
    const st = s.cache.stats();
    assert.equal(st.dirtyBytes, model.length);
    assert.equal(st.flushBacklog.bytes, model.length);
    const rep = await s.cache.flush();
    assert.equal(rep.failed.length, 0);
    assert.ok(c.upstreamCalls('WRITE') - w0 > 0);
    assert.ok((await fs.readFile(path.join(c.exportDir, 'wb.bin'))).equals(model), 'the server has every byte');
    assert.equal(s.cache.stats().dirtyBytes, 0);
    await s.client.commit(ROOT, fh, 0, 0); // (queued behind the journal's switch to a fresh segment)
    assert.ok(s.cache.stats().journalBytes < 64 * 1024, `the delivered journal gave its disk back (${s.cache.stats().journalBytes} bytes left)`);
    assert.ok((await readAll(s.client, fh, model.length)).equals(model), 'and reads still agree after the flush');
    await s.stop();
  });
});

describe('cache: our own writes keep the rest of the file cached', { timeout: 300_000 }, () => {
  let c: CacheChain;
  before(async () => {
    c = await startCacheChain();
  });
  after(() => c.stop());

  for (const writeBack of [false, true]) {
    test(`${writeBack ? 'write-back (after the flush)' : 'write-through'}: only the blocks a write touched are fetched again`, async () => {
      const name = `lineage-${writeBack}.bin`;
      const model = randomBytes(8 * 1024 * 1024);
      await fs.writeFile(path.join(c.exportDir, name), model);
      const s = await c.startSession({ cacheDir: path.join(c.base, `cache-lineage-${writeBack}`), cache: { writeBack, maxDirtyAgeMs: 600_000, attrTimeoutMs: 60_000 } });
      const fh = await s.lookup(name);
      assert.ok((await readAll(s.client, fh, model.length)).equals(model));
      await s.cache.settle();
      const patch = randomBytes(5000);
      await s.client.write(ROOT, fh, 3 * 1024 * 1024 + 100, patch, StableHow.FILE_SYNC);
      patch.copy(model, 3 * 1024 * 1024 + 100);
      if (writeBack) assert.equal((await s.cache.flush()).failed.length, 0);
      const r0 = c.upstreamCalls('READ');
      assert.ok((await readAll(s.client, fh, model.length)).equals(model), 'the file reads back with the write');
      const reads = c.upstreamCalls('READ') - r0;
      assert.ok(reads >= 1 && reads <= 2, `only the touched 1 MiB block went to the server again (${reads} READs)`);
      assert.ok((await fs.readFile(path.join(c.exportDir, name))).equals(model));
      await s.stop();
    });
  }
});
