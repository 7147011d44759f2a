import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Backend } from '../../../src/backend/backend.js';
import { startLocalServer, tempDir, type LocalServer } from '../../helpers/local-server.js';
import { fuseSkip, run, spawnMount, type MountProc } from './mount-helper.js';

const exec = promisify(execFile);

/** Calls reaching the export, by backend method (the NFS server's procedures, one to one). */
function counting(b: Backend, calls: Record<string, number>): Backend {
  return new Proxy(b, {
    get(t, k, r) {
      const v = Reflect.get(t, k, r);
      if (typeof v !== 'function' || typeof k !== 'string') return v;
      return (...a: unknown[]) => {
        calls[k] = (calls[k] ?? 0) + 1;
        return (v as (...x: unknown[]) => unknown).apply(t, a);
      };
    },
  });
}

const sum = (c: Record<string, number>) => Object.values(c).reduce((x, y) => x + y, 0);
const delta = (a: Record<string, number>, b: Record<string, number>) => Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - (a[k] ?? 0)]).filter(([, v]) => (v as number) > 0));

/**
 * Issue 18's small-files regression: what `tar -x` of many small files, and
 * reading them back, costs in calls to the server. The kernel asks GETATTR
 * after its own changes (the set-user-ID check before a chown, a directory
 * whose entries changed, a read's atime); attributes a reply of the
 * backend gave within the budget, unchanged by us since, answer it. A
 * file's own SETATTRs wait for its close, merged into one. And what must not change:
 * our own changes show at once, a change elsewhere within --attr-timeout.
 */
