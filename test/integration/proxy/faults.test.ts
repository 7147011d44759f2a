import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { createProxyClient } from '../../../src/proxy/proxy-client.js';
import { newSessionKey, writeKeyFile } from '../../../src/channel/session-key.js';
import { ganeshaSkip } from '../../helpers/ganesha.js';
import { spawnGvfs } from '../../helpers/gvfs-proc.js';
import { startChain, startUpstream, type Chain } from '../../helpers/chain.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';

const run = promisify(execFile);
const sha = async (f: string) => createHash('sha256').update(await fs.readFile(f)).digest('hex');

async function waitFor(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const size = async (f: string) => (await fs.stat(f).catch(() => ({ size: 0 }))).size;

describe('faults in the proxy chain', { skip: ganeshaSkip(), timeout: 300_000 }, () => {
  let c: Chain;
  before(async () => {
    c = await startChain('ganesha');
    await fs.chmod(c.upstream.dir, 0o777);
    await fs.mkdir(path.join(c.upstream.dir, 'd'), { mode: 0o777 });
    await fs.chmod(path.join(c.upstream.dir, 'd'), 0o777);
  });
  after(() => c.stop());
  const url = (p: string) => `nfs://127.0.0.1${c.exportPath}${p}?version=3&nfsport=${c.proxyClientPort}&mountport=${c.proxyClientPort}`;

  test('upstream server restarted mid-copy (out and in): both copies complete byte-identical', async () => {
    const big = path.join(c.upstream.dir, 'd/big.bin');
    const fh = await fs.open(big, 'w');
    for (let i = 0; i < 12; i++) await fh.write(randomBytes(8 << 20));
    await fh.close();
    const out = path.join(c.base, 'out.bin');
    const copyOut = run('nfs-cp', [url('/d/big.bin'), out]);
    await waitFor(async () => (await size(out)) > 8 << 20, 30_000, 'copy out to start');
    await c.upstream.restart();
    await copyOut;
    assert.equal(await sha(out), await sha(big));

    const copyIn = run('nfs-cp', [out, url('/d/in.bin')]);
    await waitFor(async () => (await size(path.join(c.upstream.dir, 'd/in.bin'))) > 8 << 20, 30_000, 'copy in to start');
    await c.upstream.restart();
    await copyIn;
    assert.equal(await sha(path.join(c.upstream.dir, 'd/in.bin')), await sha(big));
    assert.ok(c.proxyServer.upstreams[0].stats.reconnects >= 2, 'the proxy server reconnected upstream');
  });

  test('a dropped proxy link during many creates: calls in flight are resent, answered from the duplicate-request cache, each executes once', async (t) => {
    const d = (await c.client.lookup(ROOT, c.root, 'd')).fh;
    const remote = c.proxyClient.remote;
    const server = c.proxyServer.server;
    const resends0 = remote.stats.resends;
    const hits0 = server.stats.drcHits;
    const creates = () => server.stats.callsByProc.get('nfs3.CREATE') ?? 0;
    const creates0 = creates();
    // The link drops at a chosen call, not after a sleep: the moment the proxy server has begun the 50th CREATE
    // (its reply cannot reach the client on that connection), every connection of the proxy client is cut.
    const dispatch = server.dispatch.bind(server);
    let droppedAt = -1;
    server.dispatch = (record, conn) => {
      const p = dispatch(record, conn);
      if (droppedAt < 0 && creates() - creates0 === 50) {
        droppedAt = remote.clients.reduce((n, cl) => n + cl.rpc.pending, 0);
        for (const cl of remote.clients) cl.rpc.dropConnection();
      }
      return p;
    };
    try {
      const calls = Array.from({ length: 300 }, (_, i) => c.client.create(ROOT, d, `n${i}`, { mode: 'guarded', attrs: { mode: 0o644 } }));
      const res = await Promise.allSettled(calls);
      const failed = res.filter((r) => r.status === 'rejected');
      // Guarded: a CREATE executed twice would answer EXIST.
      assert.equal(failed.length, 0, `failures: ${failed.map((f) => (f as PromiseRejectedResult).reason?.message).join(', ')}`);
    } finally {
      server.dispatch = dispatch;
    }
    assert.ok(droppedAt > 0, `calls were in flight when the link dropped (${droppedAt})`);
    const resends = remote.stats.resends - resends0;
    const hits = server.stats.drcHits - hits0;
    t.diagnostic(`${droppedAt} calls in flight at the drop, ${resends} resent, ${hits} answered from the proxy server's DRC`);
    assert.ok(resends >= 1, 'the proxy client resent the calls it had on the wire');
    assert.ok(hits >= 1, "a resent CREATE the server had begun was answered from the duplicate-request cache");
    const names = (await fs.readdir(path.join(c.upstream.dir, 'd'))).filter((n) => /^n\d+$/.test(n));
    assert.equal(names.length, 300);
  });
});

describe('a killed proxy server', { timeout: 180_000 }, () => {
  test('clients get errors, not hangs, and recover when it returns', async () => {
    const base = await tempDir('gvfs-kill-');
    const up = await startUpstream('gvfs', base);
    const keyFile = path.join(base, 'alice.key');
    const key = newSessionKey('alice');
    await writeKeyFile(keyFile, key);
    const args = ['proxy-server', '--listen', '127.0.0.1:0', '--upstream', `nfs://127.0.0.1:${up.port}/`, '--map-user', 'alice=0:0', '--key', keyFile, '--state-dir', path.join(base, 'ps')];
    let ps = await spawnGvfs(args);
    const port = ps.port;
    const pc = createProxyClient({ host: '127.0.0.1', port, key, timeoutMs: 2000 });
    const pcPort = (await pc.server.listen(0, '127.0.0.1')).port;
    const cl = new RemoteNfs({ host: '127.0.0.1', port: pcPort, timeoutMs: 30_000 });
    try {
      const root = (await cl.mount('/', ROOT)).fh;
      assert.ok((await cl.getattr(ROOT, root)).fileid);
      ps.proc.kill('SIGKILL');
      await new Promise((r) => ps.proc.once('exit', r));
      const t0 = Date.now();
      await assert.rejects(cl.getattr(ROOT, root), { code: 'IO' });
      assert.ok(Date.now() - t0 < 10_000, 'error within the proxy client deadline');
      const t1 = Date.now();
      await assert.rejects(run('nfs-ls', [`nfs://127.0.0.1/?version=3&nfsport=${pcPort}&mountport=${pcPort}`], { timeout: 30_000 }), (e: { killed?: boolean }) => !e.killed);
      assert.ok(Date.now() - t1 < 25_000);
      ps = await spawnGvfs(args.map((a) => (a === '127.0.0.1:0' ? `127.0.0.1:${port}` : a)));
      assert.ok((await cl.getattr(ROOT, root)).fileid, 'same handle works after the proxy server returns');
    } finally {
      await cl.close();
      await pc.close();
      await ps.stop();
      await up.stop();
      await fs.rm(base, { recursive: true, force: true });
    }
  });
});
