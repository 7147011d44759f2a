import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { StableHow } from '../../../src/nfs3/constants.js';
import { CHANGES_SINCE, ChangesStatus, changesArgs, changesRes } from '../../../src/ext/changes-codec.js';
import { hasFile, isRoot, requirePrereq } from '../../helpers/prereq.js';
import { ROOT, startCacheChain, type CacheChain, type Session } from './helpers.js';

const run = promisify(execFile);

/**
 * The poll consistency model (issue 20), two "hosts": proxy clients A and
 * B, each with its own session and cache directory, one proxy server.
 * Figures are the proxy server's own call counters.
 */
const P = 1000;
/** What a loaded machine may add to one poll period (the poll's round trip, a late timer). */
const SLACK = 1500;

describe('consistency: poll (change log at the proxy server, one call per period)', { timeout: 240_000 }, () => {
  let c: CacheChain;
  let a: Session;
  let b: Session;
  const calls = (proc: string) => c.proxyServer.server.stats.callsByProc.get(proc) ?? 0;

  async function dirOf(s: Session, name: string): Promise<{ dir: Buffer; base: string }> {
    const parts = name.split('/');
    let dir = s.root;
    for (const p of parts.slice(0, -1)) dir = (await s.client.lookup(ROOT, dir, p)).fh;
    return { dir, base: parts[parts.length - 1] };
  }
  async function put(s: Session, name: string, text: string): Promise<void> {
    const { dir, base } = await dirOf(s, name);
    const fh = (await s.client.create(ROOT, dir, base, { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } })).fh!;
    await s.client.write(ROOT, fh, 0, Buffer.from(text), StableHow.FILE_SYNC);
  }
  async function get(s: Session, name: string): Promise<string> {
    const { dir, base } = await dirOf(s, name);
    const fh = (await s.client.lookup(ROOT, dir, base)).fh;
    const a = await s.client.getattr(ROOT, fh);
    return (await s.client.read(ROOT, fh, 0, a.size + 16)).data.toString();
  }
  async function inSync(s: Session): Promise<void> {
    for (const t0 = Date.now(); !s.cache.stats().pollInSync; ) {
      if (Date.now() - t0 > 30_000) throw new Error('the poller never got in sync');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  before(async () => {
    c = await startCacheChain({ changeLogEntries: 5 });
    // attrTimeoutMs 100: were the ttl model in force, B would ask GETATTR ten times a second (the poll model ignores it).
    const cache = { consistency: 'poll' as const, pollMs: P, attrTimeoutMs: 100, writeBack: false };
    a = await c.startSession({ cacheDir: path.join(c.base, 'cache-a'), cache });
    b = await c.startSession({ cacheDir: path.join(c.base, 'cache-b'), cache });
    await put(a, 'f', 'version 1');
    await put(a, 'g', 'unchanged');
    await a.client.mkdir(ROOT, a.root, 'd', { mode: 0o755 });
    await put(a, 'd/h', 'h version 1');
    await Promise.all([inSync(a), inSync(b)]);
    // A poll after A's changes: B starts caught up.
    await b.cache.pollNow();
  });
  after(async () => {
    await c?.stop();
  });

  it('B trusts its cache between polls: one CHANGES_SINCE per period, no GETATTR, LOOKUP, ACCESS or READ', async () => {
    assert.equal(await get(b, 'f'), 'version 1');
    assert.equal(await get(b, 'g'), 'unchanged');
    await b.cache.settle();
    const g0 = calls('nfs3.GETATTR');
    const l0 = calls('nfs3.LOOKUP');
    const r0 = calls('nfs3.READ');
    const a0 = calls('nfs3.ACCESS');
    const p0 = calls('gvfs.CHANGES_SINCE');
    const bp0 = b.cache.stats().polls;
    const t0 = Date.now();
    let reads = 0;
    while (Date.now() - t0 < 3.5 * P) {
      assert.equal(await get(b, 'f'), 'version 1');
      assert.equal(await get(b, 'g'), 'unchanged');
      reads++;
    }
    const secs = (Date.now() - t0) / P;
    const bPolls = b.cache.stats().polls - bp0;
    assert.ok(reads > 20, `only ${reads} rounds of reads`);
    assert.equal(calls('nfs3.GETATTR') - g0, 0, 'GETATTR reached the proxy server');
    assert.equal(calls('nfs3.LOOKUP') - l0, 0, 'LOOKUP reached the proxy server');
    assert.equal(calls('nfs3.READ') - r0, 0, 'READ reached the proxy server');
    // (Cached bytes go only to a caller the server has let read the file: that answer too is trusted until a poll lists the file.)
    assert.equal(calls('nfs3.ACCESS') - a0, 0, 'ACCESS reached the proxy server');
    assert.ok(bPolls >= Math.floor(secs) - 1 && bPolls <= Math.ceil(secs) + 1, `B polled ${bPolls} times in ${secs.toFixed(1)} periods`);
    // The server saw A's and B's polls and nothing else of theirs: at most one per session per period.
    assert.ok(calls('gvfs.CHANGES_SINCE') - p0 <= 2 * (Math.ceil(secs) + 1), `${calls('gvfs.CHANGES_SINCE') - p0} polls at the server`);
  });

  it('a change made on A shows on B within one poll period (plus the poll round trip), never later', async () => {
    assert.equal(await get(b, 'f'), 'version 1');
    for (let round = 2; round <= 4; round++) {
      const text = `version ${round} ${'x'.repeat(round)}`;
      // A WRITE alone (no CREATE, no SETATTR): write-through on A, on the server when this returns.
      await a.client.write(ROOT, await a.lookup('f'), 0, Buffer.from(text), StableHow.FILE_SYNC);
      const t0 = Date.now();
      let seen = '';
      while ((seen = await get(b, 'f')) !== text) {
        assert.ok(Date.now() - t0 <= P + SLACK, `B still reads ${JSON.stringify(seen)} ${Date.now() - t0} ms after A's change`);
        await new Promise((r) => setTimeout(r, 10));
      }
      const ms = Date.now() - t0;
      assert.ok(ms <= P + SLACK, `B saw A's change after ${ms} ms`);
    }
    // A name made on A shows too (B's name cache drops the directory's names when the poll lists it).
    await assert.rejects(b.lookup('new-name'));
    await put(a, 'new-name', 'hello');
    const t0 = Date.now();
    for (;;) {
      const ok = await b.lookup('new-name').then(() => true, () => false);
      if (ok) break;
      assert.ok(Date.now() - t0 <= P + SLACK, 'the new name never showed on B');
      await new Promise((r) => setTimeout(r, 10));
    }
  });

  it('B too far behind the bounded log is told to drop everything, and asks again for every file', async () => {
    // Stop B's timer-driven polls: from now B polls only when told, so A's changes all land between two of its polls.
    await b.cache.configure({ pollMs: 3_600_000 });
    await b.cache.pollNow();
    assert.equal(await get(b, 'g'), 'unchanged');
    const resets0 = b.cache.stats().pollResets;
    // More changes than the log keeps (5), none of them to g.
    for (let i = 0; i < 12; i++) await put(a, `churn-${i}`, `${i}`);
    await put(a, 'f', 'version 5 after churn');
    await b.cache.pollNow();
    assert.equal(b.cache.stats().pollResets, resets0 + 1, 'B was not told it is too far behind');
    assert.equal(await get(b, 'f'), 'version 5 after churn');
    // g did not change, but B cannot know: it asks the server again (LOOKUP brings attributes too).
    const asked = () => calls('nfs3.GETATTR') + calls('nfs3.LOOKUP');
    const n0 = asked();
    assert.equal(await get(b, 'g'), 'unchanged');
    assert.ok(asked() - n0 >= 1, 'B trusted what a drop-everything answer voided');
    await b.cache.configure({ pollMs: P });
  });

  it('an order to invalidate a path (session service) drops that file even under ttl with a long timeout', async () => {
    await b.cache.configure({ consistency: 'ttl', attrTimeoutMs: 3_600_000 });
    assert.equal(await get(b, 'g'), 'unchanged');
    await put(a, 'g', 'changed by A');
    assert.equal(await get(b, 'g'), 'unchanged', 'ttl with an hour-long timeout should still serve the old version');
    assert.equal(await b.cache.invalidateOrder('g'), 1);
    assert.equal(await get(b, 'g'), 'changed by A');
    await b.cache.configure({ consistency: 'poll', attrTimeoutMs: 100 });
    await inSync(b);
  });

  it('a poll that lists a file never drops its unflushed write-back data; the flush still delivers it', async () => {
    // A write-back session W with dirty bytes at the start of w; B changes the file's end meanwhile.
    const w = await c.startSession({ cacheDir: path.join(c.base, 'cache-w'), cache: { consistency: 'poll', pollMs: P, writeBack: true, maxDirtyAgeMs: 3_600_000 } });
    try {
      await put(b, 'w', 'BBBBBBBBBB');
      await inSync(w);
      const wf = await w.lookup('w');
      await w.client.write(ROOT, wf, 0, Buffer.from('ww'), StableHow.UNSTABLE);
      assert.ok(w.cache.stats().dirtyBytes > 0);
      await b.client.write(ROOT, await b.lookup('w'), 8, Buffer.from('bb'), StableHow.FILE_SYNC);
      const listed = w.cache.stats().pollListed;
      const t0 = Date.now();
      while (w.cache.stats().pollListed === listed) {
        assert.ok(Date.now() - t0 < P + SLACK, 'W never got the change listed');
        await new Promise((r) => setTimeout(r, 20));
      }
      // Dropped: the server's new version; kept: our own unflushed bytes over it.
      assert.equal(await get(w, 'w'), 'wwBBBBBBbb');
      assert.ok(w.cache.stats().dirtyBytes > 0, 'the poll dropped unflushed data');
      await w.cache.flush();
      assert.equal(await get(b, 'w').then(async (v) => (v === 'wwBBBBBBbb' ? v : (await b.cache.pollNow(), get(b, 'w')))), 'wwBBBBBBbb');
    } finally {
      await w.stop();
    }
  });

  it("CHANGES_SINCE refuses a handle issued to another session (no peeking at another session's export)", async () => {
    const ask = (s: Session, fh: Buffer) => s.pc.remote.ext(CHANGES_SINCE, (w) => changesArgs.enc(w, { fh, boot: Buffer.alloc(0), since: 0n }), changesRes.dec, ROOT);
    assert.equal((await ask(a, a.root)).status, ChangesStatus.RESET);
    const r = await ask(b, a.root);
    assert.equal(r.status, ChangesStatus.NFSERR);
    assert.equal(r.nfsstat, 10001, 'BADHANDLE');
    assert.deepEqual(r.handles, []);
  });

  it('libnfs nfs-cat through B sees A\'s change within one period', { skip: requirePrereq(isRoot(), hasFile('/usr/bin/nfs-cat', 'libnfs-utils')) }, async () => {
    const url = `nfs://127.0.0.1/d/h?version=3&nfsport=${b.port}&mountport=${b.port}`;
    const cat = async () => (await run('nfs-cat', [url], { encoding: 'utf8' })).stdout;
    const before = await cat();
    const g0 = calls('nfs3.GETATTR');
    assert.equal(await cat(), before);
    assert.equal(calls('nfs3.GETATTR') - g0, 0, 'nfs-cat of a cached file made B ask GETATTR');
    await put(a, 'd/h', 'version 6 for libnfs');
    const t0 = Date.now();
    while ((await cat()) !== 'version 6 for libnfs') assert.ok(Date.now() - t0 <= P + SLACK, 'nfs-cat never showed the change within a period');
    // nfs-cat mounted /d, a sub-directory of the export B already polls: still one poll per period.
    await b.cache.pollNow();
    assert.equal(b.cache.stats().pollExports, 1);
  });
});
