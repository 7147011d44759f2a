import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, ROOT } from '../../helpers/local-server.js';
import { keyFile } from '../../helpers/key-file.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { seeded } from '../store/guest-versions.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { FileStore } from '../../../src/store/file-store.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, writePublisherKey } from '../../../src/image/signature.js';
import { makeSelfSignedCert } from '../../../src/channel/tls.js';
import { siteToken } from '../../../src/sitecache/auth.js';

/**
 * The command line end to end: gvfs cache-server over TLS with a site key,
 * two compute hosts (each a store-backed gvfs proxy-server with its own
 * chunk cache, --site-cache naming the tier, and a proxy client), our NFS
 * client reading every file through each host at once.
 */
describe('gvfs cache-server + proxy-server --site-cache (TLS, site key)', { timeout: 300_000 }, () => {
  const procs: GvfsProcess[] = [];
  after(async () => {
    for (const p of procs.reverse()) await p.stop().catch(() => {});
  });

  test('two hosts read every file right; the tier fetched each chunk once from the store', async () => {
    const work = await tempDir('gvfs-sitecache-cli-');
    const files: Record<string, Buffer> = { 'disk.img': seeded(2 << 20, 'cli-disk'), 'conf': Buffer.from('x=1\n') };
    const src = path.join(work, 'src');
    await mkdir(src);
    for (const [n, b] of Object.entries(files)) await writeFile(path.join(src, n), b);
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    const storeDir = path.join(work, 'store');
    await pushImage(new FileStore(storeDir), src, 'img', await readPublisherKey(path.join(work, 'pub')));
    let storedBytes = 0;
    const chunks = await readdir(path.join(storeDir, 'chunks'));
    for (const n of chunks) storedBytes += (await stat(path.join(storeDir, 'chunks', n))).size;

    const siteKey = path.join(work, 'site.key');
    await writeFile(siteKey, randomBytes(32), { mode: 0o600 });
    const tls = await makeSelfSignedCert(path.join(work, 'tls'), 'site-tier');
    const tier = await spawnGvfs(['cache-server', '--listen', '127.0.0.1:0', '--upstream', `file://${storeDir}`, '--cache-dir', path.join(work, 'tier'), '--key', siteKey, '--tls-cert', tls.cert, '--tls-key', tls.key]);
    procs.push(tier);
    assert.equal(tier.info.channel, 'tls');

    const { file: sessionKey } = await keyFile(work, 'session.key');
    const nfs: RemoteNfs[] = [];
    for (const name of ['h1', 'h2']) {
      const server = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--store', `file://${storeDir}`, '--trust-publisher', pubFile, '--key', sessionKey, '--state-dir', path.join(work, name), '--site-cache', `127.0.0.1:${tier.port}`, '--site-key', siteKey, '--site-ca', tls.cert]);
      procs.push(server);
      const client = await spawnGvfs(['proxy-client', '--listen', '127.0.0.1:0', '--server', `127.0.0.1:${server.port}`, '--key', sessionKey, '--no-meta', '--timeout', '60000']);
      procs.push(client);
      nfs.push(new RemoteNfs({ host: '127.0.0.1', port: client.port, timeoutMs: 120_000 }));
    }
    try {
      await Promise.all(
        nfs.map(async (c) => {
          const root = (await c.mount('/', ROOT)).fh;
          const dir = (await c.lookup(ROOT, root, 'img')).fh;
          for (const [n, want] of Object.entries(files)) {
            const fh = (await c.lookup(ROOT, dir, n)).fh;
            const got = Buffer.alloc(want.length);
            for (let off = 0; off < want.length; off += 128 << 10) (await c.read(ROOT, fh, off, 128 << 10)).data.copy(got, off);
            assert.ok(got.equals(want), `${n} differs`);
          }
        }),
      );
    } finally {
      for (const c of nfs) await c.close();
    }
    const st = JSON.parse((await httpsGet(tier.port, '/v1/stats', tls.cert, { authorization: `GVFS-HMAC ${siteToken(await readFile(siteKey), 'stats')}` })).toString());
    assert.equal(st.upstreamFetches, chunks.length, JSON.stringify(st));
    assert.equal(st.bytesFromUpstream, storedBytes);
    assert.equal(st.hits + st.misses + st.coalesced, 2 * chunks.length, 'each host asked the tier for each chunk once');
  });
});

function httpsGet(port: number, p: string, ca: string, headers: Record<string, string>): Promise<Buffer> {
  return new Promise(async (resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: p, headers, ca: await readFile(ca), checkServerIdentity: () => undefined }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(parts)) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}
