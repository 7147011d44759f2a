import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BlockStore } from '../../../../src/wrappers/cache/block-store.js';

const BS = 64 * 1024;
const TAG = '0123456789abcdef';

/** Read all of `fd` (an open whole file) from 0. */
async function readAll(fd: number, size: number): Promise<Buffer> {
  const h = await fs.open(`/proc/self/fd/${fd}`, 'r');
  try {
    const b = Buffer.alloc(size + 1);
    const { bytesRead } = await h.read(b, 0, b.length, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await h.close();
  }
}

/** A version's whole file made from its blocks (BlockStore.makeWhole) and found again (whole). */
describe('BlockStore: whole files', { timeout: 60_000 }, () => {
  let dir: string;
  let store: BlockStore;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bstore-whole-'));
    store = new BlockStore({ dir, limit: () => 1 << 30, maxOpenFiles: 64 });
    await store.init();
  });
  after(async () => {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** File `fk` of `size` random bytes stored as blocks; their keys. */
  const blocks = async (fk: string, size: number) => {
    const data = randomBytes(size);
    const keys: string[] = [];
    for (let i = 0; i * BS < size; i++) {
      const key = BlockStore.key(fk, i, TAG);
      await store.put(key, data.subarray(i * BS, Math.min(size, (i + 1) * BS)), 0, store.gen(fk, i));
      keys.push(key);
    }
    return { data, keys };
  };

  test('made from the blocks: exactly the version\'s bytes; the blocks stay', async () => {
    const { data, keys } = await blocks('bb01', 3 * BS + 123);
    assert.equal(await store.makeWhole('bb01', TAG, data.length, BS, keys), true);
    const w = await store.whole('bb01', TAG, data.length);
    assert.ok(w, 'found');
    try {
      assert.ok((await readAll(w.fd, data.length)).equals(data));
    } finally {
      w.release();
    }
    assert.ok(keys.every((k) => store.has(k)), 'the blocks are still there');
    assert.ok(store.has(BlockStore.wholeKey('bb01', TAG)));
    assert.equal(await store.makeWhole('bb01', TAG, data.length, BS, keys), false, 'made once');
    assert.deepEqual(await fs.readdir(store.tmpDir), [], 'no temporary file left');
  });

  test('not made when a block is missing, short, or the list does not cover the size', async () => {
    const { data, keys } = await blocks('bb02', 2 * BS + 5);
    assert.equal(await store.makeWhole('bb02', TAG, data.length, BS, keys.slice(0, 2)), false, 'too few blocks');
    await fs.truncate(path.join(store.blocksDir, 'bb', 'bb02', `1.${TAG}`), 100);
    assert.equal(await store.makeWhole('bb02', TAG, data.length, BS, keys), false, 'a short block');
    await fs.rm(path.join(store.blocksDir, 'bb', 'bb02', `0.${TAG}`));
    assert.equal(await store.makeWhole('bb02', TAG, data.length, BS, keys), false, 'a block gone');
    assert.equal(await store.whole('bb02', TAG, data.length), undefined);
    assert.deepEqual(await fs.readdir(store.tmpDir), []);
  });

  test('a block dropped while the whole file is made (our own write): not kept (its file gone, or its generation moved)', async () => {
    const { data, keys } = await blocks('bb03', 4 * BS);
    const p = store.makeWhole('bb03', TAG, data.length, BS, keys);
    store.dropBlocks('bb03', [2]);
    assert.equal(await p, false);
    assert.equal(await store.whole('bb03', TAG, data.length), undefined);
    assert.deepEqual(await fs.readdir(store.tmpDir), []);
  });

  test('dropping any block of the file drops its whole file too; a held descriptor still reads', async () => {
    const { data, keys } = await blocks('bb04', 2 * BS);
    assert.ok(await store.makeWhole('bb04', TAG, data.length, BS, keys));
    const w = (await store.whole('bb04', TAG, data.length))!;
    store.dropBlocks('bb04', [0]);
    assert.ok(!store.has(BlockStore.wholeKey('bb04', TAG)));
    assert.ok((await readAll(w.fd, data.length)).equals(data), 'held: still the bytes');
    w.release();
    assert.equal(await store.whole('bb04', TAG, data.length), undefined, 'gone');
  });

  test('a whole file of another length is deleted, not served', async () => {
    const { data, keys } = await blocks('bb05', 2 * BS + 1);
    assert.ok(await store.makeWhole('bb05', TAG, data.length, BS, keys));
    assert.equal(await store.whole('bb05', TAG, data.length + 1), undefined);
    assert.equal(await store.whole('bb05', TAG, data.length), undefined, 'deleted');
  });

  test('not made where the cache\'s size cannot hold it beside its blocks', async () => {
    const small = new BlockStore({ dir, limit: () => 3 * BS, maxOpenFiles: 64 });
    await small.init();
    try {
      const data = randomBytes(2 * BS);
      const keys = [0, 1].map((i) => BlockStore.key('bb07', i, TAG));
      for (const [i, k] of keys.entries()) await small.put(k, data.subarray(i * BS, (i + 1) * BS), 0, small.gen('bb07', i));
      assert.equal(await small.makeWhole('bb07', TAG, data.length, BS, keys), false);
      assert.ok(keys.every((k) => small.has(k)), 'the blocks untouched');
    } finally {
      await small.close();
    }
  });

  test('another process sharing the directory finds it, and a scan learns it with its size', async () => {
    const { data, keys } = await blocks('bb06', 3 * BS);
    assert.ok(await store.makeWhole('bb06', TAG, data.length, BS, keys));
    const other = new BlockStore({ dir, limit: () => 1 << 30, maxOpenFiles: 64 });
    await other.init();
    try {
      const w = await other.whole('bb06', TAG, data.length);
      assert.ok(w);
      assert.ok((await readAll(w.fd, data.length)).equals(data));
      w.release();
      const third = new BlockStore({ dir, limit: () => 1 << 30, maxOpenFiles: 64 });
      await third.init();
      await third.scan();
      assert.ok(third.has(BlockStore.wholeKey('bb06', TAG)), 'scanned');
      const before = third.used;
      third.dropFile('bb06');
      assert.equal(before - third.used, data.length * 2, 'the whole file counted at its size, beside its blocks');
      await third.close();
    } finally {
      await other.close();
    }
  });
});
