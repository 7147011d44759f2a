import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import { rng, ROOT, startCacheChain, type CacheChain } from './helpers.js';
import { explainMismatch, type FsxOp } from './fsx-explain.js';

const OPS = Number(process.env.GVFS_FSX_OPS ?? 2500);
const MAX_SIZE = 600 * 1024;

/**
 * fsx-style exerciser: random writes, reads, truncates, flushes and restarts
 * of nothing but the client's view, through proxy client (with cache) →
 * proxy server → gvfs serve, checked against a local model after every read
 * and, at the end, on the server's disk byte for byte.
 */
for (const mode of ['write-back', 'write-through'] as const) {
  describe(`cache fsx: ${mode}`, { timeout: 300_000 }, () => {
    let c: CacheChain;
    before(async () => {
      c = await startCacheChain();
    });
    after(() => c.stop());

    test(`${OPS} random operations agree with the model`, async (t) => {
      const seed = Number(process.env.GVFS_FSX_SEED ?? Date.now() % 100000);
      const rand = rng(seed);
      const ri = (n: number) => Math.floor(rand() * n);
      const s = await c.startSession({
        cache: { writeBack: mode === 'write-back', blockSize: 16 * 1024, capacity: 512 * 1024, attrTimeoutMs: 50, maxDirtyAgeMs: 200, dirtyLimit: 256 * 1024 },
      });
      const name = `fsx-${mode}.bin`;
      const fh = (await s.client.create(ROOT, s.root, name, { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
      let model = Buffer.alloc(0);
      // Every write and truncate, so a mismatch can say which op wrote the bytes found (fsx-explain.ts).
      const history: FsxOp[] = [];
      const check = async (i: number, what: string, off: number, got: Buffer, want: Buffer) => {
        if (got.equals(want)) return;
        // What the server's disk holds there now (with unflushed writes it may lag the model): tells a stale
        // cache block (disk right, read wrong) from a write misdelivered to the server (disk wrong too).
        const disk = await fs.readFile(path.join(c.exportDir, name)).catch(() => Buffer.alloc(0));
        const onDisk = disk.subarray(Math.min(off, disk.length), Math.min(off + want.length, disk.length));
        const pending = s.cache.stats().dirtyBytes;
        assert.fail(
          `op ${i}: ${what} data (seed ${seed})\n${explainMismatch(history, off, got, want, 16 * 1024)}\n` +
            `server disk there ${onDisk.equals(want) ? 'AGREES with the model' : `differs from the model (${pending} bytes unflushed): ${explainMismatch(history, off, onDisk, want, 16 * 1024).split('\n')[0]}`}\n` +
            `cache stats ${JSON.stringify(s.cache.stats())}`,
        );
      };
      const counts: Record<string, number> = {};
      const note = (op: string) => (counts[op] = (counts[op] ?? 0) + 1);
      try {
        for (let i = 0; i < OPS; i++) {
          const p = rand();
          if (p < 0.4) {
            const off = ri(MAX_SIZE);
            const len = 1 + ri(rand() < 0.7 ? 4096 : 65536);
            // Bytes that name the operation and the offset, so a misplaced byte shows.
            const data = Buffer.alloc(len, i & 0xff);
            for (let k = 0; k + 4 <= len; k += 512) data.writeUInt32LE((i * 65537 + k) >>> 0, k);
            const stable = [StableHow.UNSTABLE, StableHow.DATA_SYNC, StableHow.FILE_SYNC][ri(3)];
            const r = await s.client.write(ROOT, fh, off, data, stable);
            assert.equal(r.count, len);
            if (off + len > model.length) model = Buffer.concat([model, Buffer.alloc(off + len - model.length)]);
            data.copy(model, off);
            history.push({ i, kind: 'write', off, len, stable });
            note('write');
          } else if (p < 0.75) {
            const off = ri(Math.max(1, model.length + 8192));
            const len = 1 + ri(rand() < 0.5 ? 8192 : 200_000);
            const r = await s.client.read(ROOT, fh, off, len);
            const want = model.subarray(Math.min(off, model.length), Math.min(off + len, model.length));
            assert.equal(r.count, want.length, `op ${i}: read ${off}+${len} count (size ${model.length}, seed ${seed})`);
            await check(i, `read ${off}+${len}`, off, r.data, want);
            assert.equal(r.eof, off + len >= model.length, `op ${i}: eof`);
            note('read');
          } else if (p < 0.82) {
            const size = rand() < 0.3 ? 0 : ri(MAX_SIZE);
            await s.client.setattr(ROOT, fh, { size });
            history.push({ i, kind: 'truncate', off: size, len: 0, from: model.length });
            model = size <= model.length ? Buffer.from(model.subarray(0, size)) : Buffer.concat([model, Buffer.alloc(size - model.length)]);
            note('truncate');
          } else if (p < 0.9) {
            assert.equal((await s.client.getattr(ROOT, fh)).size, model.length, `op ${i}: size (seed ${seed})`);
            note('getattr');
          } else if (p < 0.95) {
            await s.client.commit(ROOT, fh, 0, 0);
            history.push({ i, kind: 'commit', off: 0, len: 0 });
            note('commit');
          } else if (p < 0.98) {
            // Several reads at once, as a pipelining client sends them.
            const offs = Array.from({ length: 6 }, () => ri(Math.max(1, model.length)));
            const rs = await Promise.all(offs.map((o) => s.client.read(ROOT, fh, o, 20_000)));
            for (const [k, r] of rs.entries()) await check(i, `parallel read ${offs[k]}+20000`, offs[k], r.data, model.subarray(offs[k], Math.min(offs[k] + 20_000, model.length)));
            note('parallel-read');
          } else {
            const rep = await s.cache.flush();
            assert.equal(rep.failed.length, 0);
            history.push({ i, kind: 'flush', off: 0, len: 0 });
            note('flush');
          }
        }
        const rep = await s.cache.flush();
        assert.equal(rep.failed.length, 0);
        const onServer = await fs.readFile(path.join(c.exportDir, name));
        assert.equal(onServer.length, model.length, `server size (seed ${seed})`);
        await check(OPS, 'server bytes', 0, onServer, model);
        const st = s.cache.stats();
        t.diagnostic(`seed ${seed}: ${JSON.stringify(counts)}; cache hits ${st.hitBytes} misses ${st.missBytes} bytes evictions ${st.evictions} invalidations ${st.invalidations} flushed ${st.flushedBytes}`);
        assert.ok(st.hitBytes > 0, 'the cache served some reads');
        assert.equal(st.dirtyBytes, 0);
        assert.ok(st.used <= 512 * 1024, `used ${st.used} within capacity`);
      } catch (e) {
        (e as Error).message += ` [seed ${seed}, ops ${JSON.stringify(counts)}]`;
        throw e;
      } finally {
        await s.stop();
      }
    });
  });
}
