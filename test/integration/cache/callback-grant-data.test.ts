import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DELEGATE_READ, DelegateStatus, delegateReadArgs, delegateReadRes } from '../../../src/ext/callback-codec.js';
import { Nfs3Status, StableHow } from '../../../src/nfs3/constants.js';
import { ROOT, startCacheChain, type CacheChain, type Session } from './helpers.js';

/**
 * Callback model, DELEGATE_READ: a small file B read before and A changed
 * since (the change recalled B's delegation) comes back with B's new read
 * delegation, bytes and attributes in one reply: B's next read sends no
 * READ. A file B never read, or one bigger than the reply's limit, gets the
 * plain grant and a READ of its own.
 */
describe('callback: a re-taken read delegation brings a small file\'s new bytes (DELEGATE_READ)', { timeout: 240_000 }, () => {
  let c: CacheChain;
  let a: Session;
  let b: Session;
  const cache = { consistency: 'callback' as const, writeBack: false, attrTimeoutMs: 3_600_000, dirTimeoutMs: 3_600_000 };
  const atProxy = (proc: string) => c.proxyServer.server.stats.callsByProc.get(proc) ?? 0;
  const calls = () => ({ read: atProxy('nfs3.READ'), access: atProxy('nfs3.ACCESS'), delegateRead: atProxy('gvfs.DELEGATE_READ'), delegate: atProxy('gvfs.DELEGATE') });
  async function read(s: Session, fh: Buffer): Promise<string> {
    const at = await s.client.getattr(ROOT, fh);
    return (await s.client.read(ROOT, fh, 0, Number(at.size) + 16)).data.toString();
  }
  async function rewrite(s: Session, name: string, text: string | Buffer): Promise<void> {
    const fh = await s.lookup(name);
    await s.client.setattr(ROOT, fh, { size: 0 });
    await s.client.write(ROOT, fh, 0, Buffer.from(text), StableHow.FILE_SYNC);
  }

  before(async () => {
    c = await startCacheChain();
    await fs.writeFile(path.join(c.exportDir, 'small'), 'version 0\n');
    await fs.writeFile(path.join(c.exportDir, 'unread'), 'never read by B\n');
    await fs.writeFile(path.join(c.exportDir, 'big'), Buffer.alloc(100 * 1024, 'b'));
    a = await c.startSession({ cacheDir: path.join(c.base, 'cache-a'), cache });
    b = await c.startSession({ cacheDir: path.join(c.base, 'cache-b'), cache });
  });
  after(async () => {
    await c?.stop();
  });

  it('B reads a small file A rewrote: one DELEGATE_READ, no READ or ACCESS, the new bytes', async () => {
    const fb = await b.lookup('small');
    assert.equal(await read(b, fb), 'version 0\n');
    for (let v = 1; v <= 3; v++) {
      await rewrite(a, 'small', `version ${v}, longer than before\n`);
      const was = calls();
      const kept = b.cache.stats().grantDataBytes;
      assert.equal(await read(b, fb), `version ${v}, longer than before\n`);
      const now = calls();
      assert.equal(now.delegateRead - was.delegateRead, 1, 'the read delegation was taken again with DELEGATE_READ');
      assert.equal(now.read - was.read, 0, 'B sent no READ: the bytes came with the grant');
      assert.equal(now.access - was.access, 0, 'nor ACCESS: the server\'s READ as B said B may read it');
      assert.equal(b.cache.stats().grantDataBytes - kept, `version ${v}, longer than before\n`.length);
    }
  });

  it('a file B never read: a plain DELEGATE, then READ', async () => {
    await a.lookup('unread');
    const fb = await b.lookup('unread');
    const was = calls();
    assert.equal(await read(b, fb), 'never read by B\n');
    const now = calls();
    assert.equal(now.delegateRead - was.delegateRead, 0);
    assert.equal(now.read - was.read, 1);
  });

  it('a file bigger than the limit: the grant carries no bytes, B reads them', async () => {
    const fb = await b.lookup('big');
    assert.equal((await read(b, fb)).length, 100 * 1024);
    await rewrite(a, 'big', Buffer.alloc(90 * 1024, 'c'));
    const was = calls();
    const kept = b.cache.stats().grantDataBytes;
    const got = await read(b, fb);
    assert.equal(got, 'c'.repeat(90 * 1024));
    const now = calls();
    assert.equal(now.delegateRead - was.delegateRead, 1, 'asked for the bytes');
    assert.ok(now.read - was.read >= 1, 'they did not come: READ');
    assert.equal(b.cache.stats().grantDataBytes, kept);
  });

  it('hostile arguments: a huge dataMax gets at most 64 KiB, a forged handle nothing', async () => {
    await fs.writeFile(path.join(c.exportDir, 'exact'), Buffer.alloc(64 * 1024, 'e'));
    const ask = (fh: Buffer, dataMax: number) =>
      b.pc.remote.ext(DELEGATE_READ, (w) => delegateReadArgs.enc(w, { fh, clientId: Buffer.alloc(16, 9), dataMax }), delegateReadRes.dec, { flavor: 1, uid: 0, gid: 0, gids: [] });
    const big = await ask(await b.lookup('big'), 0xffff_ffff);
    assert.equal(big.status, DelegateStatus.OK);
    assert.equal(big.data, undefined, 'a 90 KiB file is not sent, whatever the client asks');
    const exact = await ask(await b.lookup('exact'), 0xffff_ffff);
    assert.equal(exact.data?.length, 64 * 1024, 'a file of exactly the limit is');
    const forged = Buffer.from(await b.lookup('small'));
    forged[forged.length - 1] ^= 1;
    const r = await ask(forged, 1024);
    assert.equal(r.status, DelegateStatus.NFSERR);
    assert.equal(r.nfsstat, Nfs3Status.BADHANDLE);
    assert.equal(r.data, undefined);
  });

  it('a file that shrank to nothing, and one changed on A while B holds it: never an old byte', async () => {
    const fb = await b.lookup('small');
    await read(b, fb);
    await rewrite(a, 'small', '');
    assert.equal(await read(b, fb), '');
    await rewrite(a, 'small', 'back again\n');
    assert.equal(await read(b, fb), 'back again\n');
    // Many rounds, B reading while A rewrites: every read is one of A's versions, whole.
    const versions = new Set(['back again\n']);
    const writer = (async () => {
      for (let v = 0; v < 20; v++) {
        const t = `round ${v} ${'x'.repeat(v * 97)}\n`;
        versions.add(t);
        await rewrite(a, 'small', t);
      }
    })();
    let reads = 0;
    let done = false;
    void writer.finally(() => (done = true));
    while (!done) {
      // (One READ for the whole file: a GETATTR then a READ of its size may see two versions, as on any NFS client.)
      await b.client.getattr(ROOT, fb);
      const t = (await b.client.read(ROOT, fb, 0, 64 * 1024)).data.toString();
      // (An empty read: A's truncate seen between its two calls.)
      if (t !== '') assert.ok(versions.has(t), `B read a version A never wrote: ${t.length} bytes ${JSON.stringify(t.slice(0, 12))}…${JSON.stringify(t.slice(-12))}`);
      reads++;
    }
    await writer;
    assert.equal(await read(b, fb), `round 19 ${'x'.repeat(19 * 97)}\n`);
    assert.ok(reads > 0);
  });
});
