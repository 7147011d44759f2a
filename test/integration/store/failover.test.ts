import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, ROOT } from '../../helpers/local-server.js';
import { keyFile } from '../../helpers/key-file.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { FileStore } from '../../../src/store/file-store.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, writePublisherKey } from '../../../src/image/signature.js';
import { GUEST } from './guest-versions.js';

/**
 * Two proxy servers on one store (a directory: the failover logic is the
 * same for S3), a proxy client given both. The reader is our NFS client on
 * the proxy client, reading a file piece by piece; the server in use is
 * killed half-way. Every byte must arrive, with no error.
 */
describe('failover between store-backed proxy servers', { timeout: 300_000 }, () => {
  const procs: GvfsProcess[] = [];
  after(async () => {
    for (const p of procs) await p.stop().catch(() => {});
  });

  test('a read survives the death of the proxy server in use; handles agree across servers', async () => {
    const work = await tempDir('gvfs-failover-');
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    const store = new FileStore(path.join(work, 'store'));
    await pushImage(store, GUEST, 'guest', await readPublisherKey(path.join(work, 'pub')));
    const { file: sessionKey } = await keyFile(work, 'session.key');
    const secret = path.join(work, 'handle-secret');
    await writeFile(secret, randomBytes(32), { mode: 0o600 });
    const server = (name: string) =>
      spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--store', `file://${path.join(work, 'store')}`, '--trust-publisher', pubFile, '--key', sessionKey, '--handle-secret', secret, '--state-dir', path.join(work, name)]);
    const a = await server('a');
    procs.push(a);
    const b = await server('b');
    procs.push(b);
    const client = await spawnGvfs(['proxy-client', '--listen', '127.0.0.1:0', '--server', `127.0.0.1:${a.port},127.0.0.1:${b.port}`, '--key', sessionKey, '--no-meta', '--timeout', '60000']);
    procs.push(client);

    const nfs = new RemoteNfs({ host: '127.0.0.1', port: client.port, timeoutMs: 120_000 });
    try {
      const root = (await nfs.mount('/', ROOT)).fh;
      const dir = (await nfs.lookup(ROOT, root, 'guest')).fh;
      const fh = (await nfs.lookup(ROOT, dir, 'vmlinuz')).fh;
      const want = await readFile(path.join(GUEST, 'vmlinuz'));
      const got = Buffer.alloc(want.length);
      const piece = 128 << 10;
      let killed = false;
      for (let off = 0; off < want.length; off += piece) {
        if (!killed && off >= want.length / 2) {
          await a.stop(); // SIGTERM; the server drains and exits: its connections close
          killed = true;
        }
        const r = await nfs.read(ROOT, fh, off, piece);
        r.data.copy(got, off);
      }
      assert.ok(killed);
      assert.ok(got.equals(want), 'bytes differ after failover');
      await client.waitLog(/failed over/, 30_000);
      // The handle the client had from server A still works on B (same handles on both).
      assert.equal((await nfs.getattr(ROOT, fh)).size, want.length);
    } finally {
      await nfs.close();
    }
  });

  test('without failover (one --server) the same kill is an error: the test can tell', async () => {
    const work = await tempDir('gvfs-failover-');
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    const store = new FileStore(path.join(work, 'store'));
    await mkdir(path.join(work, 'store'), { recursive: true });
    await pushImage(store, GUEST, 'guest', await readPublisherKey(path.join(work, 'pub')));
    const { file: sessionKey } = await keyFile(work, 'session.key');
    const a = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--store', `file://${path.join(work, 'store')}`, '--trust-publisher', pubFile, '--key', sessionKey, '--state-dir', path.join(work, 'a')]);
    procs.push(a);
    const client = await spawnGvfs(['proxy-client', '--listen', '127.0.0.1:0', '--server', `127.0.0.1:${a.port}`, '--key', sessionKey, '--no-meta', '--timeout', '5000']);
    procs.push(client);
    const nfs = new RemoteNfs({ host: '127.0.0.1', port: client.port, timeoutMs: 60_000 });
    try {
      const root = (await nfs.mount('/', ROOT)).fh;
      const dir = (await nfs.lookup(ROOT, root, 'guest')).fh;
      const fh = (await nfs.lookup(ROOT, dir, 'vmlinuz')).fh;
      await nfs.read(ROOT, fh, 0, 4096);
      await a.stop();
      await assert.rejects(nfs.read(ROOT, fh, 1 << 20, 4096));
    } finally {
      await nfs.close();
    }
  });
});
