import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { FType } from '../../../src/nfs3/constants.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import { ganeshaSkip } from '../../helpers/ganesha.js';
import { defaultMap, startChain, startUpstream, type Chain, type Upstream } from '../../helpers/chain.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';

describe('proxy handle table with nfs-ganesha\'s real handles', { skip: ganeshaSkip(), timeout: 300_000 }, () => {
  let c: Chain;
  before(async () => {
    c = await startChain('ganesha', { inlineMax: 0 }); // every upstream handle goes through the persistent table
    await fs.chmod(c.upstream.dir, 0o777);
  });
  after(() => c.stop());

  test('table handles work and survive a proxy server restart', async () => {
    assert.equal(c.root.length, 18, 'table handles are 18 bytes');
    const d = await c.client.mkdir(ROOT, c.root, 'dir', { mode: 0o755 });
    const f = await c.client.create(ROOT, d.fh!, 'file', { mode: 'guarded', attrs: { mode: 0o644 } });
    assert.equal(f.fh!.length, 18);
    await c.restartProxyServer();
    assert.equal((await c.client.getattr(ROOT, f.fh!)).type, FType.REG);
    const again = await c.client.lookup(ROOT, d.fh!, 'file');
    assert.ok(again.fh.equals(f.fh!), 'the same upstream handle always gets the same proxy handle');
  });

  test('with inline wrapping off, a handle is a table id (0x02, 18 bytes), not the ganesha handle', async () => {
    await fs.writeFile(path.join(c.upstream.dir, 'tabled'), 'x');
    const fh = (await c.client.lookup(ROOT, c.root, 'tabled')).fh;
    const upRoot = (await c.proxyServer.upstreams[0].mount(c.upstream.exportPath, ROOT)).fh;
    const up = (await c.proxyServer.upstreams[0].lookup(ROOT, upRoot, 'tabled')).fh;
    assert.equal(fh[0], 2);
    assert.equal(fh.length, 18);
    assert.equal(fh.indexOf(up), -1);
  });
});

describe('inline handles: ganesha handles wrapped whole (default settings)', { skip: ganeshaSkip(), timeout: 300_000 }, () => {
  let c: Chain;
  before(async () => {
    c = await startChain('ganesha');
  });
  after(() => c?.stop());

  test("the client's handle carries nfs-ganesha's handle inline, within 64 bytes, and leads back to it", async () => {
    await fs.writeFile(path.join(c.upstream.dir, 'inline'), 'inline bytes');
    const fh = (await c.client.lookup(ROOT, c.root, 'inline')).fh;
    const upRoot = (await c.proxyServer.upstreams[0].mount(c.upstream.exportPath, ROOT)).fh;
    const up = (await c.proxyServer.upstreams[0].lookup(ROOT, upRoot, 'inline')).fh;
    // 0x01 | export | n | ganesha's handle (n bytes) | MAC (8)
    assert.equal(fh[0], 1, 'an inline handle, not a table id');
    assert.equal(fh[2], up.length);
    assert.ok(fh.subarray(3, 3 + up.length).equals(up), "ganesha's own handle, inline");
    assert.equal(fh.length, up.length + 11);
    assert.ok(fh.length <= 64, `${fh.length} bytes`);
    assert.equal((await c.client.read(ROOT, fh, 0, 100)).data.toString(), 'inline bytes');
    // Through a proxy server restart (the table is not involved).
    await c.restartProxyServer();
    assert.equal((await c.client.read(ROOT, fh, 0, 100)).data.toString(), 'inline bytes');
  });
});

describe('several exports behind one proxy server', { timeout: 300_000 }, () => {
  let base: string;
  let a: Upstream;
  let ps: ProxyServer;
  let cl: RemoteNfs;
  before(async () => {
    base = await tempDir('gvfs-multi-');
    a = await startUpstream('gvfs', base);
    const local = path.join(base, 'local');
    await fs.mkdir(local);
    await fs.writeFile(path.join(local, 'here.txt'), 'local export');
    ps = await createProxyServer({
      exports: [
        { kind: 'upstream', url: { host: '127.0.0.1', port: a.port, mountPort: a.port, path: '/' }, name: '/remote' },
        { kind: 'local', dir: local, name: '/local' },
      ],
      map: new Map([...defaultMap(), ['sys:0', { uid: 0, gid: 0, gids: [] }]]),
      stateDir: path.join(base, 'ps'),
      insecure: true,
    });
    const port = (await ps.listen(0, '127.0.0.1')).port;
    cl = new RemoteNfs({ host: '127.0.0.1', port });
  });
  after(async () => {
    await cl.close();
    await ps.close();
    await a.stop();
    await fs.rm(base, { recursive: true, force: true });
  });

  test('each export mounts by name; EXPORT lists both; cross-export rename is XDEV', async () => {
    assert.deepEqual((await cl.exports()).map((e) => e.path), ['/remote', '/local']);
    const r = (await cl.mount('/remote', ROOT)).fh;
    const l = (await cl.mount('/local', ROOT)).fh;
    assert.ok(!r.equals(l));
    const f = await cl.lookup(ROOT, l, 'here.txt');
    assert.equal((await cl.read(ROOT, f.fh, 0, 100)).data.toString(), 'local export');
    await assert.rejects(cl.rename(ROOT, l, 'here.txt', r, 'moved'), { code: 'XDEV' });
    await assert.rejects(cl.link(ROOT, f.fh, r, 'moved'), { code: 'XDEV' });
    await assert.rejects(cl.mount('/nowhere', ROOT), /MNT/);
  });
});
