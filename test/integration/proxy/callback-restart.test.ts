import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalExport } from '../../../src/backends/local-export/local-export.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { createNfs3Server } from '../../../src/frontends/nfs3-server/server.js';
import { StableHow } from '../../../src/nfs3/constants.js';
import { createProxyClient, type ProxyClient } from '../../../src/proxy/proxy-client.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import type { RpcServer } from '../../../src/rpc/server.js';
import { Relay } from '../../helpers/relay.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { keyFile } from '../../helpers/key-file.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';

/**
 * Callback model across restarts (issue 20, step 3; README "Consistency").
 *
 * (a) The proxy server is killed (-9) while a recall of A's write delegation
 * is in flight (A's link frozen), and restarted on its state directory: it
 * knows A held delegations, so for one lease it grants only reclaims and
 * serves only reclaimed files. B's read waits; A notices the new instance,
 * reclaims and flushes; B then reads A's bytes (no acknowledged write lost,
 * none read stale).
 *
 * (b) A proxy client (its own process) is killed (-9) while recalled; the
 * server revokes it after the lease and B writes newer data. A is started
 * again on the same cache directory: its journal's flush is a reclaim
 * naming the client id kept in the cache directory, which is fenced:
 * refused, B's data stays, A's stays in its journal (reported).
 */
