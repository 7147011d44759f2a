import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import { ROOT, startCacheChain, type CacheChain, type Session } from './helpers.js';

/**
 * Callback model (issue 20, cb20): the cache's read-permission gate
 * (access-gate.ts: cached bytes go only to a caller the server let read the
 * file) asks through the cache's own ACCESS, which a delegated file answers
 * from an earlier answer (5b305e4). Counted at the proxy server: a delegated
 * file read many times makes no ACCESS (and no READ) there. The attribute
 * timeout is 0, so the gate's own window trusts nothing: without the
 * delegation's answer every READ would ask ACCESS. A change by another
 * session recalls it, and the next read asks once more.
 */
describe('callback: reads of a delegated file ask the server no ACCESS', { timeout: 180_000 }, () => {
  let c: CacheChain;
  let a: Session;
  let b: Session;
  const cache = { consistency: 'callback' as const, writeBack: false, attrTimeoutMs: 0, dirTimeoutMs: 0 };
  const SIZE = 256 * 1024;
  const at = (proc: string) => c.proxyServer.server.stats.callsByProc.get(`nfs3.${proc}`) ?? 0;

  before(async () => {
    c = await startCacheChain();
    a = await c.startSession({ cacheDir: path.join(c.base, 'cache-a'), cache });
    b = await c.startSession({ cacheDir: path.join(c.base, 'cache-b'), cache });
    await fs.writeFile(path.join(c.exportDir, 'data'), Buffer.alloc(SIZE, 7), { mode: 0o644 });
  });
  after(async () => {
    await c?.stop();
  });

  async function readAllOf(s: Session, fh: Buffer): Promise<void> {
    for (let off = 0; off < SIZE; off += 32 * 1024) {
      const r = await s.client.read(ROOT, fh, off, 32 * 1024);
      assert.equal(r.count, 32 * 1024);
    }
  }

  it('the second to fiftieth read of every block: 0 ACCESS and 0 READ at the proxy server', async () => {
    const fh = await b.lookup('data');
    await b.client.getattr(ROOT, fh);
    await readAllOf(b, fh); // fills the cache and the gate
    await readAllOf(b, fh);
    const access0 = at('ACCESS');
    const read0 = at('READ');
    const hits0 = b.cache.stats().accessHits;
    for (let i = 0; i < 49; i++) await readAllOf(b, fh);
    assert.equal(at('ACCESS') - access0, 0, 'ACCESS calls reached the proxy server for reads of a delegated file');
    assert.equal(at('READ') - read0, 0, 'READ calls reached the proxy server');
    // Each cached read passed the gate, answered by the cache's ACCESS under the delegation.
    assert.ok(b.cache.stats().accessHits - hits0 >= 49 * (SIZE / (32 * 1024)), `gate answers from the delegation: ${b.cache.stats().accessHits - hits0}`);
  });

  it("after another session's write recalls the delegation, the next read asks again (the count is not blind)", async () => {
    const fh = await b.lookup('data');
    await readAllOf(b, fh);
    const access0 = at('ACCESS');
    await a.client.write(ROOT, await a.lookup('data'), 0, Buffer.from('changed'), StableHow.FILE_SYNC);
    const r = await b.client.read(ROOT, fh, 0, 7);
    assert.equal(r.data.toString(), 'changed');
    await readAllOf(b, fh);
    assert.ok(at('ACCESS') > access0, 'no ACCESS at all after the recall: the gate is not being asked');
    const access1 = at('ACCESS');
    for (let i = 0; i < 10; i++) await readAllOf(b, fh);
    assert.equal(at('ACCESS'), access1, 'trusted again under the new delegation');
  });

  it('the read after a recall asks no GETATTR: the new grant brings the attributes (DELEGATE_READ, the file read here before; too big for its bytes to come along)', async () => {
    const fh = await b.lookup('data');
    await readAllOf(b, fh);
    await a.client.write(ROOT, await a.lookup('data'), 0, Buffer.from('again!!'), StableHow.FILE_SYNC);
    const grants = () => (c.proxyServer.server.stats.callsByProc.get('gvfs.DELEGATE') ?? 0) + (c.proxyServer.server.stats.callsByProc.get('gvfs.DELEGATE_READ') ?? 0);
    const [getattr0, delegate0, read0] = [at('GETATTR'), grants(), at('READ')];
    const r = await b.client.read(ROOT, fh, 0, 7);
    assert.equal(r.data.toString(), 'again!!', 'the new bytes after the recall');
    assert.equal(grants() - delegate0, 1, 'one grant');
    assert.equal(at('GETATTR') - getattr0, 0, 'a GETATTR after the grant: its attributes were not used');
    assert.ok(at('READ') > read0, 'a file this big comes without its bytes (callback-grant-data: a small one does)');
  });
});
