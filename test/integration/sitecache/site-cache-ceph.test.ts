import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, ROOT } from '../../helpers/local-server.js';
import { cephPrereq, startCeph, type Ceph } from '../../helpers/ceph.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { seeded } from '../store/guest-versions.js';
import { S3Store } from '../../../src/store/s3-store.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, readTrustedKeys, writePublisherKey } from '../../../src/image/signature.js';
import { StoreBackend } from '../../../src/backends/store/store-backend.js';
import { SiteCacheClient } from '../../../src/sitecache/site-client.js';
import { siteToken } from '../../../src/sitecache/auth.js';
import { CHUNKS } from '../../../src/image/layout.js';

/** gvfs cache-server with a Ceph radosgw bucket as upstream; three hosts read through it. */
describe('site cache tier over Ceph (radosgw S3 upstream)', { skip: cephPrereq(), timeout: 600_000 }, () => {
  let ceph: Ceph | undefined;
  const procs: GvfsProcess[] = [];
  const closers: Array<() => Promise<unknown> | void> = [];
  before(async () => {
    ceph = await startCeph();
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    for (const p of procs) await p.stop().catch(() => {});
    await ceph?.stop();
  });

  test('three hosts read every file right; each chunk fetched from radosgw once', async () => {
    const c = ceph!;
    const work = await tempDir('gvfs-sitecache-ceph-');
    const files: Record<string, Buffer> = { 'disk.img': seeded(2 << 20, 'ceph-disk'), 'kernel': seeded(700_000, 'ceph-kernel') };
    const src = path.join(work, 'src');
    await mkdir(src);
    for (const [n, b] of Object.entries(files)) await writeFile(path.join(src, n), b);
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    const s3 = () => new S3Store({ bucket: 'gvfs-site', prefix: 'golden', endpoint: c.endpoint, accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey });
    const pushStore = s3();
    await pushStore.ensureBucket();
    await pushImage(pushStore, src, 'img', await readPublisherKey(path.join(work, 'pub')));
    let chunkCount = 0;
    let storedBytes = 0;
    for await (const o of pushStore.list(CHUNKS)) {
      chunkCount++;
      storedBytes += o.size;
    }
    await pushStore.close();

    const keyFile = path.join(work, 'site.key');
    await writeFile(keyFile, randomBytes(32), { mode: 0o600 });
    const key = await readFile(keyFile);
    const tier = await spawnGvfs(['cache-server', '--listen', '127.0.0.1:0', '--upstream', 's3://gvfs-site/golden', '--store-endpoint', c.endpoint, '--cache-dir', path.join(work, 'tier'), '--key', keyFile], { AWS_ACCESS_KEY_ID: c.accessKeyId, AWS_SECRET_ACCESS_KEY: c.secretAccessKey });
    procs.push(tier);
    const trusted = await readTrustedKeys([pubFile]);
    const hosts: StoreBackend[] = [];
    for (let i = 0; i < 3; i++) {
      const b = await StoreBackend.open({ store: s3(), trusted, site: new SiteCacheClient({ tiers: [{ host: '127.0.0.1', port: tier.port }], key, localAddress: `127.0.0.${i + 2}`, timeoutMs: 60_000 }) });
      hosts.push(b);
      closers.push(() => b.close());
    }
    await Promise.all(
      hosts.map(async (b) => {
        const root = (await b.mount('/img', ROOT)).fh;
        for (const [n, want] of Object.entries(files)) {
          const fh = (await b.lookup(ROOT, root, n)).fh;
          const got = Buffer.alloc(want.length);
          for (let off = 0; off < want.length; off += 256 << 10) (await b.read(ROOT, fh, off, 256 << 10)).data.copy(got, off);
          assert.ok(got.equals(want), `${n} differs`);
        }
      }),
    );
    for (const b of hosts) assert.equal(b.chunks.stats.siteHits, chunkCount, 'a chunk did not come from the tier');
    const st = JSON.parse(await statsOf(tier.port, key));
    assert.equal(st.upstreamFetches, chunkCount, JSON.stringify(st));
    assert.equal(st.bytesFromUpstream, storedBytes);
    assert.equal(Object.keys(st.hosts).length, 3);
  });
});

function statsOf(port: number, key: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/stats', headers: { authorization: `GVFS-HMAC ${siteToken(key, 'stats')}` } }, (res) => {
      let s = '';
      res.on('data', (d) => (s += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(s) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}
