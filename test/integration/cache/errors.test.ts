import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import { createProxyClient } from '../../../src/proxy/proxy-client.js';
import { readAll, ROOT, startCacheChain, type CacheChain } from './helpers.js';
import { gvfsArgv } from '../../../src/cli/self.js';

const run = promisify(execFile);

describe('cache: failures keep unflushed data', { timeout: 300_000 }, () => {
  let c: CacheChain;
  before(async () => {
    c = await startCacheChain();
  });
  after(() => c.stop());

  test('server unreachable during a flush: clear error, data kept, delivered once it is back', async () => {
    const s = await c.startSession({ cacheDir: path.join(c.base, 'cache-down'), timeoutMs: 1500, cache: { maxDirtyAgeMs: 600_000 } });
    const fh = (await s.client.create(ROOT, s.root, 'down.bin', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
    const data = randomBytes(700_000);
    await s.client.write(ROOT, fh, 0, data, StableHow.FILE_SYNC);
    await c.stopProxyServer();
    const rep = await s.cache.flush();
    assert.equal(rep.failed.length, 1);
    assert.equal(rep.failed[0].code, 'IO');
    assert.match(rep.failed[0].message, /timed out|connect/);
    const st = s.cache.stats();
    assert.equal(st.flushBacklog.bytes, data.length, 'the data is still waiting');
    assert.equal(st.flushErrors.length, 1, 'and its error is shown');
    await c.startProxyServer();
    const again = await s.cache.flush();
    assert.equal(again.failed.length, 0, JSON.stringify(again.failed));
    assert.ok((await fs.readFile(path.join(c.exportDir, 'down.bin'))).equals(data));
    assert.equal(s.cache.stats().flushErrors.length, 0);
    await s.stop();
  });

  test('file removed on the server while dirty: STALE, data kept until gvfs flush --discard drops it (with a warning)', async () => {
    const dir = path.join(c.base, 'cache-removed');
    const s = await c.startSession({ cacheDir: dir, cache: { maxDirtyAgeMs: 600_000 } });
    const fh = (await s.client.create(ROOT, s.root, 'gone.bin', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
    await s.client.write(ROOT, fh, 0, Buffer.alloc(50_000, 7), StableHow.UNSTABLE);
    await fs.unlink(path.join(c.exportDir, 'gone.bin'));
    const plain = await run(process.execPath, gvfsArgv(['flush', '--cache-dir', dir])).then(
      () => assert.fail('flush should exit non-zero'),
      (e: { code: number; stdout: string }) => e,
    );
    assert.equal(plain.code, 1);
    assert.match(plain.stdout, /FAILED file [0-9a-f]+: STALE: .*50000 bytes kept; gvfs flush --discard drops them/);
    assert.equal(s.cache.stats().flushBacklog.bytes, 50_000, 'kept');
    const stats = (await run(process.execPath, gvfsArgv(['cache', 'stats', '--cache-dir', dir]))).stdout;
    assert.match(stats, /FLUSH ERROR file [0-9a-f]+: STALE/);
    const d = await run(process.execPath, gvfsArgv(['flush', '--cache-dir', dir, '--discard']));
    assert.match(d.stdout, /WARNING: discarded 50000 bytes/);
    assert.equal(s.cache.stats().flushBacklog.bytes, 0);
    assert.equal(s.cache.stats().discardedBytes, 50_000);
    await s.stop();
  });

  test('cache disk full (journal append fails with ENOSPC): the write goes to the server directly, after what was journalled', async () => {
    let full = false;
    const s = await c.startSession({
      cacheDir: path.join(c.base, 'cache-full'),
      cache: {
        maxDirtyAgeMs: 600_000,
        // WRITE records fail; the journal's small DONE marks still go in (its reserve, on a real disk).
        journal: { failAppend: (bytes) => (full && bytes > 200 ? Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }) : undefined) },
      },
    });
    const fh = (await s.client.create(ROOT, s.root, 'full.bin', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
    const a = randomBytes(100_000);
    await s.client.write(ROOT, fh, 0, a, StableHow.UNSTABLE);
    assert.equal((await fs.readFile(path.join(c.exportDir, 'full.bin'))).length, 0, 'journalled, not yet on the server');
    full = true;
    const mid = randomBytes(1000);
    const r = await s.client.write(ROOT, fh, 100_000, mid, StableHow.UNSTABLE);
    assert.equal(r.count, 1000);
    assert.ok((await fs.readFile(path.join(c.exportDir, 'full.bin'))).equals(Buffer.concat([a, mid])), 'the journalled write first, then the refused one, on the server');
    assert.equal(s.cache.stats().writesAround, 1);
    full = false;
    const b = randomBytes(5000);
    await s.client.write(ROOT, fh, 101_000, b, StableHow.FILE_SYNC);
    const want = Buffer.concat([a, mid, b]);
    assert.ok((await readAll(s.client, fh, want.length)).equals(want));
    assert.equal((await s.cache.flush()).failed.length, 0);
    assert.ok((await fs.readFile(path.join(c.exportDir, 'full.bin'))).equals(want));
    await s.stop();
  });

  test('backlog at its limit and the server unreachable: writes wait, then fail NOSPC; nothing is lost', async () => {
    const s = await c.startSession({
      cacheDir: path.join(c.base, 'cache-limit'),
      timeoutMs: 800,
      cache: { maxDirtyAgeMs: 600_000, dirtyMax: 1 << 20, dirtyLimit: 512 << 10, admitWaitMs: 500 },
    });
    const fh = (await s.client.create(ROOT, s.root, 'limit.bin', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
    const model = Buffer.alloc(2 << 20);
    randomBytes(128 << 10).copy(model, 0);
    await s.client.write(ROOT, fh, 0, model.subarray(0, 128 << 10), StableHow.UNSTABLE);
    await c.stopProxyServer();
    let refused = 0;
    for (let off = 128 << 10; off < 2 << 20; off += 128 << 10) {
      const d = randomBytes(128 << 10);
      try {
        await s.client.write(ROOT, fh, off, d, StableHow.UNSTABLE);
        d.copy(model, off);
      } catch (e) {
        assert.match((e as Error).message, /NFS3ERR 28/);
        refused++;
        break;
      }
    }
    assert.equal(refused, 1, 'a write past the limit was refused');
    const kept = s.cache.stats().flushBacklog.bytes;
    assert.ok(kept > 0 && kept <= 1 << 20, `backlog ${kept} within the limit`);
    await c.startProxyServer();
    // The 800 ms call timeout (short, so the unreachable server is found quickly) can also expire on a loaded
    // machine right after the restart: such a flush fails as IO and keeps the data, and the next one delivers it.
    let failed = (await s.cache.flush()).failed;
    for (let tries = 1; failed.length && tries < 10; tries++) {
      for (const f of failed) assert.equal(f.code, 'IO', `only a timeout may fail this flush: ${JSON.stringify(f)}`);
      failed = (await s.cache.flush()).failed;
    }
    assert.equal(failed.length, 0);
    const onServer = await fs.readFile(path.join(c.exportDir, 'limit.bin'));
    assert.equal(onServer.length, kept);
    assert.ok(onServer.equals(model.subarray(0, kept)));
    await s.stop();
  });

  test('one live proxy client per session directory', async () => {
    const dir = path.join(c.base, 'cache-lock');
    const s = await c.startSession({ cacheDir: dir });
    const dup = createProxyClient({ host: '127.0.0.1', port: c.proxyServerPort, key: s.key, cache: { dir, capacity: 64 << 20 } });
    await assert.rejects(dup.cache!.ready, /in use|already open/);
    await dup.close();
    await s.stop();
  });
});
