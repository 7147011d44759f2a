import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { errCode, forceUnmount, fuseSkip, run, spawnMount } from './mount-helper.js';
import { gvfsArgv } from '../../../src/cli/self.js';

const gvfs = (...args: string[]) => run(process.execPath, gvfsArgv(args));
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}
const mounted = async (mnt: string) => (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === mnt);

describe('gvfs mount / gvfs umount commands', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let s: LocalServer;
  let url: string;
  let mnt: string;
  before(async () => {
    s = await startLocalServer();
    url = `nfs://127.0.0.1:${s.port}/`;
    mnt = path.join(s.dir, 'mnt');
    await fs.mkdir(mnt);
  });
  after(async () => {
    await forceUnmount(mnt);
    await s?.stop();
  });

  test('--help on both', async () => {
    const m = (await gvfs('mount', '--help')).stdout;
    for (const o of ['--server', '--user', '--key', '--export', '--attr-timeout', '--foreground', '--json', 'nfs://']) assert.ok(m.includes(o), o);
    assert.match((await gvfs('umount', '--help')).stdout, /Usage: gvfs umount .*mountpoint/);
  });

  test('detached by default: prints the mount as JSON, gvfs umount ends it', async () => {
    const out = JSON.parse((await gvfs('mount', '--server', url, mnt, '--json', '--log', path.join(s.dir, 'mount.log'))).stdout);
    assert.equal(out.mounted, mnt);
    assert.ok(alive(out.pid));
    await fs.writeFile(path.join(mnt, 'detached.txt'), 'hi');
    assert.equal(await fs.readFile(path.join(s.exportDir, 'detached.txt'), 'utf8'), 'hi');
    assert.match((await gvfs('umount', mnt)).stdout, /unmounted/);
    assert.equal(await mounted(mnt), false);
    await until('the mount process to exit', () => !alive(out.pid));
    assert.match(await fs.readFile(path.join(s.dir, 'mount.log'), 'utf8'), /unmounted from outside/);
  });

  test('SIGTERM unmounts cleanly and commits what an open file wrote', async () => {
    const m = await spawnMount(url, mnt);
    const data = randomBytes(2 * 1024 * 1024);
    await fs.writeFile(path.join(s.dir, 'src.bin'), data);
    // A writer that has written but not closed when the mount is told to stop.
    const script = `import sys,os\nfd=os.open(sys.argv[2],os.O_WRONLY|os.O_CREAT,0o644)\nos.write(fd,open(sys.argv[1],'rb').read())\nprint('written',flush=True)\nsys.stdin.readline()`;
    const w = spawn('python3', ['-c', script, path.join(s.dir, 'src.bin'), path.join(mnt, 'open.bin')], { stdio: ['pipe', 'pipe', 'ignore'] });
    // Killed whatever happens: a live writer holds this test file's process open.
    try {
      assert.equal((await createInterface({ input: w.stdout! })[Symbol.asyncIterator]().next()).value, 'written');
      const code = await m.stop();
      assert.equal(code, 0, m.stderr());
      assert.equal(await mounted(mnt), false);
      assert.ok((await fs.readFile(path.join(s.exportDir, 'open.bin'))).equals(data));
      const st = m.stats()!;
      // Large kernel writes: 1 MiB (libfuse 3's max_write, the export's wtmax being 1 MiB); libfuse 2 sent 128 KiB at most.
      assert.ok(st.commits >= 1 && st.maxWrite === 1024 * 1024, JSON.stringify(st));
    } finally {
      w.kill();
    }
  });

  test('a mount whose process was killed is detected and cleared by the next mount, and by gvfs umount', async () => {
    let m = await spawnMount(url, mnt);
    process.kill(m.pid, 'SIGKILL');
    await until('the process to die', () => !alive(m.pid));
    assert.equal(await errCode(fs.stat(mnt)), 'ENOTCONN');
    m = await spawnMount(url, mnt);
    assert.ok((await fs.readdir(mnt)).includes('detached.txt'));
    process.kill(m.pid, 'SIGKILL');
    await until('the process to die', () => !alive(m.pid));
    // Not busy: unmounted without asking the dead mount anything (issue 23: nothing is stat'ed first).
    assert.match((await gvfs('umount', mnt)).stdout, /unmounted/);
    assert.equal(await mounted(mnt), false);
    await fs.stat(mnt);
    await m.stop();
  });

  test('refuses a mountpoint that is already mounted, and umount of what is not mounted', async () => {
    const m = await spawnMount(url, mnt);
    try {
      await assert.rejects(spawnMount(url, mnt), /already a mount point/);
      assert.ok(await mounted(mnt));
    } finally {
      await m.stop();
    }
    assert.match(await errCode(gvfs('umount', mnt)), /is not mounted/);
  });
});