describe('gvfs mount: requests per small file (issue 18)', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let s: LocalServer;
  let m: MountProc;
  let mnt: string;
  const calls: Record<string, number> = {};
  const ATTR_S = 2;
  const at = (...p: string[]) => path.join(mnt, ...p);
  const up = (...p: string[]) => path.join(s.exportDir, ...p);

  before(async () => {
    s = await startLocalServer({ wrap: (b) => counting(b, calls) });
    await fs.chmod(s.dir, 0o755);
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'), ['--attr-timeout', String(ATTR_S)]);
    mnt = m.mnt;
  });
  after(async () => {
    await m?.stop();
    await s?.stop();
  });

  test('tar -x of 60 small files: at most 4 calls per file besides WRITEs, one SETATTR, GETATTR almost never; read back: one GETATTR per file at most', async () => {
    const src = await tempDir('gvfs-small18-');
    try {
      const N = 60;
      for (let i = 0; i < N; i++) {
        const d = path.join(src, 'tree', `d${i % 3}`);
        await fs.mkdir(d, { recursive: true });
        await fs.writeFile(path.join(d, `f${i}`), randomBytes(100 + ((i * 997) % 9000)));
        await fs.chmod(path.join(d, `f${i}`), i % 2 ? 0o644 : 0o640);
      }
      await exec('tar', ['-C', src, '-cf', path.join(src, 't.tar'), 'tree']);
      const c0 = { ...calls };
      await exec('tar', ['-C', mnt, '-xf', path.join(src, 't.tar')]);
      const x = delta(c0, calls);
      // Per file besides its WRITEs, before (6d9216b): LOOKUP, CREATE, SETATTR × 3 (mtime, chown, chmod), GETATTR × 2,
      // COMMIT = 8. Now: CREATE, one SETATTR (the three owed until close, merged), COMMIT: 3 (+ the directories' share).
      const notWrites = sum(x) - (x.write ?? 0);
      assert.ok(notWrites <= N * 4, `extract: ${notWrites} calls besides WRITE for ${N} files: ${JSON.stringify(x)}`);
      assert.ok((x.getattr ?? 0) <= N * 0.2, `extract: ${x.getattr} GETATTRs: ${JSON.stringify(x)}`);
      // Every file goes into a directory tar just made: its name is known absent, no LOOKUP before the CREATE.
      assert.ok((x.lookup ?? 0) <= N * 0.2, `extract: ${x.lookup} LOOKUPs: ${JSON.stringify(x)}`);
      // tar: mtime, chown (to the owner it has: it marks the ctime), chmod: owed until the close, one SETATTR
      // (OpenFile.owe). The four directories' three each are sent at once.
      assert.ok((x.setattr ?? 0) <= N + 3 * 4, `extract: ${x.setattr} SETATTRs: ${JSON.stringify(x)}`);
      // Still exact: contents, modes, owners, mtimes (tar's utimensat, mtime only).
      for (let i = 0; i < N; i++) {
        const rel = path.join('tree', `d${i % 3}`, `f${i}`);
        const [a, b] = [await fs.stat(path.join(src, rel)), await fs.stat(up(rel))];
        assert.equal(b.mode & 0o7777, a.mode & 0o7777, `${rel} mode`);
        assert.equal(b.mtimeMs, Math.floor(a.mtimeMs / 1000) * 1000, `${rel} mtime (whole seconds in a tar)`);
        assert.equal(b.uid, a.uid, `${rel} owner`);
        assert.ok((await fs.readFile(up(rel))).equals(await fs.readFile(path.join(src, rel))), `${rel} contents`);
      }
      // Read back: open (close-to-open asks the server), read, tar's fstat after the read (answered here).
      await run('sync');
      await fs.writeFile('/proc/sys/vm/drop_caches', '3').catch(() => undefined);
      const c1 = { ...calls };
      await exec('sh', ['-c', `tar -C '${mnt}' -cf - tree | cat > /dev/null`]);
      const y = delta(c1, calls);
      assert.ok((y.getattr ?? 0) <= N * 1.2, `read back: ${y.getattr} GETATTRs for ${N} files: ${JSON.stringify(y)}`);
    } finally {
      await fs.rm(src, { recursive: true, force: true });
    }
  });

  test('our own changes show at once: unlink of a second name, chmod, chown, truncate, mtime', async () => {
    await fs.writeFile(at('own'), 'data');
    const st = (p: string) => run('stat', ['-c', '%h %a %u %s %Y', p]).then((r) => r.stdout.trim());
    // stat(1) as child processes: nothing between the change and the stat; the kernel asks GETATTR after each.
    assert.equal(await st(at('own')), `1 644 0 4 ${Math.floor((await fs.stat(up('own'))).mtimeMs / 1000)}`);
    await run('ln', [at('own'), at('own2')]);
    assert.equal((await st(at('own'))).split(' ')[0], '2');
    await run('rm', [at('own2')]);
    assert.equal((await st(at('own'))).split(' ')[0], '1', 'nlink after unlinking the other name');
    // A chown to the owner it has is sent too (it marks the ctime): the attributes it answers are never what we knew before the unlink.
    await run('ln', [at('own'), at('own2')]);
    // An open fetches fresh attributes (close-to-open): nlink 2, what a GETATTR may be answered from until a change.
    await run('cat', [at('own')]);
    assert.equal((await st(at('own'))).split(' ')[0], '2');
    await run('rm', [at('own2')]);
    const r = await run('sh', ['-c', `chown 0 ${at('own')} && stat -c %h ${at('own')}`]);
    assert.equal(r.stdout.trim(), '1', 'nlink after unlinking the other name, then a no-op chown');
    await run('chmod', ['600', at('own')]);
    await run('chown', ['65534', at('own')]);
    await run('truncate', ['-s', '2', at('own')]);
    await run('touch', ['-m', '-d', '@7', at('own')]);
    assert.equal(await st(at('own')), '1 600 65534 2 7');
    // A chmod and a chown to what the file has mark its ctime, as on a local disk (POSIX: every successful chmod/chown).
    const ctime = async () => (await fs.stat(up('own'), { bigint: true })).ctimeNs;
    for (const cmd of [['chmod', '600'], ['chown', '65534']]) {
      const before = await ctime();
      await delay(30); // the kernel's coarse clock must tick between the two changes
      await run(cmd[0], [cmd[1], at('own')]);
      assert.ok((await ctime()) > before, `${cmd.join(' ')} to what the file has: ctime unchanged on the server`);
    }
    // A chown/chmod to what the file has: refused to a user who may not (the kernel checks).
    await assert.rejects(exec('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', 'chmod', '600', at('own')]), /Operation not permitted/);
    await assert.rejects(exec('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', 'chown', '65534', at('own')]), /Operation not permitted/);
    // And one that changes something is sent.
    await run('chown', ['0', at('own')]);
    assert.equal((await fs.stat(up('own'))).uid, 0);
  });

  test(`attributes answered from what the server said: a change on the server still shows within --attr-timeout (${ATTR_S} s) of when we asked`, async () => {
    await fs.writeFile(up('served'), 'one');
    // The open fetches fresh attributes (close-to-open): the budget runs from then.
    const fh = await fs.open(at('served'), 'r');
    const t0 = performance.now();
    try {
      await fh.read(Buffer.alloc(16), 0, 16, 0);
      await delay(ATTR_S * 1000 * 0.6);
      // Behind the mount's back, late in the budget.
      await fs.writeFile(up('served'), 'a longer one');
      let seen = -1;
      while (performance.now() - t0 < 15_000) {
        // Each read drops the kernel's atime, so each fstat asks us: answered from what the open fetched, until the budget ends.
        await fh.read(Buffer.alloc(16), 0, 16, 0);
        if ((await fh.stat()).size !== 3) {
          seen = performance.now() - t0;
          break;
        }
        await delay(20);
      }
      assert.ok(seen >= 0, 'the change never showed');
      // The kernel may trust them only for what is left of the budget: never a fresh budget from the served answer.
      assert.ok(seen <= ATTR_S * 1000 + 700, `shown ${seen.toFixed(0)} ms after the open fetched the attributes (attr-timeout ${ATTR_S} s)`);
    } finally {
      await fh.close();
    }
  });

  test(`absent names: probes ask the server once per --attr-timeout (${ATTR_S} s); a name made here shows at once, one made on the server within the budget`, async () => {
    const lookups = () => calls.lookup ?? 0;
    const l0 = lookups();
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) await assert.rejects(fs.stat(at('absent.h')), { code: 'ENOENT' });
    const elapsed = performance.now() - t0;
    // One LOOKUP, and one more for each budget that ran out meanwhile (a loaded machine).
    assert.ok(lookups() - l0 <= 1 + Math.floor(elapsed / (ATTR_S * 1000)), `${lookups() - l0} LOOKUPs for 50 stats of an absent name in ${elapsed.toFixed(0)} ms`);
    // Made through the mount: the kernel replaces its negative entry at once.
    await fs.writeFile(at('absent.h'), 'x');
    assert.equal((await fs.stat(at('absent.h'))).size, 1);
    // Made on the server behind the mount's back: shows within the budget counted from when we asked.
    const t1 = performance.now();
    await assert.rejects(fs.stat(at('later.h')), { code: 'ENOENT' });
    await fs.writeFile(up('later.h'), 'y');
    let seen = -1;
    while (performance.now() - t1 < 15_000) {
      if (await fs.stat(at('later.h')).then(() => true, () => false)) {
        seen = performance.now() - t1;
        break;
      }
      await delay(20);
    }
    assert.ok(seen >= 0, 'a name made on the server never showed');
    assert.ok(seen <= ATTR_S * 1000 + 700, `shown ${seen.toFixed(0)} ms after the probe (attr-timeout ${ATTR_S} s)`);
  });

  test('a directory made here: absent names in it ask nothing, yet a name made in it on the server shows within --attr-timeout', async () => {
    const lookups = () => calls.lookup ?? 0;
    await fs.mkdir(at('made'));
    const l0 = lookups();
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) await assert.rejects(fs.stat(at('made', `absent-${i}`)), { code: 'ENOENT' });
    // Made through the mount: there at once, and the listing still holds for the others.
    await fs.writeFile(at('made', 'here'), 'h');
    assert.equal(await fs.readFile(at('made', 'here'), 'utf8'), 'h');
    await assert.rejects(fs.stat(at('made', 'absent-x')), { code: 'ENOENT' });
    const elapsed = performance.now() - t0;
    if (elapsed < ATTR_S * 1000) assert.equal(lookups() - l0, 0, `LOOKUPs in a directory made here, ${elapsed.toFixed(0)} ms after`);
    // Behind the mount's back: shows once the listing's budget (from the MKDIR) is over.
    const t1 = performance.now();
    await fs.writeFile(up('made', 'elsewhere'), 'e');
    let seen = -1;
    while (performance.now() - t1 < 15_000) {
      if (await fs.stat(at('made', 'elsewhere')).then(() => true, () => false)) {
        seen = performance.now() - t1;
        break;
      }
      await delay(20);
    }
    assert.ok(seen >= 0, 'a name made on the server never showed');
    assert.ok(seen <= ATTR_S * 1000 + 700, `shown ${seen.toFixed(0)} ms after it was made (attr-timeout ${ATTR_S} s)`);
    // O_EXCL of a name made elsewhere that we had taken for absent: EEXIST, never a second file.
    await fs.writeFile(up('made', 'raced'), 'server');
    await assert.rejects(fs.writeFile(at('made', 'raced'), 'mount', { flag: 'wx' }), { code: 'EEXIST' });
    assert.equal(await fs.readFile(up('made', 'raced'), 'utf8'), 'server');
  });

  test('a loop that creates, stats and removes names in a directory past its listing\'s budget: one LOOKUP renews the listing, not one per name', async () => {
    await fs.mkdir(at('loop'));
    // Past the budget the MKDIR's listing had: the next LOOKUP's reply shows the directory unchanged.
    await delay(ATTR_S * 1000 + 200);
    const before = { ...calls };
    for (let i = 0; i < 15; i++) {
      const f = at('loop', `f${i}`);
      await (await fs.open(f, 'wx')).close();
      await fs.stat(f);
      await fs.unlink(f);
    }
    const d = delta(before, calls);
    assert.equal(d.create, 15);
    assert.equal(d.remove, 15);
    // (Each create and remove renews the listing too; a gap longer than the budget between them could cost one more.)
    assert.ok((d.lookup ?? 0) <= 2, `LOOKUPs: ${d.lookup} for 15 names (one per name without the renewal)`);
    // And a name made on the server still shows: the listing goes with the first reply that shows the change.
    await fs.writeFile(up('loop', 'elsewhere'), 'e');
    const t1 = performance.now();
    while (!(await fs.stat(at('loop', 'elsewhere')).then(() => true, () => false))) {
      assert.ok(performance.now() - t1 < ATTR_S * 1000 + 5000, 'a name made on the server never showed');
      await delay(20);
    }
  });

  test('served answers are counted (the mount\'s stats at exit)', async () => {
    const code = await m.stop();
    assert.equal(code, 0);
    const stats = m.stats();
    assert.ok(stats, 'stats line');
    assert.ok(stats.attrHits > 0, `attrHits ${stats.attrHits}`);
    assert.ok(stats.negativeEntries > 0, `negativeEntries ${stats.negativeEntries}`);
    assert.ok(stats.knownAbsent > 0, `knownAbsent ${stats.knownAbsent}`);
  });
});
