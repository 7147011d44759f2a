import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { FsError, type FsErrorCode } from '../../../src/backend/errors.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { ERRNO_OF, toErrno } from '../../../src/frontends/fuse/errno.js';
import { LowLevelFrontend } from '../../../src/frontends/fuse/lowlevel-frontend.js';
import { ROOT, startLocalServer, user, type LocalServer } from '../../helpers/local-server.js';
import { errCode, forceUnmount, fuseSkip, run } from './mount-helper.js';

const MiB = 1 << 20;

describe('FUSE front end: pieces without a mount', { timeout: 600_000 }, () => {
  test('every backend error code has an errno; the ones without collapse to EIO', () => {
    const codes = Object.keys(ERRNO_OF) as FsErrorCode[];
    assert.equal(codes.length, 28);
    assert.equal(toErrno(new FsError('NOENT'), 'getattr', '/x'), -2);
    assert.equal(toErrno(new FsError('NOTEMPTY'), 'rmdir', '/x'), -39);
    assert.equal(toErrno(new FsError('ROFS'), 'write', '/x'), -30);
    assert.equal(toErrno(new FsError('NOSPC'), 'write', '/x'), -28);
    assert.equal(toErrno(new FsError('NAMETOOLONG'), 'create', '/x'), -36);
    assert.equal(toErrno(new FsError('STALE'), 'getattr', '/x'), -5);
    assert.equal(toErrno(new FsError('SERVERFAULT'), 'getattr', '/x'), -5);
    assert.equal(toErrno(new TypeError('a bug'), 'getattr', '/x'), -5);
  });
});

/**
 * The front end in this process over `gvfs serve` (also in this process):
 * the test reads its counters. Programs that use the mount are children.
 */
describe('FUSE front end in-process', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let s: LocalServer;
  let remote: RemoteNfs;
  let fe: LowLevelFrontend;
  let mnt: string;
  const up = (...p: string[]) => path.join(s.exportDir, ...p);

  before(async () => {
    // No server-side attribute cache: "another host" writes into the export directly.
    s = await startLocalServer({ attrCacheMs: 0 });
    remote = new RemoteNfs({ host: '127.0.0.1', port: s.port, timeoutMs: 20_000 });
    fe = new LowLevelFrontend(remote, s.root, { attrTimeoutMs: 0, background: ROOT, callers: { kind: 'fixed', cred: ROOT } });
    mnt = path.join(s.dir, 'mnt');
    await fs.mkdir(mnt);
    await fe.mount(mnt);
  });
  after(async () => {
    await fe?.unmount().catch(() => undefined);
    await forceUnmount(mnt);
    await remote?.close();
    await s?.stop();
  });

  test('writes arrive large (1 MiB: max_write and the export\'s wtmax)', async () => {
    const before = fe.stats;
    await run('dd', ['if=/dev/zero', `of=${path.join(mnt, 'big.bin')}`, 'bs=1M', 'count=16', 'status=none']);
    const st = fe.stats;
    assert.equal(st.maxWrite, MiB);
    const writes = st.writes - before.writes;
    assert.ok(writes <= 16 + 2, `${writes} writes for 16 MiB`);
    assert.ok(st.largeWrites - before.largeWrites >= 16);
    assert.ok(st.commits > before.commits, 'close commits');
  });

  test('a server restart between UNSTABLE writes and COMMIT: the data is written again FILE_SYNC', async () => {
    const data = randomBytes(3 * MiB + 5);
    await fs.writeFile(path.join(s.dir, 'src.bin'), data);
    // A writer that keeps its file open (no flush) until told to close.
    const script = `import sys,os\nfd=os.open(sys.argv[2],os.O_WRONLY|os.O_CREAT|os.O_TRUNC,0o644)\nos.write(fd,open(sys.argv[1],'rb').read())\nprint('written',flush=True)\nsys.stdin.readline()\nos.close(fd)\nprint('closed',flush=True)`;
    const w = spawn('python3', ['-c', script, path.join(s.dir, 'src.bin'), path.join(mnt, 'restart.bin')], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: w.stdout! })[Symbol.asyncIterator]();
    assert.equal((await lines.next()).value, 'written');
    const rewritesBefore = fe.stats.rewrites;
    await s.restart(); // a new write verifier
    w.stdin!.write('\n');
    assert.equal((await lines.next()).value, 'closed');
    await new Promise((r) => w.once('exit', r));
    assert.ok(fe.stats.rewrites > rewritesBefore, `rewrites ${fe.stats.rewrites}`);
    assert.ok((await fs.readFile(up('restart.bin'))).equals(data));
  });

  test('attribute timeout 0: a change made elsewhere is seen at once', async () => {
    await fs.writeFile(path.join(mnt, 'shared.txt'), 'v1');
    assert.equal((await run('cat', [path.join(mnt, 'shared.txt')])).stdout, 'v1');
    await fs.writeFile(up('shared.txt'), 'version two');
    assert.equal((await run('stat', ['-c', '%s', path.join(mnt, 'shared.txt')])).stdout.trim(), '11');
    assert.equal((await run('cat', [path.join(mnt, 'shared.txt')])).stdout, 'version two');
    await fs.writeFile(up('appeared.txt'), 'new');
    assert.match((await run('ls', [mnt])).stdout, /appeared\.txt/);
    assert.equal((await run('cat', [path.join(mnt, 'appeared.txt')])).stdout, 'new');
    await fs.unlink(up('appeared.txt'));
    await assert.rejects(run('cat', [path.join(mnt, 'appeared.txt')]), /No such file/);
    // Replaced elsewhere (new handle under the old name): looked up again, not stale.
    await fs.rm(up('shared.txt'));
    await fs.writeFile(up('shared.txt'), 'third');
    assert.equal((await run('cat', [path.join(mnt, 'shared.txt')])).stdout, 'third');
  });

  test('fsync commits; flush on close commits; no uncommitted data is left', async () => {
    const script = `import os,sys\nfd=os.open(sys.argv[1],os.O_WRONLY|os.O_CREAT,0o644)\nos.write(fd,b'x'*100000)\nos.fsync(fd)\nos.close(fd)`;
    const c = fe.stats.commits;
    await run('python3', ['-c', script, path.join(mnt, 'synced.bin')]);
    assert.ok(fe.stats.commits >= c + 1);
    assert.equal(fe.files.pendingBytes, 0);
    assert.equal(fe.files.count, 0);
  });
});

