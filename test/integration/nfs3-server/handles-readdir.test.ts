import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import { ROOT, startLocalServer, type LocalServer } from '../../helpers/local-server.js';

describe('handles survive restarts; large directories page', { timeout: 300_000 }, () => {
  let s: LocalServer;
  before(async () => {
    s = await startLocalServer();
  });
  after(() => s.stop());

  test('handles are stable across a server restart; the write verifier changes', async () => {
    const d = await s.client.mkdir(ROOT, s.root, 'a', {});
    const d2 = await s.client.mkdir(ROOT, d.fh!, 'b', {});
    const f = await s.client.create(ROOT, d2.fh!, 'file', { mode: 'guarded', attrs: {} });
    const w1 = await s.client.write(ROOT, f.fh!, 0, Buffer.from('hello'), StableHow.UNSTABLE);
    await s.restart();
    assert.ok((await s.client.mount('/', ROOT)).fh.equals(s.root), 'same root handle');
    const w2 = await s.client.write(ROOT, f.fh!, 5, Buffer.from(' world'), StableHow.FILE_SYNC);
    assert.ok(!w1.verf.equals(w2.verf), 'verifier changes on restart so clients resend unstable writes');
    assert.equal((await s.client.read(ROOT, f.fh!, 0, 100)).data.toString(), 'hello world');
  });

  test('a handle still resolves after the name journal is lost (export search)', async () => {
    const f = await s.client.lookup(ROOT, (await s.client.lookup(ROOT, (await s.client.lookup(ROOT, s.root, 'a')).fh, 'b')).fh, 'file');
    await s.server.close();
    await s.backend.close();
    await fs.rm(path.join(s.stateDir, 'names.journal'));
    await s.restart();
    assert.equal((await s.client.read(ROOT, f.fh, 0, 100)).data.toString(), 'hello world');
  });

  test('a file moved by a local program is found again', async () => {
    const f = await s.client.lookup(ROOT, (await s.client.lookup(ROOT, (await s.client.lookup(ROOT, s.root, 'a')).fh, 'b')).fh, 'file');
    await fs.rename(path.join(s.exportDir, 'a/b/file'), path.join(s.exportDir, 'a/moved'));
    assert.equal((await s.client.read(ROOT, f.fh, 0, 100)).data.toString(), 'hello world');
  });

  test('READDIR and READDIRPLUS page through 3,000 entries, each name exactly once', async () => {
    const big = path.join(s.exportDir, 'big');
    await fs.mkdir(big);
    const want = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const n = `entry-${i.toString().padStart(5, '0')}-${'x'.repeat(i % 40)}`;
      want.add(n);
      await fs.writeFile(path.join(big, n), '');
    }
    const dir = (await s.client.lookup(ROOT, s.root, 'big')).fh;
    for (const plus of [false, true]) {
      const seen: string[] = [];
      let cookie = 0n;
      let verf: Buffer = Buffer.alloc(8);
      let pages = 0;
      for (;;) {
        const p = plus ? await s.client.readdirplus(ROOT, dir, cookie, verf, 4096, 8192) : await s.client.readdir(ROOT, dir, cookie, verf, 4096);
        pages++;
        for (const e of p.entries) {
          seen.push(e.name);
          if (plus) assert.ok((e as { fh?: Buffer }).fh && (e as { attr?: unknown }).attr, 'READDIRPLUS entries carry handle and attributes');
          cookie = e.cookie;
        }
        verf = p.verf;
        if (p.eof) break;
        assert.ok(p.entries.length > 0);
      }
      assert.ok(pages > 10, `many pages (${pages})`);
      const names = seen.filter((n) => n !== '.' && n !== '..');
      assert.equal(names.length, 3000);
      assert.deepEqual(new Set(names), want);
    }
  });

  test('a directory changed between pages: no entry seen twice, survivors all seen', async () => {
    const dir = (await s.client.lookup(ROOT, s.root, 'big')).fh;
    const first = await s.client.readdir(ROOT, dir, 0n, Buffer.alloc(8), 2048);
    const last = first.entries[first.entries.length - 1];
    // remove some names and add others mid-listing
    const all = await fs.readdir(path.join(s.exportDir, 'big'));
    const removed = all.slice(0, 50);
    for (const n of removed) await fs.rm(path.join(s.exportDir, 'big', n));
    const added = Array.from({ length: 50 }, (_, i) => `added-${i}`);
    for (const n of added) await fs.writeFile(path.join(s.exportDir, 'big', n), '');
    const seen = new Set(first.entries.map((e) => e.name));
    const firstPage = new Set(seen);
    let cookie = last.cookie;
    for (;;) {
      const p = await s.client.readdir(ROOT, dir, cookie, first.verf, 8192);
      for (const e of p.entries) {
        assert.ok(!seen.has(e.name), `${e.name} seen twice`);
        seen.add(e.name);
        cookie = e.cookie;
      }
      if (p.eof) break;
    }
    // Names present all along are all seen; a name added mid-listing may or may not be (POSIX readdir), but once at
    // most (checked above); a name removed before the listing got to it is not returned.
    for (const n of await fs.readdir(path.join(s.exportDir, 'big'))) if (!added.includes(n)) assert.ok(seen.has(n), `${n} missing`);
    for (const n of removed) if (!firstPage.has(n)) assert.ok(!seen.has(n), `${n} was removed before the listing reached it, yet listed`);
  });

  test('READDIR with a count too small for one entry is TOOSMALL', async () => {
    const dir = (await s.client.lookup(ROOT, s.root, 'big')).fh;
    await assert.rejects(s.client.readdir(ROOT, dir, 3n, Buffer.alloc(8), 140), { code: 'TOOSMALL' });
  });
});
