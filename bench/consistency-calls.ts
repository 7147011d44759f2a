/**
 * Calls the proxy server handles per second under each consistency model
 * (issue 20), for a read-mostly workload on two hosts, all in one process
 * on loopback (no WAN emulation): host B stats and reads FILES small files
 * over and over through its proxy client (our NFS client on its endpoint),
 * while host A rewrites EDITS of them every 200 ms (write-through).
 *
 *   node dist/bench/consistency-calls.js [SECONDS=15] [FILES=1000] [EDITS=5]
 *
 * Prints, per model: the proxy server's calls/s (all procedures, both
 * hosts), B's GETATTR+LOOKUP+ACCESS+READ reaching the server per second,
 * and B's passes over the files per second (each pass checks that every
 * file B reads is at least the version A had written when the pass began).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RemoteNfs } from '../src/backends/remote-nfs/remote-nfs.js';
import { newSessionKey } from '../src/channel/session-key.js';
import { SessionRegistry } from '../src/channel/sessions.js';
import { StableHow } from '../src/nfs3/constants.js';
import { createProxyClient } from '../src/proxy/proxy-client.js';
import { createProxyServer } from '../src/proxy/proxy-server.js';
import { AuthFlavor, type Credentials } from '../src/rpc/types.js';
import type { CacheOptions } from '../src/wrappers/cache/options.js';

const ROOT: Credentials = { flavor: AuthFlavor.AUTH_SYS, uid: 0, gid: 0, gids: [] };
const [secs = 15, files = 1000, edits = 5] = process.argv.slice(2).map(Number);

async function run(label: string, cache: Partial<CacheOptions>): Promise<void> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-consist-bench-'));
  const dir = path.join(base, 'export');
  await fs.mkdir(dir);
  for (let i = 0; i < files; i++) await fs.writeFile(path.join(dir, `f${i}`), `file ${i} version 0`);
  const ka = newSessionKey('alice');
  const kb = newSessionKey('alice');
  const ps = await createProxyServer({
    exports: [{ kind: 'local', dir }],
    sessions: new SessionRegistry([ka, kb]),
    map: new Map([['alice', { uid: 0, gid: 0, gids: [] }]]),
    stateDir: path.join(base, 'ps'),
  });
  const port = (await ps.listen(0, '127.0.0.1')).port;
  const host = async (key: typeof ka, name: string) => {
    const pc = createProxyClient({ host: '127.0.0.1', port, key, meta: false, cache: { dir: path.join(base, name), capacity: 256 << 20, writeBack: false, ...cache } });
    await pc.cache!.ready;
    const p = (await pc.server.listen(0, '127.0.0.1')).port;
    const client = new RemoteNfs({ host: '127.0.0.1', port: p, timeoutMs: 60_000 });
    const root = (await client.mount('/', ROOT)).fh;
    return { pc, client, root };
  };
  const a = await host(ka, 'cache-a');
  const b = await host(kb, 'cache-b');
  const version = new Map<number, { n: number; at: number }>();
  let stale = 0;
  const pass = async () => {
    const began = Date.now();
    for (let i = 0; i < files; i++) {
      const fh = (await b.client.lookup(ROOT, b.root, `f${i}`)).fh;
      const at = await b.client.getattr(ROOT, fh);
      const text = (await b.client.read(ROOT, fh, 0, at.size + 64)).data.toString();
      const want = version.get(i);
      // An edit older than one period (+1 s slack) before this pass began must show.
      if (want && want.at < began - 2000 && Number(text.split('version ')[1]) < want.n) stale++;
    }
  };
  await pass(); // warm
  await pass();
  const stats = ps.server.stats;
  const calls0 = stats.calls;
  const polls0 = stats.callsByProc.get('gvfs.CHANGES_SINCE') ?? 0;
  const byProc = (p: string) => stats.callsByProc.get(`nfs3.${p}`) ?? 0;
  const bProcs = () => byProc('GETATTR') + byProc('LOOKUP') + byProc('ACCESS') + byProc('READ');
  const b0 = bProcs();
  const t0 = Date.now();
  let stop = false;
  const editor = (async () => {
    for (let n = 1; !stop; n++) {
      for (let e = 0; e < edits; e++) {
        const i = (n * 7 + e * 131) % files;
        const fh = (await a.client.lookup(ROOT, a.root, `f${i}`)).fh;
        const text = Buffer.from(`file ${i} version ${n}`);
        await a.client.setattr(ROOT, fh, { size: 0 });
        await a.client.write(ROOT, fh, 0, text, StableHow.FILE_SYNC);
        version.set(i, { n, at: Date.now() });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  let passes = 0;
  while (Date.now() - t0 < secs * 1000) {
    await pass();
    passes++;
  }
  stop = true;
  await editor;
  const s = (Date.now() - t0) / 1000;
  const bCalls = bProcs() - b0;
  console.log(
    `${label.padEnd(10)} server calls/s ${((stats.calls - calls0) / s).toFixed(0).padStart(6)}   GETATTR+LOOKUP+ACCESS+READ/s ${(bCalls / s).toFixed(0).padStart(6)}   polls/s ${(((stats.callsByProc.get('gvfs.CHANGES_SINCE') ?? 0) - polls0) / s).toFixed(1)}   B passes/s ${(passes / s).toFixed(2)}   stale reads ${stale}`,
  );
  for (const h of [a, b]) {
    await h.client.close();
    await h.pc.close();
  }
  await ps.close();
  await fs.rm(base, { recursive: true, force: true });
}

await run('ttl 1 s', { consistency: 'ttl', attrTimeoutMs: 1000 });
await run('ttl 0', { consistency: 'ttl', attrTimeoutMs: 0 });
await run('poll 1 s', { consistency: 'poll', pollMs: 1000 });