describe('FUSE front end: write-behind and deferred COMMIT', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let s: LocalServer;
  let remote: RemoteNfs;
  let fe: LowLevelFrontend;
  let mnt: string;
  before(async () => {
    s = await startLocalServer({ attrCacheMs: 0 });
    await fs.chmod(s.exportDir, 0o777);
    remote = new RemoteNfs({ host: '127.0.0.1', port: s.port, timeoutMs: 20_000 });
    // An unprivileged session identity, so that the server can refuse writes.
    fe = new LowLevelFrontend(remote, s.root, { attrTimeoutMs: 1000, background: user(1000), callers: { kind: 'fixed', cred: user(1000) }, deferCommitMs: 300 });
    mnt = path.join(s.dir, 'mnt');
    await fs.mkdir(mnt);
    await fe.mount(mnt);
  });
  after(async () => {
    await fe?.unmount().catch(() => undefined);
    await forceUnmount(mnt);
    await remote?.close();
    await s?.stop();
  });

  test('close returns before COMMIT; the background commits soon after; stat sizes include writes in flight', async () => {
    const c0 = fe.stats.commits;
    const script = `import os,sys\nfd=os.open(sys.argv[1],os.O_WRONLY|os.O_CREAT,0o644)\nfor i in range(64):\n  os.write(fd,bytes([i])*65536)\n  assert os.fstat(fd).st_size==(i+1)*65536\nos.close(fd)`;
    await run('python3', ['-c', script, path.join(mnt, 'deferred.bin')]);
    assert.equal(fe.stats.commits, c0, 'no COMMIT at close');
    assert.equal((await fs.stat(path.join(s.exportDir, 'deferred.bin'))).size, 64 * 65536, 'the server has the data at close');
    await delay(600);
    assert.ok(fe.stats.commits > c0, 'committed in the background');
    assert.equal(fe.files.pendingBytes, 0);
    const back = await fs.readFile(path.join(s.exportDir, 'deferred.bin'));
    for (let i = 0; i < 64; i++) assert.equal(back[i * 65536 + 100], i);
  });

  test('a write refused by the server after write() returned is reported by a later write or by close', async () => {
    const f = path.join(mnt, 'refused.bin');
    // The writer writes, waits while the file is made read-only for it behind the mount's back, then writes and closes.
    const script = `import os,sys\nfd=os.open(sys.argv[1],os.O_WRONLY|os.O_CREAT,0o644)\nos.write(fd,b'a'*131072)\nprint('first',flush=True)\nsys.stdin.readline()\ntry:\n  for i in range(8): os.write(fd,b'b'*131072)\n  os.close(fd)\n  print('no error')\nexcept OSError as e:\n  print('error',e.errno)`;
    const w = spawn('python3', ['-c', script, f], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: w.stdout! })[Symbol.asyncIterator]();
    assert.equal((await lines.next()).value, 'first');
    await fs.chown(path.join(s.exportDir, 'refused.bin'), 0, 0);
    await fs.chmod(path.join(s.exportDir, 'refused.bin'), 0o444);
    w.stdin!.write('\n');
    assert.equal((await lines.next()).value, 'error 13');
    await new Promise((r) => w.once('exit', r));
  });
});

