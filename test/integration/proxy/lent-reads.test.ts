import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { ROOT, startCacheChain, type CacheChain, type Session } from '../cache/helpers.js';

/**
 * Through proxy client and proxy server without a cache, a READ's data is a
 * view of a pooled reply record at each hop (RpcClient lend), given back
 * once the reply carrying it has left (SourcedRead.release). Given back too
 * early, a record is refilled by another READ while its bytes are still on
 * their way: many READs in flight at once, of different files and offsets,
 * must each return exactly the file's bytes, and the records must really
 * have been used again (else the pooling silently went away).
 */
describe('proxy chain: READ data in pooled records, given back after the reply', { timeout: 180_000 }, () => {
  let c: CacheChain;
  let s: Session;
  const files: Buffer[] = [];
  const reused = (r: RemoteNfs) => r.clients.reduce((n, x) => n + x.rpc.lentRecords.reused, 0);

  before(async () => {
    c = await startCacheChain();
    for (let i = 0; i < 12; i++) {
      const b = randomBytes(200_000 + i * 250_000);
      files.push(b);
      await fs.writeFile(path.join(c.exportDir, `f${i}`), b);
    }
    s = await c.startSession({ noCache: true, meta: false });
  });
  after(async () => {
    await c?.stop();
  });

  test('READs of 64 KiB to 1 MiB, 16 in flight, all byte-exact; both hops reuse their records', async () => {
    const fhs = await Promise.all(files.map((_, i) => s.lookup(`f${i}`)));
    const upstreamReused = reused(c.proxyServer.upstreams[0]);
    const linkReused = reused(s.pc.remote);
    let next = 0;
    const N = 600;
    let checked = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let k = next++; k < N; k = next++) {
          const i = k % files.length;
          const count = [65536, 131072, 524288, 1 << 20][k % 4];
          const offset = Math.floor(Math.random() * files[i].length);
          const r = await s.client.read(ROOT, fhs[i], offset, count);
          const want = files[i].subarray(offset, offset + count);
          assert.equal(r.count, want.length);
          assert.ok(r.data.equals(want), `READ ${k}: f${i} at ${offset}, ${count} bytes: not the file's bytes`);
          checked++;
        }
      }),
    );
    assert.equal(checked, N);
    assert.ok(reused(c.proxyServer.upstreams[0]) - upstreamReused > N / 4, 'the proxy server reused its upstream reply records');
    assert.ok(reused(s.pc.remote) - linkReused > N / 4, 'the proxy client reused its link reply records');
  });
});
