import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { newSessionKey, type SessionKey } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import * as X from '../../../src/nfs3/codec.js';
import { NFS_PROGRAM, NFS_V3, Nfs3Status, Proc, StableHow } from '../../../src/nfs3/constants.js';
import { createProxyClient } from '../../../src/proxy/proxy-client.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import { AuthStat } from '../../../src/rpc/types.js';
import { defaultMap, startUpstream, type Upstream } from '../../helpers/chain.js';
import { HeldBackend } from '../../helpers/held-backend.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';
import { RawRpc } from '../../helpers/raw-rpc.js';
import { RawNfs, sys } from '../../security/owners-raw-nfs.js';

/**
 * A session whose key expires while its client is connected
 * (sessionAuthenticator, src/frontends/nfs3-server/gvfs-program.ts): the
 * first call after the expiry is refused with AUTH_ERROR
 * (AUTH_REJECTEDCRED) and the connection is closed; a new connection's
 * proof is answered EXPIRED. Nothing hangs: not a call that was running at
 * the expiry, not a program behind a proxy client (it gets EACCES).
 */
const WITHIN = 30_000;
const closedWithin = (c: RawRpc, ms = WITHIN) =>
  Promise.race([c.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);

// The session writes as its mapped account (uid 2001): root only.
describe('session expiry in the middle of a connection', { skip: requirePrereq(isRoot()), timeout: 180_000 }, () => {
  let base: string;
  let up: Upstream;
  let held: HeldBackend;
  let ps: ProxyServer;
  let port: number;
  const sessions = new SessionRegistry();
  const other = newSessionKey('bob');
  const fresh = (lifetimeMs = 3600_000): SessionKey => {
    const k = newSessionKey('alice');
    k.expires = new Date(Date.now() + lifetimeMs);
    sessions.add(k);
    return k;
  };
  const getattrCall = (xid: number, fh: Buffer) => RawRpc.call(xid, NFS_PROGRAM, NFS_V3, Proc.GETATTR, (w) => X.GETATTR.args.enc(w, { fh }), sys(0, 0));

  before(async () => {
    base = await tempDir('gvfs-expiry-');
    up = await startUpstream('gvfs', base, (b) => (held = new HeldBackend(b)));
    await fs.chmod(up.dir, 0o777);
    await fs.writeFile(path.join(up.dir, 'f'), 'data');
    await fs.chmod(path.join(up.dir, 'f'), 0o666);
    await fs.writeFile(path.join(up.dir, 'g'), 'gdata');
    await fs.chmod(path.join(up.dir, 'g'), 0o666);
    sessions.add(other);
    ps = await createProxyServer({
      exports: [{ kind: 'upstream', url: { host: '127.0.0.1', port: up.port, mountPort: up.port, path: '/' } }],
      map: defaultMap(),
      sessions,
      stateDir: path.join(base, 'ps'),
    });
    port = (await ps.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    held?.release();
    await ps?.close();
    await up?.stop();
    await fs.rm(base, { recursive: true, force: true });
  });

  /** The proxy server still serves another session normally. */
  const othersServed = async () => {
    const b = await RawNfs.connect(port, other);
    try {
      const r = await b.mount('/', sys(0, 0));
      assert.equal((await b.getattr(sys(0, 0), r)).status, Nfs3Status.OK);
    } finally {
      b.close();
    }
  };

  test('as the clock passes the expiry: the next call gets AUTH_REJECTEDCRED, the connection closes, a new proof is answered EXPIRED', async () => {
    const k = fresh(6000);
    const c = await RawNfs.connect(port, k);
    const root = await c.mount('/', sys(0, 0));
    assert.equal((await c.getattr(sys(0, 0), root)).status, Nfs3Status.OK);
    assert.ok(Date.now() < k.expires!.getTime(), 'the machine took over 6 s to prove a key and make two calls; the test proves nothing then');
    // Waiting on the clock itself: the condition under test is "now is past the key's expiry".
    while (Date.now() <= k.expires!.getTime()) await new Promise((r) => setTimeout(r, Math.max(1, k.expires!.getTime() - Date.now() + 5)));
    c.rpc.sendRecord(getattrCall(90, root));
    const r = await c.rpc.reply(90, WITHIN);
    assert.deepEqual(r.kind === 'auth_error' && r.stat, AuthStat.AUTH_REJECTEDCRED, JSON.stringify(r));
    assert.ok(await closedWithin(c.rpc), 'the server closed the connection');
    await assert.rejects(RawNfs.connect(port, k), /has expired/);
    await othersServed();
  });

  test('calls pipelined behind the expiry are refused; a WRITE running at the expiry finishes on the server, and nothing hangs', async () => {
    const k = fresh();
    const c = await RawNfs.connect(port, k);
    const root = await c.mount('/', sys(0, 0));
    const f = await c.fh(root, 'f', sys(0, 0));
    held.hold = true;
    c.rpc.sendRecord(RawRpc.call(100, NFS_PROGRAM, NFS_V3, Proc.WRITE, (w) => X.WRITE.args.enc(w, { fh: f, offset: 0, stable: StableHow.FILE_SYNC, data: Buffer.from('DATA') }), sys(0, 0)));
    await held.waitHeld(1);
    k.expires = new Date(Date.now() - 1); // the key runs out while the WRITE is held in the server
    for (let x = 101; x <= 103; x++) c.rpc.sendRecord(getattrCall(x, root));
    const refused = await c.rpc.reply(101, WITHIN);
    assert.deepEqual(refused.kind === 'auth_error' && refused.stat, AuthStat.AUTH_REJECTEDCRED);
    assert.ok(await closedWithin(c.rpc), 'the server closed the connection');
    held.release();
    // The WRITE had been admitted before the expiry: it completes on the server (its reply has no connection left).
    const end = Date.now() + WITHIN;
    while ((await fs.readFile(path.join(up.dir, 'f'), 'utf8')) !== 'DATA') {
      assert.ok(Date.now() < end, 'the held WRITE never completed');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(held.executed.write, 1);
    await othersServed();
  });

  test('behind a proxy client: a program gets EACCES at once after the expiry, call after call (no hang, no retry loop)', async () => {
    const k = fresh();
    const pc = createProxyClient({ host: '127.0.0.1', port, key: k, timeoutMs: 60_000 });
    const pcPort = (await pc.server.listen(0, '127.0.0.1')).port;
    const client = new RemoteNfs({ host: '127.0.0.1', port: pcPort, timeoutMs: 60_000 });
    try {
      const root = (await client.mount('/', ROOT)).fh;
      const f = (await client.lookup(ROOT, root, 'g')).fh;
      assert.equal((await client.read(ROOT, f, 0, 10)).data.toString(), 'gdata');
      k.expires = new Date(Date.now() - 1);
      for (let i = 0; i < 3; i++) {
        const t0 = Date.now();
        await assert.rejects(client.getattr(ROOT, f), { code: 'ACCES' }, `call ${i} after the expiry`);
        assert.ok(Date.now() - t0 < WITHIN, `call ${i} was answered within ${WITHIN} ms (${Date.now() - t0} ms)`);
      }
      await assert.rejects(client.write(ROOT, f, 0, Buffer.from('LATE'), StableHow.FILE_SYNC), { code: 'ACCES' });
      assert.equal(await fs.readFile(path.join(up.dir, 'g'), 'utf8'), 'gdata', 'nothing written after the expiry');
    } finally {
      await client.close();
      await pc.close();
    }
    await othersServed();
  });
});