describe('FUSE front end: attribute timeout bounds staleness', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let s: LocalServer;
  let remote: RemoteNfs;
  let fe: LowLevelFrontend;
  let mnt: string;
  before(async () => {
    s = await startLocalServer({ attrCacheMs: 0 });
    remote = new RemoteNfs({ host: '127.0.0.1', port: s.port, timeoutMs: 20_000 });
    fe = new LowLevelFrontend(remote, s.root, { attrTimeoutMs: 1500, background: ROOT, callers: { kind: 'fixed', cred: ROOT } });
    mnt = path.join(s.dir, 'mnt');
    await fs.mkdir(mnt);
    await fe.mount(mnt);
  });
  after(async () => {
    await fe?.unmount().catch(() => undefined);
    await forceUnmount(mnt);
    await remote?.close();
    await s?.stop();
  });

  test('a size changed elsewhere shows within the attribute timeout', async () => {
    await fs.writeFile(path.join(mnt, 'f'), 'a');
    const size = async () => Number((await run('stat', ['-c', '%s', path.join(mnt, 'f')])).stdout.trim());
    assert.equal(await size(), 1);
    await fs.writeFile(path.join(s.exportDir, 'f'), 'abcdef');
    const t0 = Date.now();
    while ((await size()) !== 6) {
      assert.ok(Date.now() - t0 < 1500 + 500, 'not seen within the attribute timeout');
      await delay(50);
    }
  });

  test('a name created elsewhere in a directory listed (and changed) through the mount shows within the timeout', async () => {
    await fs.mkdir(path.join(mnt, 'd'));
    await fs.writeFile(path.join(mnt, 'd', 'mine'), 'x');
    assert.deepEqual(await fs.readdir(path.join(mnt, 'd')), ['mine']);
    // Absent, answered from the listing.
    await assert.rejects(run('cat', [path.join(mnt, 'd', 'theirs')]), /No such file/);
    await fs.writeFile(path.join(s.exportDir, 'd', 'theirs'), 'from elsewhere');
    const t0 = Date.now();
    for (;;) {
      const r = await run('cat', [path.join(mnt, 'd', 'theirs')]).catch(() => undefined);
      if (r) {
        assert.equal(r.stdout, 'from elsewhere');
        break;
      }
      assert.ok(Date.now() - t0 < 1500 + 500, 'not seen within the entry timeout');
      await delay(50);
    }
    // A name created elsewhere within the timeout, while the kernel still believes it absent: the kernel sends
    // CREATE; without O_EXCL the existing file is simply opened (with O_EXCL: EEXIST, see posix.test.ts).
    await fs.writeFile(path.join(s.exportDir, 'd', 'theirs2'), 'old');
    assert.equal(await errCode(fs.writeFile(path.join(mnt, 'd', 'theirs2'), 'new')), 'no error');
    assert.equal(await fs.readFile(path.join(s.exportDir, 'd', 'theirs2'), 'utf8'), 'new');
  });
});
