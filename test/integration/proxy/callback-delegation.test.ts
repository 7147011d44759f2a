import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LocalExport } from '../../../src/backends/local-export/local-export.js';
import type { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { isFsError } from '../../../src/backend/errors.js';
import { newSessionKey } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { DELEGATE, DelegateMode, DelegateStatus, delegateArgs, delegateRes, RecallStatus } from '../../../src/ext/callback-codec.js';
import { createNfs3Server } from '../../../src/frontends/nfs3-server/server.js';
import { StableHow } from '../../../src/nfs3/constants.js';
import { proxyLink } from '../../../src/proxy/proxy-client.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import type { RpcServer } from '../../../src/rpc/server.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';

/**
 * Callback model, steps 2 and 3, at the proxy server with real links: a
 * conflicting call recalls the holder, waits for its flush, then proceeds;
 * a holder cut off (a TCP relay that stops forwarding) is revoked after the
 * lease and its late writes are refused. The holder's "flush" here is its
 * recall handler writing its pending bytes (what the cache does with its
 * journal; the cache is not hooked up yet).
 */
// Long enough that the raw links below (which never RENEW) keep their leases through each step on a loaded machine.
const LEASE_MS = 4000;
let base: string;
let upstream: LocalExport;
let up: RpcServer;
let ps: ProxyServer;
let psPort: number;
const alice = newSessionKey('alice', undefined, { uid: 0, gid: 0, gids: [] });
const bob = newSessionKey('bob', undefined, { uid: 0, gid: 0, gids: [] });
const links: RemoteNfs[] = [];

/** A loopback TCP relay to the proxy server that can stop forwarding (both ways) and start again. */
class Relay {
  frozen = false;
  private readonly held: Array<[net.Socket, Buffer]> = [];
  private readonly socks = new Set<net.Socket>();
  readonly server = net.createServer((c) => {
    const u = net.connect(psPort, '127.0.0.1');
    this.socks.add(c).add(u);
    const fwd = (from: net.Socket, to: net.Socket) =>
      from.on('data', (d: Buffer) => (this.frozen ? this.held.push([to, d]) : to.write(d)));
    fwd(c, u);
    fwd(u, c);
    const end = () => (c.destroy(), u.destroy());
    c.on('close', end).on('error', end);
    u.on('close', end).on('error', end);
  });
  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return (this.server.address() as net.AddressInfo).port;
  }
  thaw(): void {
    this.frozen = false;
    for (const [to, d] of this.held.splice(0)) to.write(d);
  }
  close(): void {
    for (const s of this.socks) s.destroy();
    this.server.close();
  }
}

function link(key: typeof alice, recall: (fh: Buffer) => Promise<RecallStatus>, port = psPort): RemoteNfs {
  const r = proxyLink({ host: '127.0.0.1', port, key, timeoutMs: 30_000, callbacks: { recall } }).remote;
  links.push(r);
  return r;
}
async function delegate(r: RemoteNfs, fh: Buffer, mode: DelegateMode): Promise<void> {
  const res = await r.ext(DELEGATE, (w) => delegateArgs.enc(w, { fh, mode, clientId: Buffer.alloc(0) }), delegateRes.dec, ROOT);
  assert.equal(res.status, DelegateStatus.OK, `DELEGATE refused: nfsstat ${res.nfsstat}`);
  assert.equal(res.leaseMs, LEASE_MS);
}
const bytes = async (r: RemoteNfs, fh: Buffer) => (await r.read(ROOT, fh, 0, 4096)).data.toString();
const file = (name: string) => fs.readFile(path.join(base, 'export', name), 'utf8');

