import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Backend } from '../../../src/backend/backend.js';
import { FsError } from '../../../src/backend/errors.js';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { mountArgs, startFsxServer } from '../fsx/helpers.js';
import { fuseSkip, spawnMount, type MountProc } from './mount-helper.js';

/**
 * Owed SETATTRs (OpenFile.owe): tar sets the mtime, the owner it already
 * has and the mode of every file it writes, then closes it. Made by the
 * creator of a file this mount created, these are answered at once and
 * sent merged with the close. What must hold: the program sees its changes
 * at once; the server has them when close returns (one SETATTR); a write
 * after an owed mtime still moves the mtime; what the server could refuse
 * is sent at once; a refusal all the same reaches close and fsync.
 */
describe('gvfs mount: SETATTRs owed until close (issue 18, small files)', { skip: fuseSkip(), timeout: 300_000 }, () => {
  let s: LocalServer;
  let m: MountProc;
  const calls: Record<string, number> = {};
  /** Names whose SETATTRs the export refuses (EPERM), as a server with its own rules might. */
  const refuse = new Set<string>();
  const at = (...p: string[]) => path.join(m.mnt, ...p);
  const up = (...p: string[]) => path.join(s.exportDir, ...p);

  before(async () => {
    s = await startLocalServer({
      wrap: (b: Backend) =>
        new Proxy(b, {
          get(t, k, r) {
            const v = Reflect.get(t, k, r);
            if (typeof v !== 'function' || typeof k !== 'string') return v;
            return async (...a: unknown[]) => {
              calls[k] = (calls[k] ?? 0) + 1;
              if (k === 'setattr' && refuse.size) {
                const ino = (await b.getattr(a[0] as never, a[1] as Buffer)).fileid;
                for (const name of refuse) {
                  const st = await fs.stat(up(name), { bigint: true }).catch(() => undefined);
                  if (st?.ino === ino) throw new FsError('PERM', 'refused by the test');
                }
              }
              return (v as (...x: unknown[]) => unknown).apply(t, a);
            };
          },
        }),
    });
    await fs.chmod(s.dir, 0o755);
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'), ['--attr-timeout', '5']);
  });
  after(async () => {
    await m?.stop();
    await s?.stop();
  });

  test("tar's sequence: shown at once, nothing sent until close, then one SETATTR and the server has it all", async () => {
    const fh = await fs.open(at('tar1'), 'wx', 0o600);
    await fh.write(Buffer.from('contents'));
    const c0 = calls.setattr ?? 0;
    await fh.utimes(5, 7);
    await fh.chown(0, 0);
    await fh.chmod(0o644);
    const st = await fh.stat();
    assert.equal(st.mode & 0o7777, 0o644, 'mode shown at once');
    assert.equal(st.mtimeMs, 7000, 'mtime shown at once');
    assert.equal(st.atimeMs, 5000, 'atime shown at once');
    assert.equal(st.size, 8);
    // Owed: the server still has what CREATE made (the timer is OWED_MAX_MS; the stat above took far less).
    assert.equal((calls.setattr ?? 0) - c0, 0, 'no SETATTR crossed before close');
    await fh.close();
    assert.equal((calls.setattr ?? 0) - c0, 1, 'one merged SETATTR at close');
    const srv = await fs.stat(up('tar1'));
    assert.equal(srv.mode & 0o7777, 0o644);
    assert.equal(srv.mtimeMs, 7000);
    assert.equal(srv.atimeMs, 5000);
    assert.equal(await fs.readFile(up('tar1'), 'utf8'), 'contents');
  });

  test('a write after an owed mtime moves the mtime on, as on a local disk', async () => {
    const fh = await fs.open(at('later-write'), 'wx', 0o600);
    await fh.write(Buffer.from('one'));
    await fh.utimes(3, 3);
    await fh.chmod(0o640);
    await fh.write(Buffer.from('two'));
    await fh.close();
    const srv = await fs.stat(up('later-write'));
    assert.ok(srv.mtimeMs > 1_000_000_000_000, `server mtime ${srv.mtimeMs}: the write after the utimes must set it`);
    assert.equal(srv.mode & 0o7777, 0o640);
    assert.equal(await fs.readFile(up('later-write'), 'utf8'), 'onetwo');
  });

  test('a file kept open: what it owes reaches the server soon all the same (OWED_MAX_MS), without a close', async () => {
    const fh = await fs.open(at('kept-open'), 'wx', 0o600);
    try {
      await fh.chmod(0o604);
      const t0 = performance.now();
      while (((await fs.stat(up('kept-open'))).mode & 0o7777) !== 0o604) {
        assert.ok(performance.now() - t0 < 20_000, 'the owed chmod never reached the server');
        await delay(20);
      }
    } finally {
      await fh.close();
    }
  });

  test('fsync sends what is owed', async () => {
    const fh = await fs.open(at('synced'), 'wx', 0o600);
    try {
      await fh.chmod(0o620);
      await fh.utimes(11, 13);
      await fh.sync();
      const srv = await fs.stat(up('synced'));
      assert.equal(srv.mode & 0o7777, 0o620);
      assert.equal(srv.mtimeMs, 13000);
    } finally {
      await fh.close();
    }
  });

  test('sent at once: set-id bits, another owner, a size, a file not made here', async () => {
    const fh = await fs.open(at('at-once'), 'wx', 0o600);
    try {
      await fh.chmod(0o2750);
      assert.equal((await fs.stat(up('at-once'))).mode & 0o7777, 0o2750, 'a set-id mode is the server\'s to judge: sent at once');
      await fh.chmod(0o600);
      await fh.chown(65534, 65534);
      assert.equal((await fs.stat(up('at-once'))).uid, 65534, 'another owner: sent at once');
      await fh.truncate(5);
      assert.equal((await fs.stat(up('at-once'))).size, 5, 'a size: sent at once');
    } finally {
      await fh.close();
    }
    await fs.writeFile(up('not-made-here'), 'x', { mode: 0o600 });
    const g = await fs.open(at('not-made-here'), 'r+');
    try {
      await g.chmod(0o644);
      assert.equal((await fs.stat(up('not-made-here'))).mode & 0o7777, 0o644, 'a file this mount did not create: sent at once');
    } finally {
      await g.close();
    }
  });

  test('a rename over a file that owes and is open: what it owes lands first, the descriptor reads on, close reports nothing', async () => {
    const fh = await fs.open(at('replaced'), 'wx+', 0o600);
    await fh.write(Buffer.from('old'));
    await fh.chmod(0o644);
    const c0 = calls.setattr ?? 0;
    await fs.writeFile(at('replacement'), 'new');
    await fs.rename(at('replacement'), at('replaced'));
    assert.ok((calls.setattr ?? 0) - c0 >= 1, 'the owed SETATTR went before the RENAME');
    // The replaced file lives on for the descriptor that has it open, as on a local disk.
    const { bytesRead, buffer } = await fh.read(Buffer.alloc(8), 0, 8, 0);
    assert.equal(buffer.subarray(0, bytesRead).toString(), 'old');
    assert.equal((await fh.stat()).mode & 0o7777, 0o644);
    await fh.close();
    assert.equal(await fs.readFile(up('replaced'), 'utf8'), 'new');
  });

  test('refused by the server after all: close and fsync fail, the log says so, and the mount shows the server\'s attributes', async () => {
    const fh = await fs.open(at('refused'), 'wx', 0o600);
    await fh.write(Buffer.from('data'));
    refuse.add('refused');
    try {
      await fh.chmod(0o644);
      assert.equal((await fh.stat()).mode & 0o7777, 0o644, 'answered at once');
      await assert.rejects(fh.sync(), { code: 'EPERM' }, 'fsync reports the refused SETATTR');
      await assert.rejects(fh.close(), { code: 'EPERM' }, 'close reports it too (every descriptor)');
    } finally {
      refuse.delete('refused');
      await fh.close().catch(() => undefined);
    }
    assert.match(m.stderr(), /a SETATTR the program was told had succeeded failed/);
    assert.equal((await fs.stat(up('refused'))).mode & 0o7777, 0o600);
    // The kernel was told to drop what we answered: the next stat shows the server's mode.
    const t0 = performance.now();
    while (((await fs.stat(at('refused'))).mode & 0o7777) !== 0o600) {
      assert.ok(performance.now() - t0 < 10_000, 'the mount still shows the refused mode');
      await delay(20);
    }
    assert.equal(await fs.readFile(up('refused'), 'utf8'), 'data');
  });

  test('counted in the mount\'s stats at exit', async () => {
    assert.equal(await m.stop(), 0);
    const st = m.stats();
    assert.ok(st && st.setattrsOwed >= 8 && st.setattrsPaid >= 4, `stats ${JSON.stringify(st && { owed: st.setattrsOwed, paid: st.setattrsPaid })}`);
  });
});

