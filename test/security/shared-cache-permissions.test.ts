import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { memoryStateFile } from '../../bench/lib/files.js';
import { RemoteNfs } from '../../src/backends/remote-nfs/remote-nfs.js';
import { newSessionKey, writeKeyFile, type SessionKey } from '../../src/channel/session-key.js';
import { isZero, type FileMeta } from '../../src/meta/format.js';
import { generateMeta } from '../../src/meta/generate.js';
import { controlRequest, controlSocketOf } from '../../src/wrappers/cache/control-socket.js';
import { sessionPath } from '../../src/wrappers/cache/session-dir.js';
import { ROOT, tempDir } from '../helpers/local-server.js';
import { spawnGvfs, type GvfsProcess } from '../helpers/gvfs-proc.js';

const MB = 1 << 20;
const BS = 64 * 1024;
const ACCES = /NFS3ERR 13\b|ACCES/;

interface Session {
  key: SessionKey;
  pc: GvfsProcess;
  client: RemoteNfs;
  root: Buffer;
  lookup(name: string): Promise<Buffer>;
  read(fh: Buffer, off: number, len: number): Promise<Buffer>;
  /** The proxy client's cache counters, through its control socket. */
  stats(op?: string): Promise<any>;
}

/**
 * Issue 14, item 8: one proxy server holding the keys of alice (2001) and
 * bob (2002); a proxy client for each (separate processes) sharing one cache
 * directory. Blocks alice's session put in the shared cache are never served
 * to bob, who may not read the file: not cold, not warm, not through the
 * meta-data path (bulk-fetched blocks, zero blocks).
 */
