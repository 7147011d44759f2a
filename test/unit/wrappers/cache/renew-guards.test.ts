import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Backend } from '../../../../src/backend/backend.js';
import { heldAnswersOf, inSecondHalf } from '../../../../src/backend/capabilities.js';
import { LocalExport } from '../../../../src/backends/local-export/local-export.js';
import { StableHow } from '../../../../src/nfs3/constants.js';
import { CacheBackend } from '../../../../src/wrappers/cache/cache-backend.js';
import { PassthroughBackend } from '../../../../src/wrappers/passthrough.js';
import { ROOT, tempDir } from '../../../helpers/local-server.js';

/** Holds the reply of a LOOKUP (the server ran it at once: what it says predates anything done meanwhile). */
class HeldLookups extends PassthroughBackend {
  hold?: Promise<void>;
  /** Resolves when a held LOOKUP has its answer. */
  answered?: () => void;
  override async lookup(...a: Parameters<Backend['lookup']>): ReturnType<Backend['lookup']> {
    const h = this.hold;
    const r = await this.inner.lookup(...a);
    if (h) {
      this.answered?.();
      await h;
    }
    return r;
  }
}

/**
 * A LOOKUP's reply that crossed a change of ours — a renewal ahead (in the
 * background) or a miss — is not kept: neither the file's attributes
 * (after our WRITE) nor the directory's (after our MKDIR in it). Kept, they
 * would take the file back to its old size, or the directory to its old
 * mtime and link count, trusted for a whole attribute timeout.
 */
describe('cache: a LOOKUP that crossed a change of ours is not kept', { timeout: 60_000 }, () => {
  let dir: string;
  let local: LocalExport;
  let gate: HeldLookups;
  let cache: CacheBackend;
  let root: Buffer;
  const TTL = 60_000;

  before(async () => {
    dir = await tempDir('gvfs-renew-guards-');
    const exp = path.join(dir, 'export');
    await fs.mkdir(path.join(exp, 'd'), { recursive: true });
    await fs.writeFile(path.join(exp, 'f'), 'abc');
    await fs.writeFile(path.join(exp, 'd', 'g'), 'abc');
    await fs.writeFile(path.join(exp, 'm'), 'abc');
    local = await LocalExport.open({ root: exp, stateDir: path.join(dir, 'state'), attrCacheMs: 0 });
    gate = new HeldLookups(local);
    cache = new CacheBackend(gate, { dir: path.join(dir, 'cache'), capacity: 64 << 20, serverId: 'x', session: 's', writeBack: false, attrTimeoutMs: TTL, controlSocket: false });
    root = (await cache.mount('/', ROOT)).fh;
  });
  after(async () => {
    await cache?.close();
    await local?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** Run `during` while the next LOOKUP's answer is held, once that LOOKUP has its answer; then let it go. */
  async function crossing(start: () => Promise<unknown>, during: () => Promise<void>): Promise<void> {
    let release!: () => void;
    gate.hold = new Promise((r) => (release = r));
    const asked = new Promise<void>((r) => (gate.answered = r));
    const p = start();
    await asked;
    gate.hold = undefined;
    await during();
    release();
    await p;
  }

  /** A hit in the second half of the name's trust (renewing ahead): the clock moved forward for the cache. */
  async function renewalOf(d: Buffer, name: string): Promise<void> {
    const now = Date.now;
    Date.now = () => now() + TTL * 0.6;
    try {
      const r0 = cache.stats().renewals;
      await cache.lookup(ROOT, d, name);
      assert.ok(cache.stats().renewals > r0, 'a renewal started');
    } finally {
      Date.now = now;
    }
  }

  test('a renewal that crossed our WRITE: the file keeps the size the write gave it', async () => {
    const { fh } = await cache.lookup(ROOT, root, 'f');
    assert.equal((await cache.getattr(ROOT, fh)).size, 3);
    await crossing(
      () => renewalOf(root, 'f'),
      async () => {
        await cache.write(ROOT, fh, 3, Buffer.from('defghi'), StableHow.FILE_SYNC);
        assert.equal((await cache.getattr(ROOT, fh)).size, 9);
      },
    );
    await new Promise((r) => setImmediate(r));
    assert.equal((await cache.getattr(ROOT, fh)).size, 9, 'the renewal (size 3) was not kept');
  });

  test('a renewal that crossed our MKDIR in the directory: the directory keeps its new link count', async () => {
    const d = (await cache.lookup(ROOT, root, 'd')).fh;
    await cache.lookup(ROOT, d, 'g');
    const nlink = (await cache.getattr(ROOT, d)).nlink;
    await crossing(
      () => renewalOf(d, 'g'),
      async () => {
        await cache.mkdir(ROOT, d, 'sub', { mode: 0o755 });
      },
    );
    await new Promise((r) => setImmediate(r));
    assert.equal((await cache.getattr(ROOT, d)).nlink, nlink + 1, 'the renewal (one link fewer) was not kept');
    assert.equal(heldAnswersOf(cache)!.nameTrust(d, 'g'), 0, 'nor its name: the directory changed since it was sent');
  });

  test('a miss that crossed our WRITE: its attributes are neither kept nor answered', async () => {
    // The first LOOKUP of m is a miss; a WRITE to m (by its handle) lands while its answer is held.
    const fh = (await local.lookup(ROOT, root, 'm')).fh;
    let got: Awaited<ReturnType<Backend['lookup']>> | undefined;
    await crossing(
      async () => (got = await cache.lookup(ROOT, root, 'm')),
      async () => {
        await cache.write(ROOT, fh, 3, Buffer.from('xyz'), StableHow.FILE_SYNC);
      },
    );
    assert.equal(got!.attr, undefined, 'not answered (the caller asks)');
    assert.equal((await cache.getattr(ROOT, fh)).size, 6);
  });
});

describe('renewing ahead: where the second half of a trust begins', () => {
  test('a little before the halfway mark (a twentieth of the budget, at most 100 ms): a kernel tick early still renews', () => {
    // --attr-timeout 2: the kernel keeps an answer at most 1 s and asks again; an ask 4 ms early renews.
    assert.equal(inSecondHalf(1004, 2000), true);
    assert.equal(inSecondHalf(1100, 2000), true);
    assert.equal(inSecondHalf(1101, 2000), false);
    assert.equal(inSecondHalf(2000, 2000), false);
    // Short budgets: a twentieth of it.
    assert.equal(inSecondHalf(550, 1000), true);
    assert.equal(inSecondHalf(551, 1000), false);
    // Long budgets: 100 ms at most.
    assert.equal(inSecondHalf(30_100, 60_000), true);
    assert.equal(inSecondHalf(30_101, 60_000), false);
    assert.equal(inSecondHalf(0, 1000), true);
  });
});