describe('delegations: recall on conflict, lease, revocation and fencing', { timeout: 180_000 }, () => {
  before(async () => {
    base = await tempDir('gvfs-cb-deleg-');
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
      delegationLeaseMs: LEASE_MS,
    });
    psPort = (await ps.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    for (const l of links) await l.close().catch(() => undefined);
    await ps.close();
    await up.close();
    await upstream.close();
    await fs.rm(base, { recursive: true, force: true });
  });

  test("a write holder's unflushed bytes: another session's READ recalls it, waits for the flush, and reads the new bytes at once", async () => {
    const events: string[] = [];
    let aFh!: Buffer;
    const a = link(alice, async (fh) => {
      events.push('recall');
      assert.ok(fh.equals(aFh), "the recall names alice's own handle");
      await a.write(ROOT, aFh, 0, Buffer.from('new bytes'), StableHow.FILE_SYNC); // its journal's flush
      events.push('flushed');
      return RecallStatus.OK;
    });
    const b = link(bob, async () => RecallStatus.NOT_HELD);
    const aRoot = (await a.mount('/', ROOT)).fh;
    aFh = (await a.create(ROOT, aRoot, 'f', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
    await a.write(ROOT, aFh, 0, Buffer.from('old bytes'), StableHow.FILE_SYNC);
    await delegate(a, aFh, DelegateMode.WRITE);
    // Alice "writes" locally from now on (write-back): the server still holds the old bytes.
    assert.equal(await file('f'), 'old bytes');
    const bRoot = (await b.mount('/', ROOT)).fh;
    const bFh = (await b.lookup(ROOT, bRoot, 'f')).fh;
    // Bob's LOOKUP is a name operation (no recall); his READ is the conflict.
    const got = await bytes(b, bFh);
    events.push('bob read');
    assert.equal(got, 'new bytes');
    assert.deepEqual(events, ['recall', 'flushed', 'bob read']);
    assert.equal(ps.delegations.delegatedFiles, 0, 'the recalled delegation is gone');
    // No delegation left: another read recalls nothing.
    const recalls = ps.delegations.c.recalls;
    await bytes(b, bFh);
    assert.equal(ps.delegations.c.recalls, recalls);
  });

  test('read delegations are shared; a change by another session recalls every reader first', async () => {
    const recalled: string[] = [];
    const a = link(alice, async () => (recalled.push('alice'), RecallStatus.OK));
    const b = link(bob, async () => (recalled.push('bob'), RecallStatus.OK));
    const aRoot = (await a.mount('/', ROOT)).fh;
    const aFh = (await a.create(ROOT, aRoot, 'g', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
    const bFh = (await b.lookup(ROOT, (await b.mount('/', ROOT)).fh, 'g')).fh;
    await delegate(a, aFh, DelegateMode.READ);
    await delegate(b, bFh, DelegateMode.READ);
    // Reads of either conflict with nothing.
    await bytes(a, aFh);
    await bytes(b, bFh);
    await a.getattr(ROOT, aFh);
    assert.deepEqual(recalled, []);
    // Bob writes: alice (the other reader) is recalled before it lands; bob's own delegation is not.
    await b.write(ROOT, bFh, 0, Buffer.from('by bob'), StableHow.FILE_SYNC);
    assert.deepEqual(recalled, ['alice']);
    assert.equal(await file('g'), 'by bob');
  });

  test('a holder cut off (relay frozen) is revoked after the lease: the conflicting write proceeds, and the late flush is refused', async () => {
    const relay = new Relay();
    const relayPort = await relay.listen();
    let aFh!: Buffer;
    let lateFlush: Promise<unknown> | undefined;
    const a = link(
      alice,
      async () => {
        // Reached only once the link is back, after the revocation: its flush must not land.
        lateFlush = a.write(ROOT, aFh, 0, Buffer.from('STALE from alice'), StableHow.FILE_SYNC);
        await lateFlush.catch(() => undefined);
        return RecallStatus.OK;
      },
      relayPort,
    );
    const b = link(bob, async () => RecallStatus.NOT_HELD);
    try {
      const aRoot = (await a.mount('/', ROOT)).fh;
      aFh = (await a.create(ROOT, aRoot, 'h', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
      const t0 = Date.now();
      await delegate(a, aFh, DelegateMode.WRITE);
      const bFh = (await b.lookup(ROOT, (await b.mount('/', ROOT)).fh, 'h')).fh;
      relay.frozen = true;
      await b.write(ROOT, bFh, 0, Buffer.from('newer, by bob'), StableHow.FILE_SYNC);
      // Alice never renewed: her lease (from the grant) ends, and only then is she revoked.
      const waited = Date.now() - t0;
      assert.ok(waited >= LEASE_MS - 50, `bob's write waited for alice's lease (${waited} ms)`);
      assert.equal(ps.delegations.c.revoked, 1);
      assert.equal(await file('h'), 'newer, by bob');
      // The link comes back: alice gets the (old) recall and flushes; it is refused, as is any later write of hers to h.
      relay.thaw();
      const direct = a.write(ROOT, aFh, 0, Buffer.from('STALE again'), StableHow.FILE_SYNC);
      await assert.rejects(direct, (e: Error) => isFsError(e) && e.code === 'ACCES');
      while (!lateFlush) await new Promise((r) => setTimeout(r, 20));
      await assert.rejects(lateFlush, (e: Error) => isFsError(e) && e.code === 'ACCES');
      assert.equal(await file('h'), 'newer, by bob');
      // A new delegation lifts the fence (bob's read delegation is recalled first).
      await delegate(b, bFh, DelegateMode.READ);
      await delegate(a, aFh, DelegateMode.WRITE);
      await a.write(ROOT, aFh, 0, Buffer.from('alice again'), StableHow.FILE_SYNC);
    } finally {
      relay.close();
    }
  });
});