describe('security: the shared cache does not bypass permissions', { timeout: 300_000 }, () => {
  let base: string;
  let exp: string;
  let cacheDir: string;
  let ps: GvfsProcess;
  let alice: Session;
  let bob: Session;
  const secret = randomBytes(3 * MB + 4321);
  let mem: { meta: FileMeta; data: Buffer };

  const start = async (key: SessionKey, keyFile: string): Promise<Session> => {
    const pc = await spawnGvfs(['proxy-client', '--server', `127.0.0.1:${ps.port}`, '--key', keyFile, '--cache-dir', cacheDir, '--attr-timeout', '1']);
    const client = new RemoteNfs({ host: '127.0.0.1', port: pc.port, timeoutMs: 60_000 });
    const root = (await client.mount('/', ROOT)).fh;
    const sd = sessionPath(cacheDir, key.id);
    return {
      key,
      pc,
      client,
      root,
      lookup: async (name) => (await client.lookup(ROOT, root, name)).fh,
      async read(fh, off, len) {
        const out = Buffer.alloc(len);
        for (let got = 0; got < len; ) {
          const r = await client.read(ROOT, fh, off + got, Math.min(MB, len - got));
          r.data.copy(out, got);
          got += r.count;
          if (r.count === 0) return out.subarray(0, got);
        }
        return out;
      },
      async stats(op = 'stats') {
        const c = await controlSocketOf(sd);
        if (!c) throw new Error(`no control socket in ${sd}`);
        return (await controlRequest(c.socket, { op }, 10_000)).stats;
      },
    };
  };

  /** Poll (no fixed sleep) until `cond` holds. */
  const until = async (what: string, cond: () => Promise<boolean>, ms = 120_000) => {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  before(async () => {
    if (process.getuid!() !== 0) throw new Error('the proxy server acts as uids 2001 and 2002: run as root');
    base = await tempDir('gvfs-sec-cache-');
    exp = path.join(base, 'export');
    cacheDir = path.join(base, 'shared-cache');
    await fs.mkdir(exp, { mode: 0o755 });
    await fs.chmod(exp, 0o755);
    // alice's files, owner-only.
    const sf = path.join(exp, 'secret.bin');
    await fs.writeFile(sf, secret);
    const mf = path.join(exp, 'secret.mem');
    await memoryStateFile(mf, 8 * MB, 0.5, 7);
    for (const f of [sf, mf]) {
      await fs.chown(f, 2001, 2001);
      await fs.chmod(f, 0o600);
    }
    // Meta-data last (it names the file's version, ctime included): whole-file transfer hint.
    const g = await generateMeta(mf, { root: exp, hint: 'whole' });
    mem = { meta: g.meta, data: await fs.readFile(mf) };
    const ka = newSessionKey('alice', undefined, { uid: 2001, gid: 2001, gids: [] });
    const kb = newSessionKey('bob', undefined, { uid: 2002, gid: 2002, gids: [] });
    await writeKeyFile(path.join(base, 'alice.key'), ka);
    await writeKeyFile(path.join(base, 'bob.key'), kb);
    ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', `${exp}=/`, '--key', path.join(base, 'alice.key'), '--key', path.join(base, 'bob.key'), '--state-dir', path.join(base, 'ps-state')]);
    alice = await start(ka, path.join(base, 'alice.key'));
    bob = await start(kb, path.join(base, 'bob.key'));
  });
  after(async () => {
    for (const s of [alice, bob]) {
      await s?.client.close().catch(() => undefined);
      await s?.pc.stop();
    }
    await ps?.stop();
    if (base) await fs.rm(base, { recursive: true, force: true });
  });

  test('cold: bob is refused alice\'s 0600 file', async () => {
    const fh = await bob.lookup('secret.bin');
    await assert.rejects(bob.read(fh, 0, 64 * 1024), ACCES);
  });

  test('warm: after alice read it into the shared cache, bob is still refused, and alice still served', async () => {
    const fa = await alice.lookup('secret.bin');
    assert.ok((await alice.read(fa, 0, secret.length)).equals(secret));
    const want = Math.ceil(secret.length / MB);
    await until('alice\'s blocks on disk', async () => (await alice.stats()).blocks >= want);
    const fb = await bob.lookup('secret.bin');
    await assert.rejects(bob.read(fb, 0, 64 * 1024), ACCES, 'first block');
    await assert.rejects(bob.read(fb, 2 * MB, 4096), ACCES, 'a later block');
    // Past the attribute timeout too: the refusal is asked again, not forgotten into a grant.
    await new Promise((r) => setTimeout(r, 1100));
    await assert.rejects(bob.read(fb, MB, 4096), ACCES, 'after the attribute timeout');
    assert.equal((await bob.stats()).fromCacheBytes, 0, 'no cached byte went to bob');
    assert.ok((await alice.read(fa, MB, 1000)).equals(secret.subarray(MB, MB + 1000)));
  });

  test('meta-data path: bulk-fetched blocks and zero blocks of a whole-file transfer are not served to bob', async () => {
    const fa = await alice.lookup('secret.mem');
    const fb = await bob.lookup('secret.mem');
    await assert.rejects(bob.read(fb, 0, BS), ACCES, 'cold');
    // alice's first read starts the whole-file transfer into the shared cache; wait until it is all there.
    const m = mem.meta;
    const first = [...Array(Math.ceil(m.size / BS)).keys()].find((i) => !isZero(m, i))!;
    assert.ok((await alice.read(fa, first * BS, BS)).equals(mem.data.subarray(first * BS, (first + 1) * BS)));
    const chunks = new Set([...Array(Math.ceil(m.size / BS)).keys()].filter((i) => !isZero(m, i)).map((i) => Math.floor((i * BS) / MB))).size;
    const secretBlocks = Math.ceil(secret.length / MB);
    await until('the whole-file transfer in the cache', async () => (await alice.stats()).blocks >= secretBlocks + chunks);
    assert.ok((await alice.stats('meta-stats')).bulkRawBytes > 0, 'alice read through the bulk path');
    const data = first;
    const zero = [...Array(Math.ceil(m.size / BS)).keys()].find((i) => isZero(m, i))!;
    await assert.rejects(bob.read(fb, data * BS, BS), ACCES, 'a data block');
    await assert.rejects(bob.read(fb, zero * BS, BS), ACCES, 'a zero block');
    await assert.rejects(bob.read(fb, 0, m.size), ACCES, 'the whole file');
    // alice reads all of it, zero blocks included.
    assert.ok((await alice.read(fa, 0, m.size)).equals(mem.data));
    assert.ok((await alice.read(fa, zero * BS, BS)).equals(Buffer.alloc(BS)));
    assert.equal((await bob.stats()).fromCacheBytes, 0);
    assert.equal((await bob.stats('meta-stats')).zeroBytes, 0, 'no zero block answered to bob');
  });
});
