import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { clientProof } from '../../../src/channel/proof.js';
import { newSessionKey, readKeyFile, writeKeyFile } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { authArgs, authRes, AuthStatus, challengeRes, GVFS_PROGRAM, GvfsProc } from '../../../src/ext/codec.js';
import { MOUNT_PROGRAM } from '../../../src/mount3/codec.js';
import { NFS_PROGRAM, Proc } from '../../../src/nfs3/constants.js';
import { mappingCodec, PMAP_PROGRAM } from '../../../src/portmap/program.js';
import { createProxyClient } from '../../../src/proxy/proxy-client.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import { AuthStat } from '../../../src/rpc/types.js';
import { XdrReader } from '../../../src/xdr/index.js';
import { defaultMap, startUpstream, type Upstream } from '../../helpers/chain.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';
import { RawRpc } from '../../helpers/raw-rpc.js';

/** Tries to get in where it does not belong: each must fail. */
describe('session keys at the proxy server', { timeout: 300_000 }, () => {
  let base: string;
  let up: Upstream;
  let ps: ProxyServer;
  let port: number;
  const alice = newSessionKey('alice');
  const bob = newSessionKey('bob', undefined, { uid: 4444, gid: 4444, gids: [] }); // bob's session carries its own account
  const old = newSessionKey('alice', 1);

  before(async () => {
    base = await tempDir('gvfs-keys-');
    up = await startUpstream('gvfs', base);
    await fs.chmod(up.dir, 0o777);
    old.expires = new Date(Date.now() - 1000);
    ps = await createProxyServer({
      exports: [{ kind: 'upstream', url: { host: '127.0.0.1', port: up.port, mountPort: up.port, path: '/' } }],
      map: defaultMap(),
      sessions: new SessionRegistry([alice, bob, old]),
      stateDir: path.join(base, 'ps'),
      handshakeTimeoutMs: 1500,
    });
    port = (await ps.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    await ps.close();
    await up.stop();
    await fs.rm(base, { recursive: true, force: true });
  });

  async function challenge(c: RawRpc, xid: number): Promise<Buffer> {
    c.sendRecord(RawRpc.call(xid, GVFS_PROGRAM, 1, GvfsProc.CHALLENGE));
    const r = await c.reply(xid);
    assert.equal(r.kind, 'success');
    return challengeRes.dec((r as { body: XdrReader }).body);
  }
  async function auth(c: RawRpc, xid: number, id: string, cn: Buffer, proof: Buffer): Promise<AuthStatus> {
    c.sendRecord(RawRpc.call(xid, GVFS_PROGRAM, 1, GvfsProc.AUTH, (w) => authArgs.enc(w, { sessionId: id, clientNonce: cn, proof })));
    const r = await c.reply(xid);
    assert.equal(r.kind, 'success');
    return authRes.dec((r as { body: XdrReader }).body).status;
  }

  test('without a proof: no MOUNT answer, no attributes, AUTH_ERROR; the portmapper shows only public programs', async () => {
    const c = await RawRpc.connect(port);
    c.sendRecord(RawRpc.call(1, MOUNT_PROGRAM, 3, 1, (w) => w.string('/')));
    const m = await c.reply(1);
    assert.deepEqual(m.kind === 'auth_error' && m.stat, AuthStat.AUTH_REJECTEDCRED);
    c.sendRecord(RawRpc.call(2, MOUNT_PROGRAM, 3, 5)); // EXPORT
    assert.equal((await c.reply(2)).kind, 'auth_error');
    c.sendRecord(RawRpc.call(3, NFS_PROGRAM, 3, Proc.GETATTR, (w) => w.opaque(Buffer.alloc(26))));
    assert.equal((await c.reply(3)).kind, 'auth_error');
    c.sendRecord(RawRpc.call(4, PMAP_PROGRAM, 2, 4));
    const d = await c.reply(4);
    const progs = new Set((d as { body: XdrReader }).body.list(100, mappingCodec.dec).map((x) => x.prog));
    assert.deepEqual([...progs].sort(), [PMAP_PROGRAM, GVFS_PROGRAM].sort());
    c.sendRecord(RawRpc.call(5, NFS_PROGRAM, 3, Proc.NULL));
    assert.equal((await c.reply(5)).kind, 'success', 'NULL stays public');
    c.close();
  });

  test('a wrong key, an unknown session, a replayed proof and an expired key are refused', async () => {
    const c1 = await RawRpc.connect(port);
    const n1 = await challenge(c1, 10);
    const cn = randomBytes(32);
    const good = clientProof(alice.key, alice.id, n1, cn);
    assert.equal(await auth(c1, 11, alice.id, cn, clientProof(randomBytes(32), alice.id, n1, cn)), AuthStatus.DENIED, 'wrong key');
    const n1b = await challenge(c1, 12);
    assert.equal(await auth(c1, 13, 'f'.repeat(32), cn, clientProof(alice.key, 'f'.repeat(32), n1b, cn)), AuthStatus.DENIED, 'unknown session');
    // the proof for n1 (never accepted) replayed on a new connection, whose nonce differs
    const c2 = await RawRpc.connect(port);
    await challenge(c2, 20);
    assert.equal(await auth(c2, 21, alice.id, cn, good), AuthStatus.DENIED, 'replayed proof');
    assert.equal(await auth(c2, 22, alice.id, cn, good), AuthStatus.NO_CHALLENGE, 'one attempt per challenge');
    const n2 = await challenge(c2, 23);
    assert.equal(await auth(c2, 24, old.id, cn, clientProof(old.key, old.id, n2, cn)), AuthStatus.EXPIRED);
    c1.close();
    c2.close();
  });

  test('three failed proofs close the connection; no proof within the handshake timeout closes it too', async () => {
    const c = await RawRpc.connect(port);
    for (let i = 0; i < 3; i++) {
      await challenge(c, 30 + 2 * i);
      await auth(c, 31 + 2 * i, alice.id, randomBytes(32), randomBytes(32));
    }
    await c.closed;
    const idle = await RawRpc.connect(port);
    const t0 = Date.now();
    await idle.closed;
    assert.ok(Date.now() - t0 >= 1000 && Date.now() - t0 < 5000);
  });

  test("one session's key gives nothing of another's: handles and identities stay apart", async () => {
    const mk = (key: typeof alice) => {
      const pc = createProxyClient({ host: '127.0.0.1', port, key });
      return pc;
    };
    const pa = mk(alice);
    const pb = mk(bob);
    const [portA, portB] = [(await pa.server.listen(0, '127.0.0.1')).port, (await pb.server.listen(0, '127.0.0.1')).port];
    const a = new RemoteNfs({ host: '127.0.0.1', port: portA });
    const b = new RemoteNfs({ host: '127.0.0.1', port: portB });
    try {
      const ra = (await a.mount('/', ROOT)).fh;
      const rb = (await b.mount('/', ROOT)).fh;
      assert.ok(!ra.equals(rb), 'each session has its own handles');
      await assert.rejects(b.getattr(ROOT, ra), { code: 'BADHANDLE' });
      const fa = await a.create(ROOT, ra, 'of-alice', { mode: 'guarded', attrs: { mode: 0o644 } });
      await assert.rejects(b.read(ROOT, fa.fh!, 0, 10), { code: 'BADHANDLE' });
      await b.create(ROOT, rb, 'of-bob', { mode: 'guarded', attrs: { mode: 0o644 } });
      assert.equal((await fs.stat(path.join(up.dir, 'of-alice'))).uid, 2001);
      assert.equal((await fs.stat(path.join(up.dir, 'of-bob'))).uid, 4444, "bob's session account");
    } finally {
      await a.close();
      await b.close();
      await pa.close();
      await pb.close();
    }
  });

  test('a session whose user the map does not name gets nothing', async () => {
    const eve = newSessionKey('eve');
    ps.sessions.add(eve);
    const pc = createProxyClient({ host: '127.0.0.1', port, key: eve, timeoutMs: 5000 });
    const p = (await pc.server.listen(0, '127.0.0.1')).port;
    const cl = new RemoteNfs({ host: '127.0.0.1', port: p });
    await assert.rejects(cl.mount('/', ROOT), /MNT3ERR_ACCES: export \/ not allowed/);
    await cl.close();
    await pc.close();
  });

  test('key files: owner-only on disk, refused when others can read them; keys expire', async () => {
    const f = path.join(base, 'k.json');
    await writeKeyFile(f, newSessionKey('alice', 3600));
    assert.equal((await fs.stat(f)).mode & 0o777, 0o600);
    const k = await readKeyFile(f);
    assert.equal(k.user, 'alice');
    assert.ok(k.expires && k.expires.getTime() > Date.now());
    await fs.chmod(f, 0o644);
    await assert.rejects(readKeyFile(f), /accessible by others/);
    await assert.rejects(writeKeyFile(f, newSessionKey('x')), { code: 'EEXIST' });
  });

  test('a proxy server without keys refuses to start unless insecure', async () => {
    await assert.rejects(
      createProxyServer({ exports: [{ kind: 'local', dir: up.dir }], map: defaultMap(), stateDir: path.join(base, 'nokey') }),
      /without a session key/,
    );
  });
});