const LEASE_S = 6;

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('callback model: restarts of the proxy server and of a client during a recall', { timeout: 300_000 }, () => {
  let base: string;
  let exportDir: string;
  const procs: GvfsProcess[] = [];
  const clients: ProxyClient[] = [];
  const nfs: RemoteNfs[] = [];
  const relays: Relay[] = [];
  const onServer = (name: string) => fs.readFile(path.join(exportDir, name), 'utf8');
  const cacheOpts = { consistency: 'callback' as const, writeBack: true, maxDirtyAgeMs: 3_600_000, attrTimeoutMs: 3_600_000, capacity: 256 << 20 };

  before(async () => {
    base = await tempDir('gvfs-cb-restart-');
    exportDir = path.join(base, 'export');
    await fs.mkdir(exportDir);
  });
  after(async () => {
    for (const n of nfs) await n.close().catch(() => undefined);
    for (const c of clients) await c.close().catch(() => undefined);
    for (const r of relays) r.close();
    for (const p of procs) await p.stop().catch(() => undefined);
    await fs.rm(base, { recursive: true, force: true });
  });

  /** An in-process proxy client with a callback cache, and our NFS client on it. */
  async function session(port: number, key: Awaited<ReturnType<typeof keyFile>>['key'], dir: string) {
    const pc = createProxyClient({ host: '127.0.0.1', port, key, timeoutMs: 15_000, cache: { dir, ...cacheOpts } });
    clients.push(pc);
    await pc.cache!.ready;
    const client = new RemoteNfs({ host: '127.0.0.1', port: (await pc.server.listen(0, '127.0.0.1')).port, timeoutMs: 60_000 });
    nfs.push(client);
    const root = (await client.mount('/', ROOT)).fh;
    return { pc, client, root };
  }

  it('(a) proxy server killed during a recall and restarted: A reclaims and flushes in the grace period, B reads its bytes', async () => {
    const dir = path.join(base, 'a');
    await fs.mkdir(dir);
    const ka = await keyFile(dir, 'a.key', 'alice');
    const kb = await keyFile(dir, 'b.key', 'bob');
    const args = (port: number) => ['proxy-server', '--listen', `127.0.0.1:${port}`, '--export', exportDir, '--key', ka.file, '--key', kb.file, '--state-dir', path.join(dir, 'ps-state'), '--delegation-lease', String(LEASE_S)];
    let ps = await spawnGvfs(args(0));
    procs.push(ps);
    const port = ps.port;
    const relay = new Relay(() => port);
    relays.push(relay);
    await relay.listen();
    const a = await session(relay.port, ka.key, path.join(dir, 'cache-a'));
    const b = await session(port, kb.key, path.join(dir, 'cache-b'));
    const fa = (await a.client.create(ROOT, a.root, 'f', { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } })).fh!;
    await a.client.write(ROOT, fa, 0, Buffer.from('acknowledged on A\n'), StableHow.UNSTABLE);
    await a.client.commit(ROOT, fa, 0, 0);
    assert.equal(await onServer('f'), '', 'in A journal only');
    const fb = (await b.client.lookup(ROOT, b.root, 'f')).fh;
    // B's read recalls A; the recall is held by the frozen relay; the proxy server dies meanwhile.
    relay.freeze();
    const first = b.client.read(ROOT, fb, 0, 100).then((r) => r.data.toString(), (e: Error) => e);
    const held0 = relay.heldToClient;
    await until('the recall is in flight (held by the relay)', () => relay.heldToClient > held0);
    ps.proc.kill('SIGKILL');
    await new Promise((r) => ps.proc.once('exit', r));
    ps = await spawnGvfs(args(port));
    procs.push(ps);
    // B's link is back (FSSTAT is not held by the grace period)...
    await until('B reaches the restarted server', () => b.client.fsstat(ROOT, b.root).then(() => true, () => false));
    // ... and B reads while A cannot reach it: B must wait for A's reclaim (grace), not read the old bytes.
    let second: string | Error | undefined;
    const p2 = b.client.read(ROOT, fb, 0, 100).then((r) => (second = r.data.toString()), (e: Error) => (second = e));
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(second, undefined, `B's read waits in the grace period (got ${String(second)})`);
    relay.thaw();
    await p2;
    // The read cut by the kill either failed or (resent to the new server) waited like the second one.
    const got1 = await first;
    assert.ok(got1 instanceof Error || got1 === 'acknowledged on A\n', `B never reads the old (empty) file (got ${JSON.stringify(String(got1))})`);
    assert.equal(second, 'acknowledged on A\n', "B reads A's acknowledged bytes");
    assert.equal(await onServer('f'), 'acknowledged on A\n');
    assert.equal(a.pc.cache!.stats().dirtyBytes, 0);
    assert.ok(a.pc.cache!.held!.c.restarts >= 1, 'A noticed the new instance');
    // No stale overwrite afterwards: B's newer write stays.
    await b.client.write(ROOT, fb, 0, Buffer.from('newer, by B       \n'), StableHow.FILE_SYNC);
    await b.pc.cache!.flush();
    await a.pc.cache!.flush();
    assert.equal(await onServer('f'), 'newer, by B       \n');
  });

  it('(b) a client killed during a recall and restarted on its cache directory: its stale journal is refused', async () => {
    const dir = path.join(base, 'b');
    await fs.mkdir(dir);
    const ka = await keyFile(dir, 'a.key', 'alice');
    const kb = await keyFile(dir, 'b.key', 'bob');
    const up = await LocalExport.open({ root: exportDir, stateDir: path.join(dir, 'up-state'), attrCacheMs: 0 });
    const upSrv: RpcServer = createNfs3Server({ backend: up });
    const upPort = (await upSrv.listen(0, '127.0.0.1')).port;
    const ps: ProxyServer = await createProxyServer({
      sessions: new SessionRegistry([ka.key, kb.key]),
      exports: [{ kind: 'upstream', url: { host: '127.0.0.1', port: upPort, mountPort: upPort, path: '/' } }],
      delegateUnwatched: true, // the upstream is this test's own server: every change goes through the proxy server
      map: new Map(),
      stateDir: path.join(dir, 'ps-state'),
      delegationLeaseMs: LEASE_S * 1000,
    });
    const psPort = (await ps.listen(0, '127.0.0.1')).port;
    const relay = new Relay(() => psPort);
    relays.push(relay);
    await relay.listen();
    const cacheDir = path.join(dir, 'cache-a');
    const clientArgs = (key: string) => ['proxy-client', '--server', `127.0.0.1:${relay.port}`, '--key', key, '--cache-dir', cacheDir, '--cache-session', ka.key.id, '--consistency', 'callback', '--write-back', '--dirty-max-age', '3600', '--timeout', '3000', '--listen', '127.0.0.1:0'];
    try {
      let a = await spawnGvfs(clientArgs(ka.file));
      procs.push(a);
      let ac = new RemoteNfs({ host: '127.0.0.1', port: a.port, timeoutMs: 30_000 });
      nfs.push(ac);
      const aRoot = (await ac.mount('/', ROOT)).fh;
      const fa = (await ac.create(ROOT, aRoot, 'g', { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } })).fh!;
      await ac.write(ROOT, fa, 0, Buffer.from('STALE from A\n'), StableHow.UNSTABLE);
      await ac.commit(ROOT, fa, 0, 0);
      assert.equal(await onServer('g'), '');
      const b = await session(psPort, kb.key, path.join(dir, 'cache-b'));
      const fb = (await b.client.lookup(ROOT, b.root, 'g')).fh;
      relay.freeze();
      const read = b.client.read(ROOT, fb, 0, 100);
      await until('the recall is pending', () => ps.delegations.c.waited > 0);
      a.proc.kill('SIGKILL');
      await new Promise((r) => a.proc.once('exit', r));
      relay.cut();
      relay.thaw();
      // A's lease runs out: revoked and fenced; B's read and then its newer write proceed.
      await read;
      assert.ok(ps.delegations.c.revoked >= 1, 'A was revoked');
      await b.client.write(ROOT, fb, 0, Buffer.from('newer, by B\n'), StableHow.FILE_SYNC);
      await b.pc.cache!.flush();
      assert.equal(await onServer('g'), 'newer, by B\n');
      // A again: same cache directory (journal, client id) and key (a journal's handles are the session's own).
      a = await spawnGvfs(clientArgs(ka.file));
      procs.push(a);
      await a.waitLog((l) => /flush failed/.test(l.msg ?? '') && l.code === 'ACCES', 60_000);
      assert.equal(await onServer('g'), 'newer, by B\n', 'the restarted client did not overwrite newer data');
      assert.ok(ps.delegations.c.reclaimsRefused >= 1);
      assert.ok(/unflushed data stays in the journal/.test(a.log()), "A's bytes stay in its journal, reported");
      await a.stop();
    } finally {
      await ps.close();
      await upSrv.close();
      await up.close();
    }
  });
});
