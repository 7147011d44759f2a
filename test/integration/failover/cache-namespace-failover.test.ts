import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isFsError } from '../../../src/backend/errors.js';
import { LocalExport } from '../../../src/backends/local-export/local-export.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { createNfs3Server } from '../../../src/frontends/nfs3-server/server.js';
import { StableHow } from '../../../src/nfs3/constants.js';
import { failoverDialer } from '../../../src/proxy/failover-dialer.js';
import { tcpDialer } from '../../../src/rpc/client.js';
import type { RpcServer } from '../../../src/rpc/server.js';
import { CacheBackend } from '../../../src/wrappers/cache/cache-backend.js';
import { Relay } from '../../helpers/relay.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';

/**
 * A write-back cache over a link that fails over from a hung server A to B
 * (two NFS servers over one export, like two proxy servers over one
 * upstream). A namespace call whose reply A never sent may have run there;
 * it is not resent to B (nfs3/retransmit.ts) and the cache does not replay
 * it either: the caller gets EIO, exactly one effect exists, and the names
 * the cache had cached for it are asked again (no stale answer for as long
 * as the name timeout). WRITEs the journal acknowledged land on B, once,
 * byte for byte.
 */
describe('write-back cache: namespace calls and journalled writes across a failover', { timeout: 180_000 }, () => {
  let dir: string;
  let exp: string;
  let backend: LocalExport;
  let a: RpcServer;
  let b: RpcServer;
  let aPort: number;
  let bPort: number;
  const relays: Relay[] = [];
  const caches: CacheBackend[] = [];
  const STALL = 600;

  before(async () => {
    dir = await tempDir('gvfs-cache-failover-');
    exp = path.join(dir, 'export');
    await fs.mkdir(exp);
    backend = await LocalExport.open({ root: exp, stateDir: path.join(dir, 'state'), attrCacheMs: 0 });
    a = createNfs3Server({ backend });
    b = createNfs3Server({ backend });
    aPort = (await a.listen(0, '127.0.0.1')).port;
    bPort = (await b.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    for (const c of caches) await c.close().catch(() => undefined);
    for (const r of relays) r.close();
    await a.close();
    await b.close();
    await backend.close();
  });

  /** A cache (write-back, names and attributes trusted for a minute) over A (behind a relay), then B. */
  async function session(name: string): Promise<{ cache: CacheBackend; relay: Relay; root: Buffer; nfs: RemoteNfs }> {
    const relay = new Relay(aPort);
    relays.push(relay);
    const rPort = await relay.listen();
    const dial = failoverDialer([
      { name: `A:${rPort}`, dial: tcpDialer('127.0.0.1', rPort) },
      { name: `B:${bPort}`, dial: tcpDialer('127.0.0.1', bPort) },
    ]);
    const nfs = new RemoteNfs({ host: '127.0.0.1', port: rPort, dial, timeoutMs: 30_000, stallMs: STALL });
    const cache = new CacheBackend(nfs, { dir: path.join(dir, `cache-${name}`), capacity: 256 << 20, serverId: 'ab', session: name, writeBack: true, attrTimeoutMs: 60_000, maxDirtyAgeMs: 600_000 });
    caches.push(cache);
    await cache.ready;
    const root = (await cache.mount('/', ROOT)).fh;
    return { cache, relay, root, nfs };
  }

  const noent = (e: unknown) => isFsError(e, 'NOENT');

  test('REMOVE run by A, its reply lost: EIO, not replayed on B; the cached name is not served afterwards', async () => {
    await fs.writeFile(path.join(exp, 'victim'), 'x');
    const { cache, relay, root, nfs } = await session('rm');
    await cache.lookup(ROOT, root, 'victim'); // cached for a minute
    relay.freeze('replies');
    await assert.rejects(cache.remove(ROOT, root, 'victim'), (e: unknown) => isFsError(e, 'IO'));
    assert.equal(nfs.stats.notResent, 1, 'the REMOVE was not resent to B');
    await assert.rejects(fs.stat(path.join(exp, 'victim')), { code: 'ENOENT' }, 'A ran it');
    // The cache asks B, which knows the name is gone (before: the cached handle was served for the name timeout).
    await assert.rejects(cache.lookup(ROOT, root, 'victim'), noent);
    // A blind replay would have said NOENT to the program for a remove that worked; a program's own retry says so honestly.
    await assert.rejects(cache.remove(ROOT, root, 'victim'), noent);
  });

  test('RENAME run by A, its reply lost: EIO, ran once; old name gone and new name found through the cache', async () => {
    await fs.writeFile(path.join(exp, 'src'), 'payload');
    const { cache, relay, root } = await session('mv');
    const fh = (await cache.lookup(ROOT, root, 'src')).fh;
    relay.freeze('replies');
    await assert.rejects(cache.rename(ROOT, root, 'src', root, 'dst'), (e: unknown) => isFsError(e, 'IO'));
    assert.equal(await fs.readFile(path.join(exp, 'dst'), 'utf8'), 'payload');
    await assert.rejects(fs.stat(path.join(exp, 'src')), { code: 'ENOENT' });
    await assert.rejects(cache.lookup(ROOT, root, 'src'), noent);
    assert.ok((await cache.lookup(ROOT, root, 'dst')).fh.equals(fh));
  });

  test('CREATE (guarded) run by A, its reply lost: EIO once, one file; the name resolves through B', async () => {
    const { cache, relay, root } = await session('mk');
    await cache.getattr(ROOT, root);
    relay.freeze('replies');
    await assert.rejects(cache.create(ROOT, root, 'made', { mode: 'guarded', attrs: { mode: 0o644 } }), (e: unknown) => isFsError(e, 'IO'));
    assert.ok((await fs.stat(path.join(exp, 'made'))).isFile(), 'A ran it, once');
    const found = await cache.lookup(ROOT, root, 'made');
    assert.ok(found.fh.length > 0);
    // A replay would hit EXIST: the program sees that only if it retries itself.
    await assert.rejects(cache.create(ROOT, root, 'made', { mode: 'guarded', attrs: { mode: 0o644 } }), (e: unknown) => isFsError(e, 'EXIST'));
  });

  test('journalled (acknowledged) writes flushed while A hangs land on B exactly as written', async () => {
    await fs.writeFile(path.join(exp, 'wb.bin'), '');
    const { cache, relay, root, nfs } = await session('wb');
    const fh = (await cache.lookup(ROOT, root, 'wb.bin')).fh;
    const data = randomBytes(3 << 20);
    // Overlapping writes: a replay in the wrong order or twice from a stale offset would show.
    await cache.write(ROOT, fh, 0, data.subarray(0, 2 << 20), StableHow.UNSTABLE);
    await cache.write(ROOT, fh, 1 << 20, data.subarray(1 << 20), StableHow.UNSTABLE);
    relay.freeze('both');
    const rep = await cache.flush();
    assert.deepEqual(rep.failed, []);
    assert.ok(nfs.stats.stalls >= 1, 'the flush really went through a failover');
    assert.ok((await fs.readFile(path.join(exp, 'wb.bin'))).equals(data));
    assert.equal(cache.stats().flushBacklog.bytes, 0);
  });
});
