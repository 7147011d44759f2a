import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { errCode, fuseSkip, run, runAs, spawnMount, type MountProc } from './mount-helper.js';

const exec = promisify(execFile);

/** Run as `uid` (gid = uid) with exactly the supplementary groups given. */
function runAsWithGroups(uid: number, groups: number[], cmd: string, args: string[]) {
  const g = groups.length ? [`--groups=${groups.join(',')}`] : ['--clear-groups'];
  return exec('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, ...g, cmd, ...args]);
}

/**
 * The libfuse 3 low-level front end (`gvfs mount`) over
 * `gvfs serve` (in this process) as a plain NFS server: every caller as
 * itself, one inode per file, exact times, the kernel's caches bounded by
 * --attr-timeout. The "done when" list, one test each.
 */
describe('gvfs mount (libfuse 3 low-level): callers, inodes, times, caches', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let s: LocalServer;
  let m: MountProc;
  let mnt: string;
  const at = (...p: string[]) => path.join(mnt, ...p);
  const up = (...p: string[]) => path.join(s.exportDir, ...p);
  const ATTR_S = 2;

  before(async () => {
    s = await startLocalServer();
    await fs.chmod(s.dir, 0o755);
    // Every local user may create here (as on /tmp): who owns what they make is the question.
    await fs.chmod(s.exportDir, 0o1777);
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'), ['--attr-timeout', String(ATTR_S)]);
    mnt = m.mnt;
  });
  after(async () => {
    await m?.stop();
    await s?.stop();
  });

  test('a file made by uid 65534 is 65534\'s: it can chmod, truncate and link it; uid 1000 cannot write it', async () => {
    const f = at('nobody.txt');
    await runAs(65534, 'sh', ['-c', `echo hello > ${f}`]);
    const st = await fs.stat(f);
    assert.equal(st.uid, 65534, 'owner through the mount');
    assert.equal(st.gid, 65534);
    assert.equal((await fs.stat(up('nobody.txt'))).uid, 65534, 'owner on the server');
    await runAs(65534, 'chmod', ['600', f]);
    await runAs(65534, 'truncate', ['-s', '3', f]);
    await runAs(65534, 'ln', [f, at('nobody-link.txt')]);
    const after = await fs.stat(up('nobody.txt'));
    assert.equal(after.mode & 0o777, 0o600);
    assert.equal(after.size, 3);
    assert.equal(after.nlink, 2);
    // 0600: another user can neither write nor read it, through the mount as on the server.
    assert.match(await errCode(runAs(1000, 'sh', ['-c', `echo x >> ${f}`])), /Permission denied/);
    assert.match(await errCode(runAs(1000, 'cat', [f])), /Permission denied/);
    // And 0666 would let it: the refusal above is the mode, not a blanket one.
    await runAs(65534, 'chmod', ['666', f]);
    await runAs(1000, 'sh', ['-c', `echo x >> ${f}`]);
    assert.equal(await fs.readFile(up('nobody.txt'), 'utf8'), 'helx\n');
    assert.equal((await fs.stat(up('nobody.txt'))).uid, 65534, 'writing does not change the owner');
  });

  test('ln a b: stat a shows nlink 2 at once, and both names are one inode', async () => {
    await fs.writeFile(at('a'), 'data');
    assert.equal((await fs.stat(at('a'))).nlink, 1);
    // stat(1) as a child process: nothing between the link and the stat.
    const out = (await run('sh', ['-c', `ln ${at('a')} ${at('b')} && stat -c '%h %i' ${at('a')} ${at('b')}`])).stdout.trim().split('\n');
    assert.equal(out[0].split(' ')[0], '2', 'nlink of the old name');
    assert.equal(out[1].split(' ')[0], '2', 'nlink of the new name');
    assert.equal(out[0].split(' ')[1], out[1].split(' ')[1], 'one inode');
    // chmod through one name shows through the other at once (one kernel inode).
    await fs.chmod(at('b'), 0o640);
    assert.equal((await fs.stat(at('a'))).mode & 0o777, 0o640);
  });

  test('rename of one hard link onto another does nothing', async () => {
    await fs.writeFile(at('r1'), 'same');
    await fs.link(at('r1'), at('r2'));
    await fs.rename(at('r1'), at('r2'));
    assert.deepEqual((await fs.readdir(mnt)).filter((n) => n.startsWith('r')).sort(), ['r1', 'r2']);
    assert.equal((await fs.stat(at('r1'))).nlink, 2);
    assert.equal((await fs.stat(up('r1'))).nlink, 2);
  });

  test('touch -m -d @1 changes only the mtime', async () => {
    const f = at('times');
    await fs.writeFile(f, 'x');
    await run('touch', ['-a', '-d', '@5', f]);
    const before = await fs.stat(f, { bigint: true });
    assert.equal(before.atimeNs, 5_000_000_000n);
    await run('touch', ['-m', '-d', '@1', f]);
    const st = await fs.stat(f, { bigint: true });
    assert.equal(st.mtimeNs, 1_000_000_000n, 'mtime set');
    assert.equal(st.atimeNs, 5_000_000_000n, 'atime left alone (UTIME_OMIT)');
    const server = await fs.stat(up('times'), { bigint: true });
    assert.equal(server.mtimeNs, 1_000_000_000n);
    assert.equal(server.atimeNs, 5_000_000_000n);
    // And atime alone, the other way round.
    await run('touch', ['-a', '-d', '@7', f]);
    const st2 = await fs.stat(f, { bigint: true });
    assert.equal(st2.atimeNs, 7_000_000_000n);
    assert.equal(st2.mtimeNs, 1_000_000_000n);
  });

  test('nanosecond times round-trip both ways', async () => {
    const f = at('ns');
    await fs.writeFile(f, 'x');
    await run('touch', ['-m', '-d', '2020-02-03 04:05:06.123456789Z', f]);
    const want = 1580702706_123456789n;
    assert.equal((await fs.stat(up('ns'), { bigint: true })).mtimeNs, want, 'on the server');
    assert.equal((await fs.stat(f, { bigint: true })).mtimeNs, want, 'through the mount');
    // Set on the server, seen through the mount (a file the kernel has not cached yet). A name made on the
    // server shows within --attr-timeout (the mount may know the directory's names, or that this one was absent).
    await fs.writeFile(up('ns2'), 'y');
    await run('touch', ['-m', '-d', '2021-01-01 00:00:00.000000007Z', up('ns2')]);
    const t0 = performance.now();
    let st = await fs.stat(at('ns2'), { bigint: true }).catch(() => undefined);
    while (!st && performance.now() - t0 < ATTR_S * 1000 + 700) {
      await delay(50);
      st = await fs.stat(at('ns2'), { bigint: true }).catch(() => undefined);
    }
    assert.ok(st, `ns2, made on the server, not seen through the mount within ${ATTR_S} s`);
    assert.equal(st.mtimeNs, 1609459200_000000007n);
  });

  test(`a change on the server shows through the mount within --attr-timeout (${ATTR_S} s), never later`, async () => {
    await fs.writeFile(at('watched'), 'one');
    assert.equal((await fs.stat(at('watched'))).size, 3);
    // Cached by the kernel now; change it behind the mount's back.
    for (const change of [
      () => fs.writeFile(up('watched'), 'longer contents'),
      () => fs.chmod(up('watched'), 0o600),
    ]) {
      const before = await fs.stat(at('watched'));
      const t0 = performance.now();
      await change();
      let seen = -1;
      while (performance.now() - t0 < 10_000) {
        const st = await fs.stat(at('watched'));
        if (st.size !== before.size || st.mode !== before.mode) {
          seen = performance.now() - t0;
          break;
        }
        await delay(50);
      }
      assert.ok(seen >= 0, 'the change never showed');
      // The bound, with room for a loaded machine's scheduling — but well under twice the timeout.
      assert.ok(seen <= ATTR_S * 1000 + 700, `shown after ${seen.toFixed(0)} ms (attr-timeout ${ATTR_S} s)`);
    }
    // Data too: a fresh open after the change reads the new bytes (close-to-open).
    assert.equal(await fs.readFile(at('watched'), 'utf8'), 'longer contents');
  });

  test('a file cut down and regrown on the server: the kernel drops its stale pages (mmap read in the EOF page)', async () => {
    await fs.writeFile(at('pages'), Buffer.alloc(8192, 'x'));
    // One process keeps the file mapped throughout: its pages are the kernel's cache of the file.
    const script = `
import mmap, os, sys, time
f = open(sys.argv[1], 'rb')
m = mmap.mmap(f.fileno(), 8192, prot=mmap.PROT_READ)
print(chr(m[5000]), flush=True)
sys.stdin.readline()
os.stat(sys.argv[1])
print(repr(m[5000]), repr(m[50]), flush=True)
`;
    const child = execFile('python3', ['-c', script, at('pages')]);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    while (!out.includes('\n')) await delay(20);
    assert.equal(out.trim(), 'x');
    // Same size afterwards, other bytes: only the mtime says the pages are stale.
    await fs.truncate(up('pages'), 100);
    await fs.truncate(up('pages'), 8192);
    await delay(ATTR_S * 1000 + 300);
    child.stdin!.write('\n');
    child.stdin!.end();
    assert.equal(await exited, 0);
    assert.deepEqual(out.trim().split('\n')[1], '0 120', 'byte 5000 is the zero the server has now; byte 50 still x');
  });

  test('fallocate: EOPNOTSUPP (NFSv3 cannot preallocate honestly)', async () => {
    await fs.writeFile(at('falloc'), 'keep');
    assert.match(await errCode(run('fallocate', ['-l', '1M', at('falloc')])), /not supported/);
    assert.equal(await fs.readFile(at('falloc'), 'utf8'), 'keep');
  });
});

