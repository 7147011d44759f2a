import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { FType, StableHow } from '../../../src/nfs3/constants.js';
import { ganeshaSkip } from '../../helpers/ganesha.js';
import { ALICE, startChain, type Chain } from '../../helpers/chain.js';
import { ROOT } from '../../helpers/local-server.js';

const run = promisify(execFile);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

for (const kind of ['gvfs', 'ganesha'] as const) {
  describe(`proxy chain to ${kind}`, { skip: kind === 'ganesha' && ganeshaSkip(), timeout: 300_000 }, () => {
    let c: Chain;
    const url = (p: string) => `nfs://127.0.0.1${c.exportPath === '/' ? '' : c.exportPath}${p}?version=3&nfsport=${c.proxyClientPort}&mountport=${c.proxyClientPort}`;
    before(async () => {
      c = await startChain(kind);
      await fs.mkdir(path.join(c.upstream.dir, 'pub'), { mode: 0o777 });
      await fs.chmod(path.join(c.upstream.dir, 'pub'), 0o777);
    });
    after(() => c.stop());

    test('libnfs copies in and out through proxy client and proxy server, byte-identical', async () => {
      const data = randomBytes(6 * 1024 * 1024 + 333);
      const src = path.join(c.base, 'src.bin');
      await fs.writeFile(src, data);
      await run('nfs-cp', [src, url('/pub/in.bin')]);
      assert.equal(sha(await fs.readFile(path.join(c.upstream.dir, 'pub/in.bin'))), sha(data));
      const out = path.join(c.base, 'out.bin');
      await run('nfs-cp', [url('/pub/in.bin'), out]);
      assert.equal(sha(await fs.readFile(out)), sha(data));
      const ls = (await run('nfs-ls', [url('/pub/')])).stdout;
      assert.match(ls, /in\.bin/);
    });

    test('every NFSv3 procedure through the chain', async () => {
      const pub = (await c.client.lookup(ROOT, c.root, 'pub')).fh;
      assert.equal((await c.client.getattr(ROOT, pub)).type, FType.DIR);
      const f = await c.client.create(ROOT, pub, 'p.txt', { mode: 'guarded', attrs: { mode: 0o644 } });
      await c.client.write(ROOT, f.fh!, 0, Buffer.from('hello chain'), StableHow.UNSTABLE);
      await c.client.commit(ROOT, f.fh!, 0, 0);
      assert.equal((await c.client.read(ROOT, f.fh!, 0, 100)).data.toString(), 'hello chain');
      await c.client.setattr(ROOT, f.fh!, { size: 5 });
      assert.equal((await c.client.getattr(ROOT, f.fh!)).size, 5);
      assert.ok((await c.client.access(ROOT, f.fh!, 0x3f)).access & 1);
      const d = await c.client.mkdir(ROOT, pub, 'd', { mode: 0o755 });
      const l = await c.client.symlink(ROOT, d.fh!, 'ln', 'target/path', {});
      assert.equal((await c.client.readlink(ROOT, l.fh!)).path, 'target/path');
      await c.client.link(ROOT, f.fh!, d.fh!, 'hard');
      await c.client.rename(ROOT, d.fh!, 'hard', pub, 'renamed');
      const names: string[] = [];
      let cookie = 0n;
      let verf: Buffer = Buffer.alloc(8);
      for (;;) {
        const p = await c.client.readdirplus(ROOT, pub, cookie, verf, 512, 4096);
        for (const e of p.entries) {
          names.push(e.name);
          cookie = e.cookie;
        }
        verf = p.verf;
        if (p.eof) break;
      }
      assert.ok(names.includes('renamed') && names.includes('d') && names.includes('p.txt'));
      const rd = await c.client.readdir(ROOT, pub, 0n, Buffer.alloc(8), 8192);
      assert.ok(rd.entries.some((e) => e.name === 'p.txt'));
      assert.ok((await c.client.fsstat(ROOT, pub)).tbytes > 0);
      assert.ok((await c.client.fsinfo(ROOT, pub)).rtmax > 0);
      assert.ok((await c.client.pathconf(ROOT, pub)).nameMax > 0);
      await c.client.remove(ROOT, pub, 'renamed');
      await c.client.remove(ROOT, d.fh!, 'ln');
      await c.client.rmdir(ROOT, pub, 'd');
      await c.client.remove(ROOT, pub, 'p.txt');
    });

    test('errors propagate unchanged: NOENT, EXIST, NOTEMPTY, NOTDIR, STALE, ACCES', async () => {
      const pub = (await c.client.lookup(ROOT, c.root, 'pub')).fh;
      await assert.rejects(c.client.lookup(ROOT, pub, 'missing'), { code: 'NOENT' });
      await c.client.mkdir(ROOT, pub, 'e', { mode: 0o755 });
      await assert.rejects(c.client.mkdir(ROOT, pub, 'e', {}), { code: 'EXIST' });
      const e = await c.client.lookup(ROOT, pub, 'e');
      const g = await c.client.create(ROOT, e.fh, 'g', { mode: 'guarded', attrs: { mode: 0o644 } });
      await assert.rejects(c.client.rmdir(ROOT, pub, 'e'), { code: 'NOTEMPTY' });
      await assert.rejects(c.client.lookup(ROOT, g.fh!, 'x'), { code: 'NOTDIR' });
      await c.client.remove(ROOT, e.fh, 'g');
      await assert.rejects(c.client.getattr(ROOT, g.fh!), { code: 'STALE' });
      await fs.mkdir(path.join(c.upstream.dir, 'locked'), { mode: 0o700 });
      const locked = await c.client.lookup(ROOT, c.root, 'locked');
      await assert.rejects(c.client.create(ROOT, locked.fh, 'x', { mode: 'guarded', attrs: {} }), { code: 'ACCES' });
    });

    test('files created through the chain belong to the mapped local account, whatever the client claims', async () => {
      const pub = (await c.client.lookup(ROOT, c.root, 'pub')).fh;
      await c.client.create({ ...ROOT, uid: 0, gid: 0 }, pub, 'owned', { mode: 'guarded', attrs: {} });
      const st = await fs.stat(path.join(c.upstream.dir, 'pub/owned'));
      assert.equal(st.uid, ALICE.uid);
      assert.equal(st.gid, ALICE.gid);
      await c.client.mkdir({ ...ROOT, uid: 4242, gid: 4242 }, pub, 'owned-dir', {});
      assert.equal((await fs.stat(path.join(c.upstream.dir, 'pub/owned-dir'))).uid, ALICE.uid);
    });

    test('an upstream handle presented directly, or a forged one, is refused', async () => {
      const upstreamRoot = (await c.proxyServer.upstreams[0].mount(c.upstream.exportPath, ROOT)).fh;
      await assert.rejects(c.client.getattr(ROOT, upstreamRoot), { code: 'BADHANDLE' });
      const forged = Buffer.from(c.root);
      forged[4] ^= 0xff;
      await assert.rejects(c.client.getattr(ROOT, forged), { code: 'BADHANDLE' });
    });

    test('proxy handles survive a proxy server restart', async () => {
      const pub = (await c.client.lookup(ROOT, c.root, 'pub')).fh;
      const f = await c.client.create(ROOT, pub, 'persist', { mode: 'guarded', attrs: {} });
      await c.restartProxyServer();
      assert.equal((await c.client.getattr(ROOT, f.fh!)).type, FType.REG);
      assert.equal((await c.client.getattr(ROOT, pub)).type, FType.DIR);
    });
  });
}
