import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { createProxyClient } from '../../../src/proxy/proxy-client.js';
import { parseMap } from '../../../src/wrappers/identity-map/map-file.js';
import { startChain, type Chain } from '../../helpers/chain.js';
import { ROOT } from '../../helpers/local-server.js';

const run = promisify(execFile);

describe('identity mapping at an insecure proxy server (no session keys)', { timeout: 300_000 }, () => {
  let c: Chain;
  before(async () => {
    c = await startChain('gvfs', {
      map: parseMap('alice 2001 2001 2001,3000\n"/O=Grid/CN=Bob Smith" 2002 2002\nsys:0 3003 3003   # a plain NFS client as root\n'),
      timeoutMs: 5000,
      insecure: true, // identities announced by HELLO or taken from AUTH_SYS: what a server without keys does
    });
    await fs.chmod(c.upstream.dir, 0o777);
  });
  after(() => c.stop());

  test('a session whose identity the proxy server does not map is refused', async () => {
    const pc = createProxyClient({ host: '127.0.0.1', port: c.proxyServerPort, user: 'mallory', insecure: true, timeoutMs: 3000 });
    const port = (await pc.server.listen(0, '127.0.0.1')).port;
    const cl = new RemoteNfs({ host: '127.0.0.1', port, timeoutMs: 10_000 });
    try {
      await assert.rejects(cl.mount('/', ROOT), (e: Error) => /MNT/.test(e.message));
      await assert.rejects(run('nfs-ls', [`nfs://127.0.0.1/?version=3&nfsport=${port}&mountport=${port}`], { timeout: 20_000 }));
    } finally {
      await cl.close();
      await pc.close();
    }
  });

  test('a grid identity with spaces maps to its own account', async () => {
    const pc = createProxyClient({ host: '127.0.0.1', port: c.proxyServerPort, user: '/O=Grid/CN=Bob Smith', insecure: true });
    const port = (await pc.server.listen(0, '127.0.0.1')).port;
    const cl = new RemoteNfs({ host: '127.0.0.1', port });
    try {
      const root = (await cl.mount('/', ROOT)).fh;
      await cl.create(ROOT, root, 'bobs', { mode: 'guarded', attrs: { mode: 0o644 } });
      assert.equal((await fs.stat(path.join(c.upstream.dir, 'bobs'))).uid, 2002);
    } finally {
      await cl.close();
      await pc.close();
    }
  });

  test('a plain NFS client (no GVFS hello) is mapped by its AUTH_SYS uid, or refused', async () => {
    const url = (f: string) => `nfs://127.0.0.1/sub/${f}?version=3&nfsport=${c.proxyServerPort}&mountport=${c.proxyServerPort}`;
    await fs.mkdir(path.join(c.upstream.dir, 'sub'), { recursive: true });
    await fs.chmod(path.join(c.upstream.dir, 'sub'), 0o777);
    const src = path.join(c.base, 'plain.txt');
    await fs.writeFile(src, 'plain');
    await run('nfs-cp', [src, url('plain.txt')]); // libnfs as root: sys:0 → 3003
    assert.equal((await fs.stat(path.join(c.upstream.dir, 'sub/plain.txt'))).uid, 3003);
    const direct = new RemoteNfs({ host: '127.0.0.1', port: c.proxyServerPort, timeoutMs: 5000 });
    try {
      await assert.rejects(direct.mount('/', { ...ROOT, uid: 1234 }), (e: Error) => /MNT/.test(e.message));
      const root = (await direct.mount('/', ROOT)).fh;
      await assert.rejects(direct.getattr({ ...ROOT, uid: 1234 }, root), { code: 'ACCES' });
    } finally {
      await direct.close();
    }
  });

  test('the map file format: comments, quoting, errors with line numbers', () => {
    const m = parseMap('# header\n\nalice 1 2\n"a b" 3 4 5,6 # trailing\n');
    assert.deepEqual(m.get('alice'), { uid: 1, gid: 2, gids: [] });
    assert.deepEqual(m.get('a b'), { uid: 3, gid: 4, gids: [5, 6] });
    assert.throws(() => parseMap('alice x 2'), /map:1/);
    assert.throws(() => parseMap('alice 1 2\nalice 3 4'), /map:2: alice mapped twice/);
    assert.throws(() => parseMap('a 1 2 ' + Array.from({ length: 17 }, (_, i) => i).join(',')), /16/);
  });
});
