import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import { ROOT, startCacheChain, type CacheChain, type Session } from './helpers.js';

/**
 * Callback model, name operations (issue 20, step 1): A holds a write
 * delegation with write-back data only in its journal; B renames, removes,
 * replaces or links the file. B's call recalls A first, so A's bytes are on
 * the server before the name changes, and are found under the names that
 * still lead to the file (a second hard link made on the server's disk).
 * Directories are delegated too: B creating a name in a directory A holds
 * recalls A's delegation of it.
 */
describe('callback: REMOVE, RENAME, LINK and CREATE recall the delegations of what they change', { timeout: 240_000 }, () => {
  let c: CacheChain;
  let a: Session;
  let b: Session;
  const onServer = (name: string) => fs.readFile(path.join(c.exportDir, name), 'utf8');
  const cache = { consistency: 'callback' as const, writeBack: true, maxDirtyAgeMs: 3_600_000, attrTimeoutMs: 3_600_000 };

  before(async () => {
    c = await startCacheChain();
    a = await c.startSession({ cacheDir: path.join(c.base, 'cache-a'), cache });
    b = await c.startSession({ cacheDir: path.join(c.base, 'cache-b'), cache });
  });
  after(async () => {
    await c?.stop();
  });

  /** A file A wrote under a write delegation; its bytes only in A's journal; `keep` a second link made on the server's disk. */
  async function dirtyOnA(name: string, text: string): Promise<void> {
    const fh = (await a.client.create(ROOT, a.root, name, { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } })).fh!;
    await fs.link(path.join(c.exportDir, name), path.join(c.exportDir, `${name}.keep`));
    await a.client.write(ROOT, fh, 0, Buffer.from(text), StableHow.UNSTABLE);
    assert.ok(a.cache.stats().dirtyBytes > 0, 'A keeps the bytes in its journal');
    assert.equal(await onServer(`${name}.keep`), '', 'the server has not seen them');
  }

  it('B renames the file: A flushed before the rename, the new name has its bytes at once', async () => {
    await dirtyOnA('r', 'A wrote r\n');
    const recalled = c.proxyServer.delegations.c.recalled;
    await b.client.rename(ROOT, b.root, 'r', b.root, 'r2');
    assert.ok(c.proxyServer.delegations.c.recalled > recalled, 'A was recalled');
    assert.equal(await onServer('r2'), 'A wrote r\n');
    assert.equal(a.cache.stats().dirtyBytes, 0);
  });

  it('B removes a name of the file: A flushed first, the other link has its bytes', async () => {
    await dirtyOnA('d', 'A wrote d\n');
    await b.client.remove(ROOT, b.root, 'd');
    assert.equal(await onServer('d.keep'), 'A wrote d\n');
    await assert.rejects(fs.stat(path.join(c.exportDir, 'd')), { code: 'ENOENT' });
    assert.equal(a.cache.stats().flushBacklog.files, 0, 'nothing left to flush: no late write to a removed name');
  });

  it('B renames another file over it (the replaced target): A flushed first, the other link has its bytes', async () => {
    await dirtyOnA('t', 'A wrote t\n');
    const src = (await b.client.create(ROOT, b.root, 'src', { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } })).fh!;
    await b.client.write(ROOT, src, 0, Buffer.from('B src\n'), StableHow.FILE_SYNC);
    await b.client.commit(ROOT, src, 0, 0);
    await b.cache.flush();
    await b.client.rename(ROOT, b.root, 'src', b.root, 't');
    assert.equal(await onServer('t.keep'), 'A wrote t\n');
    assert.equal(await onServer('t'), 'B src\n');
  });

  it('B links the file: A flushed first', async () => {
    await dirtyOnA('l', 'A wrote l\n');
    const fh = await b.lookup('l');
    await b.client.link(ROOT, fh, b.root, 'l2');
    assert.equal(await onServer('l.keep'), 'A wrote l\n');
  });

  it("B creates a name in a directory A holds: A's delegation of the directory is recalled, its cached attributes dropped", async () => {
    const dA = (await a.client.mkdir(ROOT, a.root, 'dir', { mode: 0o755 })).fh!;
    const before = await a.client.getattr(ROOT, dA); // takes a read delegation of the directory
    const hits = a.cache.stats().attrHits;
    assert.deepEqual(await a.client.getattr(ROOT, dA), before);
    assert.ok(a.cache.stats().attrHits > hits, "A answers the directory's attributes from its cache while it holds the delegation");
    const dB = await b.lookup('dir');
    await new Promise((r) => setTimeout(r, 20)); // a new mtime
    await b.client.create(ROOT, dB, 'new', { mode: 'unchecked', attrs: { mode: 0o644 } });
    const now = await a.client.getattr(ROOT, dA);
    assert.notDeepEqual(now.mtime, before.mtime, "A sees the directory's new mtime at once");
  });
});
