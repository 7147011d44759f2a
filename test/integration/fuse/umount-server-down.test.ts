import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { tempDir } from '../../helpers/local-server.js';
import { gvfsDaemon, gvfsRun, type Daemon } from '../../helpers/cli-run.js';
import { forceUnmount, fuseSkip, spawnMount, type MountProc } from './mount-helper.js';

/**
 * `gvfs umount` with the server down: it must not stat through the mount
 * (EIO, or a hang for a call deadline), must succeed within seconds with
 * and without --lazy, and the mount must be gone from the mount table; the
 * mount process then exits within its drain bound. A mount busy with a
 * program's working directory needs --lazy, and the error says so.
 */
const mounted = async (mnt: string) => (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === mnt);
const SECONDS = 15_000; // "within seconds" on a loaded machine (the mount's own call deadline is 60 s)

describe('gvfs umount with the server down', { skip: fuseSkip(), timeout: 300_000 }, () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => undefined);
  });

  /** gvfs serve (its own process) and a gvfs mount of it; then the server is killed. */
  async function mountThenKillServer(name: string, beforeKill?: (mnt: string) => Promise<void>): Promise<{ m: MountProc; mnt: string; server: Daemon }> {
    const base = await tempDir(`gvfs-umount-${name}-`);
    const exp = path.join(base, 'export');
    const mnt = path.join(base, 'mnt');
    await fs.mkdir(exp);
    await fs.mkdir(mnt);
    await fs.writeFile(path.join(exp, 'f.txt'), 'x');
    const server = await gvfsDaemon(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(base, 'state')]);
    cleanup.push(async () => server.kill());
    const m = await spawnMount(`nfs://127.0.0.1:${server.info.listening.port}/`, mnt, ['--attr-timeout', '0', '--timeout', '60000']);
    cleanup.push(() => m.stop());
    cleanup.push(() => forceUnmount(mnt));
    cleanup.push(() => fs.rm(base, { recursive: true, force: true }));
    assert.deepEqual(await fs.readdir(mnt), ['f.txt']);
    await beforeKill?.(mnt);
    await server.terminate('SIGKILL');
    return { m, mnt, server };
  }

  const exited = (m: MountProc) => new Promise<number | null>((r) => (m.proc.exitCode !== null ? r(m.proc.exitCode) : m.proc.once('exit', (c) => r(c))));

  test('gvfs umount: succeeds within seconds, the mount is gone, its process exits', async () => {
    const { m, mnt } = await mountThenKillServer('plain');
    const r = await gvfsRun(['umount', mnt], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `exit ${r.code} after ${r.ms} ms: ${r.stderr}`);
    assert.ok(r.ms < SECONDS, `took ${r.ms} ms`);
    assert.match(r.stdout, /unmounted/);
    assert.equal(await mounted(mnt), false);
    const t0 = Date.now();
    await exited(m);
    assert.ok(Date.now() - t0 < SECONDS, 'the mount process exits within its drain bound');
  });

  test('gvfs umount --lazy: succeeds at once without asking the mount anything', async () => {
    const { mnt } = await mountThenKillServer('lazy');
    const r = await gvfsRun(['umount', '--lazy', mnt], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.ms < SECONDS, `took ${r.ms} ms`);
    assert.equal(await mounted(mnt), false);
  });

  test('busy (a shell inside) with the server down: umount says to use --lazy, --lazy detaches it', async () => {
    // The program enters the mount while the server is up (a chdir into a dead server's mount would wait for it).
    const { mnt } = await mountThenKillServer('busy', async (dir) => {
      const sh = spawn('sleep', ['300'], { cwd: dir, stdio: 'ignore' });
      cleanup.push(async () => sh.kill('SIGKILL'));
      await new Promise((r) => sh.once('spawn', r));
      await delay(200);
    });
    const r = await gvfsRun(['umount', mnt], { timeoutMs: 120_000 });
    assert.notEqual(r.code, 0);
    assert.ok(r.ms < SECONDS, `took ${r.ms} ms`);
    assert.match(r.stderr, /--lazy/);
    assert.equal(await mounted(mnt), true);
    const l = await gvfsRun(['umount', '--lazy', mnt], { timeoutMs: 120_000 });
    assert.equal(l.code, 0, l.stderr);
    assert.equal(await mounted(mnt), false);
  });

  test('SIGTERM to the mount with its server down: it unmounts and exits within its drain bound', async () => {
    const { m, mnt } = await mountThenKillServer('sigterm');
    const t0 = Date.now();
    m.proc.kill('SIGTERM');
    await exited(m);
    assert.ok(Date.now() - t0 < SECONDS, `took ${Date.now() - t0} ms`);
    assert.equal(await mounted(mnt), false);
  });
});