describe('gvfs mount --no-default-permissions: the server decides, with the caller\'s groups', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let s: LocalServer;
  let m: MountProc;
  before(async () => {
    s = await startLocalServer();
    await fs.chmod(s.dir, 0o755);
    await fs.chmod(s.exportDir, 0o755);
    await fs.writeFile(path.join(s.exportDir, 'group-file'), 'g');
    await fs.chown(path.join(s.exportDir, 'group-file'), 0, 4242);
    await fs.chmod(path.join(s.exportDir, 'group-file'), 0o660);
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'), ['--no-default-permissions']);
  });
  after(async () => {
    await m?.stop();
    await s?.stop();
  });

  test('a supplementary group (from /proc/PID/status) grants what the mode gives the group; without it, refused', async () => {
    const f = path.join(m.mnt, 'group-file');
    await runAsWithGroups(1000, [4242], 'sh', ['-c', `echo member >> ${f}`]);
    assert.equal(await fs.readFile(path.join(s.exportDir, 'group-file'), 'utf8'), 'gmember\n');
    assert.match(await errCode(runAsWithGroups(1001, [], 'sh', ['-c', `echo outsider >> ${f}`])), /Permission denied/);
    assert.match(await errCode(runAsWithGroups(1001, [4243], 'cat', [f])), /Permission denied/);
    assert.equal(await fs.readFile(path.join(s.exportDir, 'group-file'), 'utf8'), 'gmember\n');
  });
});
