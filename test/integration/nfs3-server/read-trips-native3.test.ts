import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import * as N from '../../../src/native/native.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';
import { ROOT, startLocalServer, user, type LocalServer } from '../../helpers/local-server.js';

const ALICE = user(2001, 2001);

/**
 * Issue 17 step 3: the reads go by descriptor and name, in few trips to the
 * native layer's workers: GETATTR and LOOKUP one each, READDIR a fixed few
 * whatever the directory's size (getdents64's inode numbers: no stat per
 * name), READDIRPLUS one more per 64 names (statNames), WRITE one (the
 * write as the caller, its sync and statx). Attribute cache off: every call
 * reaches the disk. And the answers are the disk's.
 */
describe('local export: reads in few trips, answers from the disk', { skip: requirePrereq(isRoot()), timeout: 120_000 }, () => {
  let s: LocalServer;
  const ENTRIES = 150;

  async function trips<T>(fn: () => Promise<T>): Promise<{ n: number; r: T }> {
    const j0 = N.info().jobs;
    const r = await fn();
    return { n: N.info().jobs - j0, r };
  }

  before(async () => {
    s = await startLocalServer({ attrCacheMs: 0 });
    await fs.mkdir(path.join(s.exportDir, 'big'));
    for (let i = 0; i < ENTRIES; i++) await fs.writeFile(path.join(s.exportDir, 'big', `e${i}`), 'x'.repeat(i));
    await fs.symlink('some/where', path.join(s.exportDir, 'big', 'link'));
    await fs.writeFile(path.join(s.exportDir, 'suid'), 'x');
    await fs.chown(path.join(s.exportDir, 'suid'), 2001, 2001);
    await fs.chmod(path.join(s.exportDir, 'suid'), 0o4755);
  });
  after(async () => {
    await s?.stop();
    if (s) await fs.rm(s.dir, { recursive: true, force: true });
  });

  test('GETATTR, LOOKUP, READLINK, READDIR, READDIRPLUS: bounded trips, whatever the directory size', async () => {
    const big = (await s.client.lookup(ROOT, s.root, 'big')).fh;
    const l = await trips(() => s.client.lookup(ROOT, big, 'e7'));
    assert.equal(l.n, 1, 'LOOKUP: one job (directory opened and checked, the name statted through it)');
    const st = await fs.lstat(path.join(s.exportDir, 'big', 'e7'), { bigint: true });
    assert.deepEqual([l.r.attr?.fileid, l.r.attr?.size], [st.ino, 7]);
    const g = await trips(() => s.client.getattr(ROOT, l.r.fh));
    assert.deepEqual([g.n, g.r.fileid], [1, st.ino]);
    const link = (await s.client.lookup(ROOT, big, 'link')).fh;
    const rl = await trips(() => s.client.readlink(ROOT, link));
    assert.equal(rl.r.path, 'some/where');
    assert.ok(rl.n <= 2, `READLINK: ${rl.n} trips`);

    const rd = await trips(async () => {
      const names: string[] = [];
      let cookie = 0n;
      for (;;) {
        const p = await s.client.readdir(ROOT, big, cookie, Buffer.alloc(8), 32768);
        for (const e of p.entries) {
          names.push(e.name);
          if (e.name === 'e7') assert.equal(e.fileid, st.ino);
          cookie = e.cookie;
        }
        if (p.eof) return names;
      }
    });
    assert.equal(rd.r.length, ENTRIES + 3);
    assert.ok(rd.n <= 5, `READDIR of ${ENTRIES} names: ${rd.n} trips`);

    const rp = await trips(() => s.client.readdirplus(ROOT, big, 0n, Buffer.alloc(8), 65536, 262144));
    assert.equal(rp.r.entries.length, ENTRIES + 3);
    assert.equal(rp.r.entries.find((e) => e.name === 'e9')?.attr?.size, 9);
    assert.ok(rp.n <= 5 + Math.ceil((ENTRIES + 1) / 64), `READDIRPLUS of ${ENTRIES} names: ${rp.n} trips`);
  });

  test('WRITE in one trip, as the caller: the kernel clears the set-ID bit for alice, not for root', async () => {
    const f = (await s.client.lookup(ROOT, s.root, 'suid')).fh;
    await s.client.write(ROOT, f, 0, Buffer.from('root'), StableHow.UNSTABLE);
    assert.equal((await fs.lstat(path.join(s.exportDir, 'suid'))).mode & 0o7777, 0o4755);
    await s.client.write(ALICE, f, 0, Buffer.from('warm'), StableHow.UNSTABLE); // a descriptor now cached
    await fs.chmod(path.join(s.exportDir, 'suid'), 0o4755);
    const w = await trips(() => s.client.write(ALICE, f, 4, Buffer.from('alice'), StableHow.FILE_SYNC));
    assert.equal(w.n, 1, 'WRITE: one job');
    assert.equal((await fs.lstat(path.join(s.exportDir, 'suid'))).mode & 0o7777, 0o755);
    assert.equal(w.r.wcc.after?.mode, 0o755);
    assert.equal(await fs.readFile(path.join(s.exportDir, 'suid'), 'utf8'), 'warmalice');
  });
});
