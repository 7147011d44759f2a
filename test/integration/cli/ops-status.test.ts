import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { gvfsDaemon, gvfsRun, type Daemon } from '../../helpers/cli-run.js';
import { fusePrereqs, requirePrereq } from '../../helpers/prereq.js';

const run = promisify(execFile);

/**
 * gvfs status finds this host's daemons through their state files in the
 * runtime directory (GVFS_RUNTIME_DIR here, a temporary one), shows their
 * cache use, the fuse.gvfs mounts and their recent warnings, and shows a
 * killed daemon (and its stale mount) as dead.
 */
describe('gvfs status', { timeout: 300_000 }, () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const daemons: Daemon[] = [];
  let mnt: string | undefined;
  const status = async () => {
    const r = await gvfsRun(['status', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { runtimeDir: string; daemons: any[]; mounts: any[]; servers: string[]; recentErrors: any[] };
  };

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-status-'));
    env = { GVFS_RUNTIME_DIR: path.join(dir, 'run') };
    await fs.mkdir(path.join(dir, 'exp'));
  });
  after(async () => {
    for (const d of daemons) d.kill();
    if (mnt) await run('umount', ['-l', mnt]).catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('lists a live proxy server and proxy client with its cache; a killed one shows dead; --clean forgets it', async () => {
    const ps = await gvfsDaemon(['proxy-server', '--export', path.join(dir, 'exp'), '--insecure', '--map-user', `alice=${process.getuid!()}:${process.getgid!()}`, '--listen', '127.0.0.1:0', '--state-dir', path.join(dir, 'ps')], env);
    daemons.push(ps);
    const server = `127.0.0.1:${ps.info.listening.port}`;
    const pc = await gvfsDaemon(['proxy-client', '--server', server, '--user', 'alice', '--insecure', '--cache-dir', path.join(dir, 'cache'), '--cache-size', '64M'], env);
    daemons.push(pc);
    let s = await status();
    assert.equal(s.runtimeDir, path.join(dir, 'run'));
    const psd = s.daemons.find((d) => d.role === 'proxy-server');
    const pcd = s.daemons.find((d) => d.role === 'proxy-client');
    assert.equal(psd?.pid, ps.proc.pid);
    assert.equal(psd.state, 'running');
    assert.equal(psd.listen, server);
    assert.equal(pcd?.pid, pc.proc.pid);
    assert.equal(pcd.state, 'running');
    assert.equal(pcd.server, server);
    assert.equal(pcd.cacheDir, path.join(dir, 'cache'));
    assert.equal(pcd.cache.capacity, 64 << 20);
    assert.equal(pcd.cache.dirtyBytes, 0);
    assert.deepEqual(s.servers, [server]);
    const text = await gvfsRun(['status'], { env });
    assert.match(text.stdout, new RegExp(`proxy-client +pid ${pc.proc.pid} +running .*-> ${server}`));
    assert.match(text.stdout, /cache .*used [\d.]+ MiB of 64\.0 MiB, dirty 0\.0 MiB/);

    ps.kill();
    await ps.terminate();
    s = await status();
    assert.equal(s.daemons.find((d) => d.role === 'proxy-server').state, 'dead');
    assert.equal(s.daemons.find((d) => d.role === 'proxy-client').state, 'running');
    assert.match((await gvfsRun(['status'], { env })).stdout, new RegExp(`proxy-server +pid ${ps.proc.pid} +DEAD`));
    await gvfsRun(['status', '--clean'], { env });
    assert.equal((await status()).daemons.find((d) => d.role === 'proxy-server'), undefined);
    // A clean exit removes its own file.
    assert.equal((await pc.terminate()).code, 0);
    assert.deepEqual((await status()).daemons, []);
  });

  test('a live gvfs mount is listed with its daemon; killed, both show dead', { skip: requirePrereq(...fusePrereqs()) }, async () => {
    const ps = await gvfsDaemon(['proxy-server', '--export', path.join(dir, 'exp'), '--insecure', '--map-user', 'alice=0:0', '--listen', '127.0.0.1:0', '--state-dir', path.join(dir, 'ps2')], env);
    daemons.push(ps);
    mnt = path.join(dir, 'mnt');
    await fs.mkdir(mnt);
    const m = await gvfsDaemon(['mount', '--server', `127.0.0.1:${ps.info.listening.port}`, '--user', 'alice', '--insecure', '--foreground', mnt], env);
    daemons.push(m);
    let s = await status();
    const md = s.daemons.find((d) => d.role === 'mount');
    assert.equal(md?.state, 'running');
    assert.equal(md.mountpoint, mnt);
    const entry = s.mounts.find((x) => x.mountpoint === mnt);
    assert.deepEqual({ pid: entry?.pid, state: entry?.state, registered: entry?.registered }, { pid: m.proc.pid, state: 'running', registered: true });
    assert.match(entry.source, /^gvfs:127\.0\.0\.1:\d+\//);
    m.kill();
    await m.terminate();
    s = await status();
    assert.equal(s.daemons.find((d) => d.role === 'mount').state, 'dead');
    assert.equal(s.mounts.find((x) => x.mountpoint === mnt)?.state, 'dead');
    assert.match((await gvfsRun(['status'], { env })).stdout, /DEAD: its gvfs mount process is gone/);
    await ps.terminate();
  });
});
