import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { LocalExport } from '../../../src/backends/local-export/local-export.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { createNfs3Server } from '../../../src/frontends/nfs3-server/server.js';
import { failoverDialer } from '../../../src/proxy/failover-dialer.js';
import { tcpDialer } from '../../../src/rpc/client.js';
import type { RpcServer } from '../../../src/rpc/server.js';
import { Relay } from '../../helpers/relay.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';

/**
 * Failover from a server that HANGS (accepts, answers nothing) rather than
 * dies: two NFS servers over one export (like two proxy servers over one
 * upstream), the first behind a relay that stops forwarding. The client
 * abandons the silent connection after stallMs and moves to the second;
 * read-only calls are resent there, a MKDIR that reached the first server
 * is not (it ran there; a second run would be a second effect).
 */
describe('failover from a hung server (stall watchdog)', { timeout: 120_000 }, () => {
  let dir: string;
  let backend: LocalExport;
  let a: RpcServer;
  let b: RpcServer;
  let aPort: number;
  let bPort: number;
  const relays: Relay[] = [];
  const clients: RemoteNfs[] = [];
  const STALL = 600;
  const TIMEOUT = 30_000;

  before(async () => {
    dir = await tempDir('gvfs-stall-');
    await fs.mkdir(path.join(dir, 'export'));
    await fs.writeFile(path.join(dir, 'export', 'f'), 'hello');
    backend = await LocalExport.open({ root: path.join(dir, 'export'), stateDir: path.join(dir, 'state') });
    a = createNfs3Server({ backend });
    b = createNfs3Server({ backend });
    aPort = (await a.listen(0, '127.0.0.1')).port;
    bPort = (await b.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const r of relays) r.close();
    await a.close();
    await b.close();
    await backend.close();
  });

  async function link(): Promise<{ nfs: RemoteNfs; relay: Relay }> {
    const relay = new Relay(aPort);
    relays.push(relay);
    const rPort = await relay.listen();
    const dial = failoverDialer([
      { name: `A:${rPort}`, dial: tcpDialer('127.0.0.1', rPort) },
      { name: `B:${bPort}`, dial: tcpDialer('127.0.0.1', bPort) },
    ]);
    const nfs = new RemoteNfs({ host: '127.0.0.1', port: rPort, dial, timeoutMs: TIMEOUT, stallMs: STALL });
    clients.push(nfs);
    return { nfs, relay };
  }

  test('a read in flight when the link to A freezes is answered by B, well within the call deadline', async () => {
    const { nfs, relay } = await link();
    const root = (await nfs.mount('/', ROOT)).fh;
    const fh = (await nfs.lookup(ROOT, root, 'f')).fh;
    const bCalls = b.stats.calls;
    relay.freeze('both');
    const t0 = Date.now();
    const r = await nfs.read(ROOT, fh, 0, 100);
    const took = Date.now() - t0;
    assert.equal(r.data.toString(), 'hello');
    assert.ok(b.stats.calls > bCalls, 'B answered');
    assert.ok(relay.heldBytes > 0, 'the relay really held the call');
    assert.equal(nfs.stats.stalls, 1);
    // Bound: the silence bound plus a reconnect, far below the 30 s deadline (generous for a loaded machine).
    assert.ok(took < STALL + 10_000, `failover took ${took} ms`);
  });

  test('a MKDIR that reached A (its reply lost) is not run again on B: it fails once, the directory exists once', async () => {
    const { nfs, relay } = await link();
    const root = (await nfs.mount('/', ROOT)).fh;
    await nfs.getattr(ROOT, root);
    relay.freeze('replies'); // A runs the MKDIR; its answer never comes back
    await assert.rejects(nfs.mkdir(ROOT, root, 'd1', { mode: 0o755 }), (e: Error) => /not resent/.test(e.message));
    assert.equal(nfs.stats.notResent, 1);
    const st = await fs.stat(path.join(dir, 'export', 'd1'));
    assert.ok(st.isDirectory(), 'A ran the MKDIR');
    // The link works (now on B): a read-only call and a new MKDIR go through.
    await nfs.getattr(ROOT, root);
    await nfs.mkdir(ROOT, root, 'd2', { mode: 0o755 });
    assert.ok((await fs.stat(path.join(dir, 'export', 'd2'))).isDirectory());
  });

  test('the price of at most once: a MKDIR A never received (link frozen both ways) fails too; nothing ran twice', async () => {
    const { nfs, relay } = await link();
    const root = (await nfs.mount('/', ROOT)).fh;
    relay.freeze('both'); // the client cannot tell "A never got it" from "A ran it and the answer was lost"
    await assert.rejects(nfs.mkdir(ROOT, root, 'd3', { mode: 0o755 }), (e: Error) => /not resent/.test(e.message));
    await assert.rejects(fs.stat(path.join(dir, 'export', 'd3')), { code: 'ENOENT' });
    // Retried by the program, it runs once, on B.
    await nfs.mkdir(ROOT, root, 'd3', { mode: 0o755 });
    assert.ok((await fs.stat(path.join(dir, 'export', 'd3'))).isDirectory());
  });
});
