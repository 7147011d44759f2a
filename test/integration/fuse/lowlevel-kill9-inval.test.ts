import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Backend } from '../../../src/backend/backend.js';
import type { SourcedRead } from '../../../src/backend/backend.js';
import type { Credentials } from '../../../src/rpc/types.js';
import { PassthroughBackend } from '../../../src/wrappers/passthrough.js';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { forceUnmount, fuseSkip, run, spawnMount, type MountProc } from './mount-helper.js';
import { gvfsArgv } from '../../../src/cli/self.js';

/** READs wait at the server while `hold` is on: the kernel keeps the pages they fill locked meanwhile. */
class HeldReads extends PassthroughBackend {
  hold = false;
  private waiting: Array<() => void> = [];
  /** Metadata calls (LOOKUP, GETATTR, ACCESS, SETATTR) since `resetMeta()`. */
  meta = 0;

  constructor(inner: Backend) {
    super(inner);
  }

  get held(): number {
    return this.waiting.length;
  }

  release(): void {
    this.hold = false;
    for (const go of this.waiting.splice(0)) go();
  }

  override async read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead> {
    if (this.hold) await new Promise<void>((r) => this.waiting.push(r));
    return super.read(cred, fh, offset, count);
  }

  override async lookup(...a: Parameters<Backend['lookup']>) {
    this.meta++;
    return super.lookup(...a);
  }

  override async getattr(...a: Parameters<Backend['getattr']>) {
    this.meta++;
    return super.getattr(...a);
  }

  override async access(...a: Parameters<Backend['access']>) {
    this.meta++;
    return super.access(...a);
  }

  override async setattr(...a: Parameters<Backend['setattr']>) {
    this.meta++;
    return super.setattr(...a);
  }
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await delay(25);
  }
  return false;
}

/** Threads of `pid` asleep uninterruptibly (state D) in the kernel. */
async function dThreads(pid: number): Promise<number> {
  const tasks = await fs.readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  let n = 0;
  for (const t of tasks) {
    const stat = await fs.readFile(`/proc/${pid}/task/${t}/stat`, 'utf8').catch(() => '');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('D')) n++;
  }
  return n;
}

/** Last resort for a connection nobody can end any more (what this test guards against): fusectl's abort. */
async function abortConnection(dev: number): Promise<void> {
  const dir = '/sys/fs/fuse/connections';
  let mounted = false;
  if (!existsSync(path.join(dir, String(dev)))) {
    await run('mount', ['-t', 'fusectl', 'fusectl', dir]).catch(() => undefined);
    mounted = true;
  }
  await fs.writeFile(path.join(dir, String(dev), 'abort'), '1').catch(() => undefined);
  if (mounted) await run('umount', [dir]).catch(() => undefined);
}

function exitOf(p: ChildProcess): Promise<number | null> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(p.exitCode);
  return new Promise((r) => p.once('exit', (c) => r(c)));
}

/**
 * kill -9 of a low-level mount while the kernel waits for it to answer READs
 * (their pages locked) and a change on the server makes it invalidate the
 * file's cached state (stat, open and truncate through the mount). A page
 * invalidation sent then sleeps uninterruptibly on those page locks, the
 * dying process cannot close /dev/fuse, and every caller hangs for good.
 * Attribute invalidations (all we send) never wait on a page.
 */
describe('gvfs mount (low-level FUSE): kill -9 with reads and an invalidation in flight', { skip: fuseSkip(), timeout: 240_000 }, () => {
  let s: LocalServer;
  let slow: HeldReads;
  let m: MountProc | undefined;
  const kids: ChildProcess[] = [];
  let dev = 0;
  let hung = false;

  before(async () => {
    s = await startLocalServer({ wrap: (b) => (slow = new HeldReads(b)) });
    await fs.writeFile(path.join(s.exportDir, 'big'), randomBytes(8 << 20));
  });

  after(async () => {
    slow?.release();
    if (hung) await abortConnection(dev);
    for (const k of kids) if (k.exitCode === null && k.signalCode === null) k.kill('SIGKILL');
    if (m && m.proc.exitCode === null && m.proc.signalCode === null) m.proc.kill('SIGKILL');
    if (m) await forceUnmount(m.mnt);
    await s?.stop();
  });

  test('the mount process dies at once, its callers get errors, and gvfs umount clears the mount point', async () => {
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'), ['--attr-timeout', '0']);
    const big = path.join(m.mnt, 'big');
    dev = (await fs.stat(m.mnt)).dev;
    await fs.stat(big);

    // Readers whose READs the server holds: the kernel has their pages locked, waiting for the mount.
    slow.hold = true;
    for (let i = 0; i < 2; i++) kids.push(spawn('dd', [`if=${big}`, 'of=/dev/null', 'bs=1M', `skip=${i * 4}`], { stdio: 'ignore' }));
    assert.ok(await until('reads held', () => slow.held >= 1, 30_000), 'no READ reached the server');

    // The file changes on the server; then stat, open and truncate it through the mount, each of which tells
    // the kernel its cached state is stale.
    await fs.appendFile(path.join(s.exportDir, 'big'), 'grown on the server');
    slow.meta = 0;
    kids.push(spawn('stat', [big], { stdio: 'ignore' }));
    kids.push(spawn('head', ['-c', '1', big], { stdio: 'ignore' }));
    kids.push(spawn('truncate', ['-s', String(6 << 20), big], { stdio: 'ignore' }));
    assert.ok(await until('the mount revalidated', () => slow.meta >= 2, 30_000), 'the mount never asked the server about the change');
    // Room for the invalidation to be under way (a page invalidation shows as a thread asleep in D state).
    await until('a thread in D', async () => (await dThreads(m!.pid)) > 0, 2_000);

    m.proc.kill('SIGKILL');
    const t0 = Date.now();
    const gone = await Promise.race([exitOf(m.proc).then(() => true), delay(20_000).then(() => false)]);
    if (!gone) {
      hung = true;
      assert.fail(`the mount process did not die within 20 s of kill -9 (${await dThreads(m.pid)} thread(s) in D state): its connection hangs every caller`);
    }
    assert.ok(!existsSync(`/proc/${m.pid}`), 'the process is gone');

    // Every caller that was waiting on the mount is answered (with an error) and ends.
    const callers = await Promise.race([Promise.all(kids.map(exitOf)).then(() => true), delay(20_000).then(() => false)]);
    assert.ok(callers, 'a caller of the dead mount is still waiting');

    // gvfs umount clears the dead mount, within a bound.
    const um = await run(process.execPath, gvfsArgv(['umount', m.mnt]), { timeout: 30_000 });
    assert.match(um.stdout, /unmounted/);
    const table = await fs.readFile('/proc/self/mountinfo', 'utf8');
    assert.ok(!table.split('\n').some((l) => l.split(' ')[4] === m!.mnt), 'still in the mount table');
    assert.ok(Date.now() - t0 < 60_000);
    slow.release();
  });
});
