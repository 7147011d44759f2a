import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FileStore } from '../../../src/store/file-store.js';
import { pushImage } from '../../../src/image/push.js';
import { gcStore, loadImage, removeImage } from '../../../src/image/catalog.js';
import { readPublisherKey, readTrustedKeys, writePublisherKey } from '../../../src/image/signature.js';
import { CHUNKS, GC_LOCK, PENDING } from '../../../src/image/layout.js';
import { ChunkCache } from '../../../src/backends/store/chunk-cache.js';
import { tempDir } from '../../helpers/local-server.js';

async function count(s: FileStore, prefix: string): Promise<number> {
  let n = 0;
  for await (const _ of s.list(prefix)) n++;
  return n;
}

describe('gc (file:// store)', { timeout: 120_000 }, () => {
  test('removes unused chunks only; a push in progress blocks it; a gc in progress makes a push wait', async () => {
    const work = await tempDir('gvfs-gc-');
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    const key = await readPublisherKey(path.join(work, 'pub'));
    const trusted = await readTrustedKeys([pubFile]);
    const s = new FileStore(path.join(work, 'store'));
    const dir = (n: string) => path.join(work, n);
    for (const n of ['a', 'b']) {
      await mkdir(dir(n));
      await writeFile(path.join(dir(n), 'shared'), Buffer.alloc(300_000, 7).fill(1, 0, 1000));
      await writeFile(path.join(dir(n), 'own'), randomBytes(400_000));
    }
    await pushImage(s, dir('a'), 'a', key);
    await pushImage(s, dir('b'), 'b', key);
    const all = await count(s, CHUNKS);
    await removeImage(s, 'b');
    // Young chunks are kept within the grace period.
    assert.equal((await gcStore(s)).deleted, 0);
    const r = await gcStore(s, { graceMs: 0 });
    assert.ok(r.deleted > 0 && r.deleted < all);
    const check = async (name: string) => {
      const v = await loadImage(s, name, trusted);
      const c = new ChunkCache(s);
      for (const e of v.manifest.entries) if (e.type === 'file') for (const [, len, h] of e.extents) if (h) await c.get(h, len);
    };
    await check('a');

    // gc during a push (after its chunks, before its manifest): refuses, deletes nothing.
    let during;
    await pushImage(s, dir('b'), 'b', key, {
      beforeManifest: async () => {
        during = await gcStore(s, { graceMs: 0 });
      },
    });
    assert.match(during!.refused ?? '', /push is in progress/);
    await check('b');
    assert.equal(await count(s, PENDING), 0, 'lease left behind');
    assert.equal(await count(s, GC_LOCK), 0, 'gc lock left behind');

    // A push during a gc waits for the lock (here: gives up after its wait), and takes nothing on trust.
    await s.put(GC_LOCK, Buffer.from('{}'));
    await assert.rejects(pushImage(s, dir('a'), 'a2', key, { gcWaitMs: 1000 }), /a gc holds/);
    await s.delete(GC_LOCK);
    // A stale lease (dead push) does not block gc forever.
    await s.put(`${PENDING}dead`, Buffer.from('{}'));
    assert.ok((await gcStore(s, { graceMs: 0 })).refused);
    assert.equal((await gcStore(s, { graceMs: 0, leaseMs: 0 })).refused, undefined);
  });
});
