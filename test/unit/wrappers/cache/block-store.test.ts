import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { read as fsRead, readdirSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BlockStore } from '../../../../src/wrappers/cache/block-store.js';

// Reads of a block whose disk write is still pending (served from the staged bytes) count for the eviction policy
// exactly as reads of a stored block do (issue 16).
describe('BlockStore: reads before the block lands', { timeout: 60_000 }, () => {
  let dir: string;
  let store: BlockStore;
  const BS = 64 * 1024;
  const data = Buffer.alloc(BS, 7);
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bstore-'));
    store = new BlockStore({ dir, limit: () => 1 << 30, maxOpenFiles: 64 });
    await store.init();
  });
  after(async () => {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('a re-read before the store is a re-reference: the block lands protected', async () => {
    const key = BlockStore.key('aa01', 0, '0123456789abcdef');
    store.noteRead(key, 0, BS);
    store.noteRead(key, 0, BS);
    await store.put(key, data, 0, store.gen('aa01', 0));
    assert.ok(store.has(key));
    assert.ok(store.policy.isProtected(key), 'protected after two whole reads');
  });

  test('one sequential pass in several READs is one reference: the block lands in probation', async () => {
    const key = BlockStore.key('aa02', 0, '0123456789abcdef');
    for (let off = 0; off < BS; off += 16 * 1024) store.noteRead(key, off, off + 16 * 1024);
    await store.put(key, data, 0, store.gen('aa02', 0));
    assert.ok(store.has(key));
    assert.ok(!store.policy.isProtected(key), 'still in probation');
    // Its next read from the start is the re-reference, as for any stored block.
    store.noteRead(key, 0, 4096);
    assert.ok(store.policy.isProtected(key), 'promoted by the re-read');
  });

  test('reads before the block lands are judged as the same reads of the stored block would be', async () => {
    const H = BS / 2;
    const cases: Array<[string, Array<[number, number]>]> = [
      ['head then tail', [[0, H], [H, BS]]],
      ['tail then head', [[H, BS], [0, H]]],
      ['one half twice', [[0, H], [0, H]]],
      ['disjoint quarters', [[0, H / 2], [H, BS]]],
      ['overlapping', [[0, H + 1], [H, BS]]],
    ];
    let n = 0;
    for (const [name, reads] of cases) {
      const early = BlockStore.key(`cc${n}`, 0, '0123456789abcdef');
      const late = BlockStore.key(`dd${n}`, 0, '0123456789abcdef');
      n++;
      for (const [from, to] of reads) store.noteRead(early, from, to);
      await store.put(early, data, 0, store.gen(early.slice(0, 4), 0));
      await store.put(late, data, 0, store.gen(late.slice(0, 4), 0));
      for (const [from, to] of reads) store.noteRead(late, from, to);
      assert.equal(store.policy.isProtected(early), store.policy.isProtected(late), name);
    }
    // The cases are not all one way.
    assert.ok(store.policy.isProtected(BlockStore.key('cc1', 0, '0123456789abcdef')));
    assert.ok(!store.policy.isProtected(BlockStore.key('cc0', 0, '0123456789abcdef')));
  });

  test('lru policy: a re-read before the store changes nothing (one segment)', async () => {
    const d = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bstore-lru-'));
    const s = new BlockStore({ dir: d, limit: () => 1 << 30, policy: 'lru', maxOpenFiles: 64 });
    try {
      await s.init();
      const key = BlockStore.key('bb01', 0, '0123456789abcdef');
      s.noteRead(key, 0, BS);
      s.noteRead(key, 0, BS);
      await s.put(key, data, 0, s.gen('bb01', 0));
      assert.ok(s.has(key) && !s.policy.isProtected(key));
    } finally {
      await s.close();
      await fs.rm(d, { recursive: true, force: true });
    }
  });
});

// A block handed out as a descriptor (a FUSE answer spliced from it, BlockStore.extent): the file stays readable
// until released, whatever happens to the block meanwhile; a block of the wrong length is never handed out.
describe('BlockStore.extent: a block as an open descriptor', { timeout: 60_000 }, () => {
  let dir: string;
  let store: BlockStore;
  const BS = 64 * 1024;
  const openFds = () => readdirSync('/proc/self/fd').length;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bstore-x-'));
    store = new BlockStore({ dir, limit: () => 1 << 30, maxOpenFiles: 64 });
    await store.init();
  });
  after(async () => {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('the block\'s bytes at the descriptor; dropped while held, still readable; closed once released', async () => {
    const key = BlockStore.key('bb01', 0, '0123456789abcdef');
    const data = randomBytes(BS);
    await store.put(key, data, 0, store.gen('bb01', 0));
    const before = openFds();
    const x = await store.extent(key, BS, 100, 1000);
    const x2 = await store.extent(key, BS, 0, BS);
    assert.ok(x && x2);
    assert.equal(x2.fd, x.fd, 'one descriptor for both holders');
    assert.equal(openFds(), before + 1, 'one descriptor, held');
    store.dropFile('bb01'); // the block goes (as by eviction or a change): its file is unlinked
    assert.ok(!store.has(key));
    const b = Buffer.alloc(1000);
    await new Promise<void>((res, rej) => fsRead(x.fd, b, 0, 1000, 100, (e) => (e ? rej(e) : res())));
    assert.ok(b.equals(data.subarray(100, 1100)), 'still the block\'s bytes');
    x.release();
    x.release(); // counted once: the other holder still has the descriptor
    await new Promise((r) => setImmediate(r));
    const b2 = Buffer.alloc(BS);
    await new Promise<void>((res, rej) => fsRead(x2.fd, b2, 0, BS, 0, (e) => (e ? rej(e) : res())));
    assert.ok(b2.equals(data), 'the second holder reads the whole block');
    x2.release();
    // The close is queued to the pool: wait for the descriptor to go.
    for (let i = 0; openFds() !== before && i < 200; i++) await new Promise((r) => setImmediate(r));
    assert.equal(openFds(), before, 'closed after the release');
    assert.equal(await store.extent(key, BS, 0, 10), undefined, 'gone: no extent');
  });

  test('a block file of another length than its version says: no extent, deleted, counted corrupt', async () => {
    const key = BlockStore.key('bb02', 0, '0123456789abcdef');
    await store.put(key, randomBytes(BS), 0, store.gen('bb02', 0));
    const c0 = store.corrupt;
    assert.equal(await store.extent(key, BS + 1, 0, 10), undefined);
    assert.equal(store.corrupt, c0 + 1);
    assert.ok(!store.has(key), 'deleted');
    // Cut short under a descriptor already checked: the next holder finds it too (the length is checked per open).
    const key2 = BlockStore.key('bb03', 0, '0123456789abcdef');
    await store.put(key2, randomBytes(BS), 0, store.gen('bb03', 0));
    const x = await store.extent(key2, BS, 0, 10);
    assert.ok(x);
    x.release();
    const found = (await fs.readdir(path.join(dir, 'blocks', 'bb', 'bb03'))).map((n) => path.join(dir, 'blocks', 'bb', 'bb03', n));
    await fs.truncate(found[0], 10);
    // The descriptor stays cached with its checked length: a splice would meet the end, and the reader falls
    // back to readInto, which finds the short block. That is the front end's path (local-reads test); here:
    const buf = Buffer.alloc(100);
    assert.equal(await store.readInto(key2, BS, buf, 0, 0, 100), false, 'readInto finds it short');
    assert.ok(!store.has(key2));
  });
});
