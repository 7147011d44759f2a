import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import { ROOT, startCacheChain, type CacheChain, type Session } from './helpers.js';

/**
 * The callback consistency model through two real proxy clients with
 * write-back caches (two "hosts", two cache directories, one proxy server):
 * A's write-back bytes are recalled the moment B reads, and writers taking
 * turns never lose each other's lines.
 */
describe('consistency: callback (delegations, recall, flush on recall)', { timeout: 240_000 }, () => {
  let c: CacheChain;
  let a: Session;
  let b: Session;
  const onServer = (name: string) => fs.readFile(path.join(c.exportDir, name), 'utf8');
  async function read(s: Session, fh: Buffer): Promise<string> {
    const at = await s.client.getattr(ROOT, fh);
    return (await s.client.read(ROOT, fh, 0, Number(at.size) + 16)).data.toString();
  }

  before(async () => {
    c = await startCacheChain();
    // Write-back that would otherwise keep dirty bytes for an hour; attributes trusted for an hour under ttl.
    const cache = { consistency: 'callback' as const, writeBack: true, maxDirtyAgeMs: 3_600_000, attrTimeoutMs: 3_600_000 };
    a = await c.startSession({ cacheDir: path.join(c.base, 'cache-a'), cache });
    b = await c.startSession({ cacheDir: path.join(c.base, 'cache-b'), cache });
  });
  after(async () => {
    await c?.stop();
  });

  it('a write-back write on A (closed); B opens and reads the new bytes at once: the recall made A flush', async () => {
    const fa = (await a.client.create(ROOT, a.root, 'f', { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } })).fh!;
    await a.client.write(ROOT, fa, 0, Buffer.from('written on A\n'), StableHow.UNSTABLE);
    await a.client.commit(ROOT, fa, 0, 0).catch(() => undefined); // the close
    assert.ok(a.cache.stats().dirtyBytes > 0, 'A keeps the bytes in its journal (write-back)');
    assert.equal(await onServer('f'), '', 'the server has not seen them yet');
    const recalls = c.proxyServer.delegations.c.recalled;
    const fb = await b.lookup('f');
    assert.equal(await read(b, fb), 'written on A\n');
    assert.ok(c.proxyServer.delegations.c.recalled > recalls, 'A was recalled');
    assert.equal(a.cache.stats().dirtyBytes, 0, 'A flushed on the recall');
  });

  it('A and B appending in turn never lose a line', async () => {
    const fa = (await a.client.create(ROOT, a.root, 'log', { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } })).fh!;
    const fb = await b.lookup('log');
    const lines: string[] = [];
    for (let i = 0; i < 6; i++) {
      const [s, fh] = i % 2 ? [b, fb] : [a, fa];
      const line = `${i % 2 ? 'B' : 'A'} line ${i}\n`;
      const size = Number((await s.client.getattr(ROOT, fh)).size);
      await s.client.write(ROOT, fh, size, Buffer.from(line), StableHow.UNSTABLE);
      lines.push(line);
    }
    assert.equal(await read(a, fa), lines.join(''));
    assert.equal(await read(b, fb), lines.join(''));
  });
});