/**
 * A write-back cache journals a SETATTR (fsync'd) before it answers, so a
 * kill -9 of the mount cannot lose it: the front end does not owe
 * SETATTRs there (they would wait in the process). A write-through cache
 * sends each to the server: owed as without a cache.
 */
describe('gvfs mount: SETATTRs not owed above a write-back cache', { skip: fuseSkip(), timeout: 300_000 }, () => {
  test('write-back: none owed (journalled at once); write-through: owed', async () => {
    const s = await startFsxServer();
    try {
      const key = await s.newKey();
      for (const [config, owes] of [['write-back', false], ['write-through', true]] as const) {
        const m = await s.mount(`mnt-${config}`, key, mountArgs(config, path.join(s.base, `cache-${config}`))[0]);
        const fh = await fs.open(path.join(m.mnt, `f-${config}`), 'wx', 0o600);
        await fh.write(Buffer.from('data'));
        await fh.utimes(5, 7);
        await fh.chmod(0o644);
        assert.equal((await fh.stat()).mode & 0o7777, 0o644);
        await fh.close();
        assert.equal(await m.stop(), 0);
        const st = m.stats();
        assert.ok(st, 'stats line');
        assert.equal(st.setattrsOwed > 0, owes, `${config}: setattrsOwed ${st.setattrsOwed}`);
        const srv = await fs.stat(path.join(s.exportDir, `f-${config}`));
        assert.equal(srv.mode & 0o7777, 0o644, `${config}: mode on the server`);
        assert.equal(srv.mtimeMs, 7000, `${config}: mtime on the server`);
      }
    } finally {
      await s.stop();
    }
  });
});
