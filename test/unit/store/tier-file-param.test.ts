import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { encodeChunk } from '../../../src/image/layout.js';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { chunkWhat, siteToken } from '../../../src/sitecache/auth.js';
import { CacheServer } from '../../../src/sitecache/cache-server.js';
import { SiteCacheClient } from '../../../src/sitecache/site-client.js';
import type { ChunkFile, ChunkUpstream } from '../../../src/sitecache/upstream.js';

/** An upstream that serves chunks by file, like a proxy server, and records what it was asked. */
class ByFile implements ChunkUpstream {
  readonly name = 'by-file';
  readonly needsFile = true;
  readonly asked: Array<ChunkFile | undefined> = [];
  constructor(private readonly chunks: Map<string, Buffer>) {}
  async get(hash: string, _len: number, file?: ChunkFile) {
    this.asked.push(file);
    return file ? this.chunks.get(hash) : undefined;
  }
  async close() {}
}

/**
 * The file a chunk belongs to travels from the host to a tier whose
 * upstream serves by file (a proxy server): covered by the site key's
 * token, and left out (never a 431 that would make the host skip the
 * tier) when it would not fit the tier's 4 KiB request head.
 */
describe('site tier: the file named with a chunk', { timeout: 60_000 }, () => {
  const closers: Array<() => Promise<unknown> | void> = [];
  after(async () => {
    for (const c of closers.reverse()) await c();
  });

  test('passed to upstream; a name too long is left out and the tier stays in use', async () => {
    const raw = [randomBytes(5000), randomBytes(7000)];
    const chunks = new Map(raw.map((r) => [createHash('sha256').update(r).digest('hex'), encodeChunk(r)]));
    const [h0, h1] = [...chunks.keys()];
    const up = new ByFile(chunks);
    const key = randomBytes(32);
    const s = await CacheServer.open({ upstream: up, cacheDir: await mkdtemp(path.join(os.tmpdir(), 'gvfs-tier-file-')), maxBytes: 1 << 20, key });
    closers.push(() => s.close());
    const port = (await s.listen(0, '127.0.0.1')).port;
    const c = new SiteCacheClient({ tiers: [{ host: '127.0.0.1', port }], key });
    closers.push(() => c.close());

    const got = await c.get(h0, raw[0].length, { image: 'img é', path: 'dir/a b&c=d.img' });
    assert.ok(got?.equals(chunks.get(h0)!));
    assert.deepEqual(up.asked, [{ image: 'img é', path: 'dir/a b&c=d.img' }]);

    // 5000 characters of path: sent without it; a miss is then a 404 (the host's proxy server answers), not a failure.
    assert.equal(await c.get(h1, raw[1].length, { image: 'img', path: 'd/'.repeat(2500) }), undefined);
    assert.equal(c.stats.failed, 0, 'the tier was not skipped');
    assert.equal(up.asked.length, 1, 'a miss without a file is not asked upstream');
    assert.ok(await c.get(h1, raw[1].length, { image: 'img', path: 'short' }), 'the tier is still asked');

    // A token for one file does not open another (the file is in the HMAC).
    const token = siteToken(key, chunkWhat(h0, raw[0].length, { image: 'img', path: 'short' }));
    const ask = (q: string) => status(port, `/v1/chunks/${h0}?len=${raw[0].length}${q}`, `GVFS-HMAC ${token}`);
    assert.equal(await ask('&image=img&path=short'), 200);
    assert.equal(await ask('&image=img&path=other'), 403);
    assert.equal(await ask(''), 403);
    assert.equal(await ask('&image=img'), 400, 'image without path');
    assert.equal(s.stats().unauthorized, 2);
  });
});

function status(port: number, p: string, authorization: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, headers: { authorization } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}
