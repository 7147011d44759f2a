import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import * as N from '../../../src/native/native.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';
import { ROOT, startLocalServer, user, type LocalServer } from '../../helpers/local-server.js';

const ALICE = user(2001, 2001);
const BOB = user(2002, 2002);

/** libuv file-system requests started in this process (fs callbacks and promises): trips the native counter does not see. */
let uvFs = 0;
createHook({
  init(_id, type) {
    if (type === 'FSREQCALLBACK' || type === 'FSREQPROMISE') uvFs++;
  },
}).enable();

/** Descriptors this process has open. */
const openFds = async (): Promise<number> => (await fs.readdir('/proc/self/fd')).length;

/**
 * Issues 17 and 19: a WRITE on a root server is ONE trip to the native pool
 * (statx, the permission check as the caller, pwrite, statx), with its wcc
 * data from that job; the descriptors the export retires are closed in
 * batches and really closed.
 */
describe('local export: WRITE in one job; retired descriptors closed in batches', { skip: requirePrereq(isRoot()), timeout: 120_000 }, () => {
  let s: LocalServer;
  before(async () => {
    s = await startLocalServer({ attrCacheMs: 1000, maxOpenFiles: 8 });
    await fs.chmod(s.exportDir, 0o777);
  });
  after(async () => {
    await s?.stop();
    if (s) await fs.rm(s.dir, { recursive: true, force: true });
  });

  test('WRITE: one job; pre-op attributes from the disk as it was; a refusal writes nothing and carries them', async () => {
    const fh = (await s.client.create(ALICE, s.root, 'w', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
    await s.client.write(ALICE, fh, 0, Buffer.from('first'), StableHow.UNSTABLE); // the descriptor is cached now
    const p = path.join(s.exportDir, 'w');
    // The name journal's group write for the CREATE (a libuv write, 50 ms later) must not fall into a count.
    const ino = (await fs.stat(p, { bigint: true })).ino.toString();
    const t0 = Date.now();
    while (!(await fs.readFile(path.join(s.stateDir, 'names.journal'), 'utf8').catch(() => '')).includes(`"${ino}"`)) {
      assert.ok(Date.now() - t0 < 20_000, 'the name journal never recorded the CREATE');
      await new Promise((r) => setTimeout(r, 20));
    }
    for (let i = 0; i < 3; i++) {
      const [j0, u0] = [N.info().jobs, uvFs];
      const r = await s.client.write(ALICE, fh, 5 + i, Buffer.from('x'), StableHow.UNSTABLE);
      assert.deepEqual([N.info().jobs - j0, uvFs - u0], [1, 0], `WRITE ${i}: one job, no libuv file-system request`);
      assert.deepEqual([r.count, Number(r.wcc.before?.size), r.wcc.after?.size], [1, 5 + i, 6 + i]);
    }
    assert.equal(await fs.readFile(p, 'utf8'), 'firstxxx');
    const j0 = N.info().jobs;
    await assert.rejects(s.client.write(BOB, fh, 0, Buffer.from('BOB'), StableHow.FILE_SYNC), (e: Error & { code?: string; wcc?: { before?: { size: bigint | number } } }) => {
      assert.equal(e.code, 'ACCES');
      assert.equal(Number(e.wcc?.before?.size), 8, 'pre-op attributes on the refusal');
      return true;
    });
    assert.ok(N.info().jobs - j0 <= 2, 'a refusal: the job, and at most a statx for the post-op attributes');
    assert.equal(await fs.readFile(p, 'utf8'), 'firstxxx', 'nothing written');
    // Made writable for others on the disk: the very next WRITE of the other user is let through.
    await fs.chmod(p, 0o646);
    assert.equal((await s.client.write(BOB, fh, 0, Buffer.from('B'), StableHow.UNSTABLE)).count, 1);
    assert.equal(await fs.readFile(p, 'utf8'), 'Birstxxx');
  });

  test('CREATEs past the descriptor cache: the retired descriptors are all closed, soon', async () => {
    const base = await openFds();
    const c0 = N.info().closeJobs;
    for (let i = 0; i < 150; i++) await s.client.create(ROOT, s.root, `c${i}`, { mode: 'guarded', attrs: { mode: 0o644 } });
    const t0 = Date.now();
    // At most the cache's 8 stay open (and a few of the server's own); 142 were retired.
    while ((await openFds()) > base + 12) {
      assert.ok(Date.now() - t0 < 20_000, `descriptors left open: ${(await openFds()) - base}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const batches = N.info().closeJobs - c0;
    // How many share a job depends on the pace of the calls (20 ms windows): on a loaded machine, few.
    assert.ok(batches >= 1 && batches <= 142, `142 descriptors closed in ${batches} jobs`);
    for (let i = 0; i < 150; i++) await s.client.remove(ROOT, s.root, `c${i}`);
  });
});
