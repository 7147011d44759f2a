import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LocalExport } from '../../../src/backends/local-export/local-export.js';
import { newSessionKey } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { RecallStatus } from '../../../src/ext/callback-codec.js';
import { createNfs3Server } from '../../../src/frontends/nfs3-server/server.js';
import { proxyLink } from '../../../src/proxy/proxy-client.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import type { RpcServer } from '../../../src/rpc/server.js';
import { RpcError } from '../../../src/rpc/types.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';

/**
 * Callback model, step 1 through the real proxy server: CB_RECALL travels
 * server → proxy client over the connection the client dialled and proved,
 * reaches that session's handler only, and fails fast when the session has
 * no connection.
 */
let base: string;
let upstream: LocalExport;
let up: RpcServer;
let ps: ProxyServer;
let psPort: number;
const alice = newSessionKey('alice', undefined, { uid: 0, gid: 0, gids: [] });
const bob = newSessionKey('bob', undefined, { uid: 0, gid: 0, gids: [] });

describe('CB_RECALL from the proxy server to a connected proxy client', { timeout: 120_000 }, () => {
  before(async () => {
    base = await tempDir('gvfs-cb-recall-');
    await fs.mkdir(path.join(base, 'export'));
    upstream = await LocalExport.open({ root: path.join(base, 'export'), stateDir: path.join(base, 'up-state') });
    up = createNfs3Server({ backend: upstream });
    const upPort = (await up.listen(0, '127.0.0.1')).port;
    ps = await createProxyServer({
      sessions: new SessionRegistry([alice, bob]),
      exports: [{ kind: 'upstream', url: { host: '127.0.0.1', port: upPort, mountPort: upPort, path: '/' } }],
      delegateUnwatched: true, // the upstream is this test's own server: every change goes through the proxy server
      map: new Map(),
      stateDir: path.join(base, 'ps-state'),
    });
    psPort = (await ps.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    await ps.close();
    await up.close();
    await upstream.close();
    await fs.rm(base, { recursive: true, force: true });
  });

  test('the recall reaches the holding session with the handle, and its answer comes back', async () => {
    const aliceGot: Buffer[] = [];
    const bobGot: Buffer[] = [];
    const a = proxyLink({ host: '127.0.0.1', port: psPort, key: alice, timeoutMs: 20_000, callbacks: { recall: async (fh) => (aliceGot.push(fh), RecallStatus.OK) } }).remote;
    const b = proxyLink({ host: '127.0.0.1', port: psPort, key: bob, timeoutMs: 20_000, callbacks: { recall: async (fh) => (bobGot.push(fh), RecallStatus.NOT_HELD) } }).remote;
    try {
      const root = (await a.mount('/', ROOT)).fh;
      const fh = (await a.create(ROOT, root, 'f', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
      await b.mount('/', ROOT);
      assert.ok(ps.connected(alice.id) && ps.connected(bob.id));
      assert.equal(await ps.recall(alice.id, fh, 20_000), RecallStatus.OK);
      assert.equal(aliceGot.length, 1);
      assert.ok(aliceGot[0].equals(fh), 'the handle the client got is the one it knows');
      assert.equal(bobGot.length, 0, "another session's handler is not called");
      assert.equal(await ps.recall(bob.id, fh, 20_000), RecallStatus.NOT_HELD);
      assert.equal(bobGot.length, 1);
      // Forward calls still work after the reverse ones.
      assert.equal(Number((await a.getattr(ROOT, fh)).size), 0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('a session with no connection cannot be recalled: "disconnected" at once, not a hang', async () => {
    const a = proxyLink({ host: '127.0.0.1', port: psPort, key: alice, timeoutMs: 20_000, callbacks: { recall: async () => RecallStatus.OK } }).remote;
    await a.mount('/', ROOT);
    assert.ok(ps.connected(alice.id));
    await a.close();
    // The server sees the close shortly after; wait for it on the server's own view.
    const t0 = Date.now();
    while (ps.connected(alice.id) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 20));
    assert.equal(ps.connected(alice.id), false);
    await assert.rejects(ps.recall(alice.id, Buffer.alloc(8), 20_000), (e: RpcError) => e instanceof RpcError && e.kind === 'disconnected');
    await assert.rejects(ps.recall('no-such-session', Buffer.alloc(8), 20_000), (e: RpcError) => e.kind === 'disconnected');
  });
});
