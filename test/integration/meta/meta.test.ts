import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isFsError } from '../../../src/backend/errors.js';
import { blockCount, isZero, META_DIR } from '../../../src/meta/format.js';
import { readMetaOf } from '../../../src/meta/generate.js';
import { bulkRead, fetchMeta } from '../../../src/ext/meta-client.js';
import { MAX_BULK, MetaStatus } from '../../../src/ext/meta-codec.js';
import { readAll, ROOT, startCacheChain, type CacheChain } from '../cache/helpers.js';
import { KB, MB, memoryFile, metaDir, metaOf, sha } from './helpers.js';

const BS = 64 * KB;

describe('meta-data through the proxy chain', { timeout: 600_000 }, () => {
  let c: CacheChain;
  before(async () => {
    c = await startCacheChain();
    await metaDir(c.exportDir);
  });
  after(() => c.stop());

  it('never shows the meta-data directory to a session', async () => {
    await memoryFile(c.exportDir, 'listed.img', 1 * MB, 'ondemand');
    const s = await c.startSession({ noCache: true });
    try {
      const names = (await s.client.readdirplus(ROOT, s.root, 0n, Buffer.alloc(8), 64 * KB, 256 * KB)).entries.map((e) => e.name);
      assert.ok(names.includes('listed.img'));
      assert.ok(!names.includes(META_DIR), `listing shows ${META_DIR}: ${names.join(' ')}`);
      const plain = (await s.client.readdir(ROOT, s.root, 0n, Buffer.alloc(8), 64 * KB)).entries.map((e) => e.name);
      assert.ok(!plain.includes(META_DIR));
      await assert.rejects(s.client.lookup(ROOT, s.root, META_DIR), (e) => isFsError(e, 'NOENT'));
      await assert.rejects(s.client.mkdir(ROOT, s.root, META_DIR, { mode: 0o755 }), (e) => isFsError(e, 'ACCES'));
      await assert.rejects(s.client.create(ROOT, s.root, META_DIR, { mode: 'unchecked', attrs: {} }), (e) => isFsError(e, 'ACCES'));
      const f = await s.lookup('listed.img');
      await assert.rejects(s.client.rename(ROOT, s.root, 'listed.img', s.root, META_DIR), (e) => isFsError(e, 'ACCES'));
      assert.ok(f.length > 0);
    } finally {
      await s.stop();
    }
  });

  it('does not ask for meta-data of small files (no extra round trip per file)', async () => {
    await memoryFile(c.exportDir, 'small.img', 512 * KB, 'whole');
    const s = await c.startSession({ cacheDir: path.join(c.base, 'cache-small') });
    try {
      const fh = await s.lookup('small.img');
      assert.equal((await readAll(s.client, fh, 512 * KB)).length, 512 * KB);
      const st = metaOf(s).stats();
      assert.equal(st.metaFetches, 0);
      assert.equal(st.plainBytes, 512 * KB);
    } finally {
      await s.stop();
    }
  });

  it('the proxy server refuses BULK_READ over its limits and for another version, and names a file without meta-data', async () => {
    const { meta } = await memoryFile(c.exportDir, 'limits.img', 4 * MB, 'ondemand', 21);
    await fs.writeFile(path.join(c.exportDir, 'plain.bin'), Buffer.alloc(2 * MB, 7));
    const s = await c.startSession({ noCache: true });
    try {
      const fh = await s.lookup('limits.img');
      const link = s.pc.remote;
      const ask = (ranges: Array<{ offset: number; len: number }>, version = meta) => bulkRead(link, ROOT, { fh, version, codec: 1, ranges });
      assert.equal((await ask([{ offset: 0, len: MAX_BULK + 1 }])).status, MetaStatus.TOOBIG);
      assert.equal((await ask([{ offset: 0, len: MAX_BULK }, { offset: MAX_BULK, len: 1 }])).status, MetaStatus.TOOBIG);
      assert.equal((await ask([{ offset: 0, len: 0 }])).status, MetaStatus.TOOBIG);
      assert.equal((await ask([{ offset: 0, len: 4096 }], { ...meta, size: meta.size + 1 })).status, MetaStatus.STALE);
      const ok = await ask([{ offset: 0, len: 4096 }]);
      assert.equal(ok.status, MetaStatus.OK);
      assert.equal(ok.ranges[0].rawLen, 4096);
      assert.equal((await fetchMeta(link, ROOT, await s.lookup('plain.bin'))).status, MetaStatus.NONE);
      assert.equal((await fetchMeta(link, ROOT, fh)).status, MetaStatus.OK);
    } finally {
      await s.stop();
    }
  });

  it('answers zero blocks with no traffic on the wire', async () => {
    const { meta } = await memoryFile(c.exportDir, 'zero.img', 4 * MB, 'ondemand', 11);
    const s = await c.startSession({ cache: { attrTimeoutMs: 600_000 }, meta: { validateMs: 600_000 } });
    try {
      const fh = await s.lookup('zero.img');
      const n = blockCount(meta);
      const zero = [...Array(n).keys()].filter((i) => isZero(meta, i));
      const data = [...Array(n).keys()].filter((i) => !isZero(meta, i));
      assert.ok(zero.length > 10 && data.length > 10);
      // The first read brings the meta-data (and one data block).
      await s.client.read(ROOT, fh, data[0] * BS, BS);
      const wire = { ...s.pc.remote.stats };
      const upReads = c.upstreamCalls('READ');
      for (const i of zero) {
        const r = await s.client.read(ROOT, fh, i * BS, BS);
        assert.equal(r.count, BS);
        assert.ok(r.data.equals(Buffer.alloc(BS)), `block ${i} not zero`);
      }
      assert.equal(s.pc.remote.stats.calls, wire.calls, 'a zero-block read made a call to the proxy server');
      assert.equal(s.pc.remote.stats.bytesIn, wire.bytesIn);
      assert.equal(c.upstreamCalls('READ'), upReads);
      assert.equal(metaOf(s).stats().zeroBytes, zero.length * BS);
    } finally {
      await s.stop();
    }
  });

  it('whole-file: one compressed bulk transfer into the cache, early blocks served before it ends, byte-identical', async () => {
    const { file, meta, zeroBlocks, blocks } = await memoryFile(c.exportDir, 'vm/ram-whole.img', 48 * MB, 'whole', 5);
    const want = sha(await fs.readFile(file));
    const s = await c.startSession({ meta: { window: 1 } });
    try {
      const fh = await s.lookup('vm').then((d) => s.client.lookup(ROOT, d, 'ram-whole.img')).then((r) => r.fh);
      const first = [...Array(blocks).keys()].find((i) => !isZero(meta, i))!;
      const r = await s.client.read(ROOT, fh, first * BS, BS);
      assert.equal(r.count, BS);
      assert.ok(metaOf(s).pending(fh) > 0, 'the first block was answered only after the whole transfer');
      const all = await readAll(s.client, fh, meta.size);
      assert.equal(sha(all), want);
      await s.cache.settle?.();
      const st = metaOf(s).stats();
      const dataBytes = (blocks - zeroBlocks) * BS;
      assert.equal(st.bulkRawBytes, dataBytes, 'every non-zero block crossed exactly once');
      assert.ok(st.bulkWireBytes < dataBytes * 0.75, `not compressed: ${st.bulkWireBytes} of ${dataBytes}`);
      // At most one call per 1 MiB chunk holding data (demand reads jump the queue with calls of their own); 64 KiB NFS READs would be hundreds.
      const chunks = new Set([...Array(blocks).keys()].filter((i) => !isZero(meta, i)).map((i) => Math.floor((i * BS) / MB))).size;
      assert.ok(st.bulkCalls <= chunks, `${st.bulkCalls} bulk calls for ${chunks} chunks`);
      assert.equal(st.hashMismatches, 0);
      assert.equal(s.cache.stats().serverReads, 0, 'the plain READ path was used');
      assert.equal(st.zeroBytes, zeroBlocks * BS);
    } finally {
      await s.stop();
    }
    // The blocks landed in the disk cache: a second session on it reads with no bulk transfer and no READ.
    const s2 = await c.startSession();
    try {
      const fh = await s2.lookup('vm').then((d) => s2.client.lookup(ROOT, d, 'ram-whole.img')).then((r) => r.fh);
      assert.equal(sha(await readAll(s2.client, fh, meta.size)), want);
      const st = metaOf(s2).stats();
      assert.equal(st.bulkRawBytes, 0, 'blocks fetched again although cached');
      assert.equal(s2.cache.stats().serverReads, 0);
    } finally {
      await s2.stop();
    }
  });

  it('a file changed after meta gen is read correctly (on demand, never from stale meta-data)', async () => {
    const { file, meta } = await memoryFile(c.exportDir, 'changed.img', 2 * MB, 'whole', 9);
    const z = [...Array(blockCount(meta)).keys()].find((i) => isZero(meta, i))!;
    const h = await fs.open(file, 'r+');
    await h.write(Buffer.from('not zero any more'), 0, 17, z * BS + 100);
    await h.close();
    const s = await c.startSession({ cacheDir: path.join(c.base, 'cache-changed') });
    try {
      const fh = await s.lookup('changed.img');
      const got = await readAll(s.client, fh, meta.size);
      assert.equal(sha(got), sha(await fs.readFile(file)));
      assert.equal(got.subarray(z * BS + 100, z * BS + 117).toString(), 'not zero any more');
      const st = metaOf(s).stats();
      assert.equal(st.zeroBytes, 0);
      assert.equal(st.bulkRawBytes, 0);
      assert.ok(st.stale >= 1);
    } finally {
      await s.stop();
    }
  });

  it('detects corrupted bulk data: never served, fetched again; meta-data retired when it keeps failing', async () => {
    const { file, meta } = await memoryFile(c.exportDir, 'corrupt.img', 4 * MB, 'ondemand', 13);
    const want = await fs.readFile(file);
    const server = c.proxyServer.meta;
    const orig = server.bulkRead.bind(server);
    let corrupt = 1;
    server.bulkRead = async (cred, a) => {
      const r = await orig(cred, { ...a, codec: 0 });
      if (corrupt > 0 && r.ranges.length) {
        corrupt--;
        r.ranges[0].data = Buffer.from(r.ranges[0].data);
        r.ranges[0].data[5] ^= 0xff;
      }
      return r;
    };
    try {
      const s = await c.startSession({ cacheDir: path.join(c.base, 'cache-corrupt') });
      try {
        const fh = await s.lookup('corrupt.img');
        assert.ok(sha(await readAll(s.client, fh, meta.size)).startsWith(sha(want)));
        const st = metaOf(s).stats();
        assert.equal(st.hashMismatches, 1);
        assert.equal(st.refetches, 1);
        assert.equal(st.retired, 0);
      } finally {
        await s.stop();
      }
      corrupt = 1_000_000;
      const s2 = await c.startSession({ cacheDir: path.join(c.base, 'cache-corrupt2') });
      try {
        const fh = await s2.lookup('corrupt.img');
        assert.equal(sha(await readAll(s2.client, fh, meta.size, 256 * KB, 1)), sha(want));
        const st = metaOf(s2).stats();
        assert.ok(st.hashMismatches >= 2);
        assert.equal(st.retired, 1);
        assert.ok(st.plainBytes > 0);
      } finally {
        await s2.stop();
      }
    } finally {
      server.bulkRead = orig;
    }
  });

  it('records a read order and prefetches in it on the next session', async () => {
    const { file, meta } = await memoryFile(c.exportDir, 'resume.img', 8 * MB, 'ondemand', 17);
    const data = [...Array(blockCount(meta)).keys()].filter((i) => !isZero(meta, i));
    const order = [data[7], data[2], data[30], data[1]];
    const s = await c.startSession({ cacheDir: path.join(c.base, 'cache-rec') });
    try {
      const fh = await s.lookup('resume.img');
      assert.ok(metaOf(s).startRecording());
      for (const i of order) await s.client.read(ROOT, fh, i * BS, 4096);
      const res = await metaOf(s).stopRecording('prefetch');
      assert.equal(res.length, 1);
      assert.ok(res[0].stored, res[0].error);
      assert.equal(res[0].blocks, order.length);
    } finally {
      await s.stop();
    }
    const stored = (await readMetaOf(file, c.exportDir))!.meta;
    assert.deepEqual(stored.order, order);
    assert.equal(stored.hint, 'prefetch');
    const s2 = await c.startSession({ cacheDir: path.join(c.base, 'cache-rec2') });
    try {
      const fh = await s2.lookup('resume.img');
      await s2.client.read(ROOT, fh, order[0] * BS, 4096);
      const st = metaOf(s2).stats();
      assert.equal(st.transfers, 1);
      assert.ok(st.backgroundChunks >= 1);
      assert.equal(sha(await readAll(s2.client, fh, meta.size)), sha(await fs.readFile(file)));
    } finally {
      await s2.stop();
    }
  });
});
