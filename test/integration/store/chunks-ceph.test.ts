import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, ROOT } from '../../helpers/local-server.js';
import { cephPrereq, startCeph, type Ceph } from '../../helpers/ceph.js';
import { seeded } from './guest-versions.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { S3Store } from '../../../src/store/s3-store.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, readTrustedKeys, verifySigned, writePublisherKey } from '../../../src/image/signature.js';
import { imageKey } from '../../../src/image/layout.js';
import { chunksOf } from '../../../src/image/manifest.js';
import { newSessionKey } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { createProxyServer } from '../../../src/proxy/proxy-server.js';
import { createProxyClient } from '../../../src/proxy/proxy-client.js';

/**
 * Compute-side chunk reading over a real object store: a single-node Ceph
 * (radosgw S3), a store-backed proxy server on it, one proxy client with a
 * disk cache and trusted publisher keys. Two images sharing a base clone
 * right, and each distinct chunk crosses to the compute host once.
 */
describe('compute hosts read store images by chunk hash (Ceph)', { skip: cephPrereq(), timeout: 600_000 }, () => {
  let ceph: Ceph | undefined;
  const cleanup: Array<() => Promise<unknown>> = [];
  before(async () => {
    ceph = await startCeph();
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    await ceph?.stop();
  });

  test('two images sharing a base: every byte right, each chunk fetched once', async () => {
    const c = ceph!;
    const work = await tempDir('gvfs-chunks-ceph-');
    const base = seeded(2 << 20, 'ceph-base');
    const images: Record<string, Buffer> = { a: Buffer.concat([base, seeded(300_000, 'a')]), b: Buffer.concat([base, Buffer.alloc(1 << 20), seeded(300_000, 'b')]) };
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    const s3 = () => new S3Store({ bucket: 'gvfs-chunks', prefix: 'img', endpoint: c.endpoint, accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey });
    const push = s3();
    await push.ensureBucket();
    const trusted = await readTrustedKeys([pubFile]);
    const all = new Set<string>();
    for (const [name, data] of Object.entries(images)) {
      const src = path.join(work, name);
      await mkdir(src);
      await writeFile(path.join(src, 'disk.img'), data);
      await pushImage(push, src, name, await readPublisherKey(path.join(work, 'pub')));
      for (const h of chunksOf(verifySigned(await push.get(imageKey(name)), trusted, name).manifest)) all.add(h);
    }
    await push.close();
    const key = newSessionKey('alice');
    const ps = await createProxyServer({ exports: [{ kind: 'store', store: s3(), trusted }], map: new Map([['alice', { uid: 0, gid: 0, gids: [] }]]), sessions: new SessionRegistry([key]), stateDir: path.join(work, 'ps') });
    cleanup.push(() => ps.close());
    const port = (await ps.listen(0, '127.0.0.1')).port;
    const pc = createProxyClient({ host: '127.0.0.1', port, key, meta: false, timeoutMs: 60_000, chunks: { trusted }, cache: { dir: path.join(work, 'cache'), capacity: 256 << 20, controlSocket: false } });
    cleanup.push(() => pc.close());
    const nfs = new RemoteNfs({ host: '127.0.0.1', port: (await pc.server.listen(0, '127.0.0.1')).port, timeoutMs: 120_000 });
    cleanup.push(() => nfs.close());
    const root = (await nfs.mount('/', ROOT)).fh;
    for (const [name, want] of Object.entries(images)) {
      const fh = (await nfs.lookup(ROOT, (await nfs.lookup(ROOT, root, name)).fh, 'disk.img')).fh;
      const got = Buffer.alloc(want.length);
      for (let off = 0; off < want.length; off += 1 << 20) (await nfs.read(ROOT, fh, off, 1 << 20)).data.copy(got, off);
      assert.ok(got.equals(want), `${name} differs`);
    }
    assert.equal(ps.chunks.c.chunks, all.size, 'each distinct chunk crossed once');
    assert.ok(pc.chunks!.stats.zeroBytes >= 1 << 20, 'the zero run was answered on the host');
  });
});
