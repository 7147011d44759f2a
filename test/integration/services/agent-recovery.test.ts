import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Agent, type AgentConfig } from '../../../src/services/agent/agent.js';
import { isAlive, procStat } from '../../../src/services/agent/processes.js';
import { AgentStore } from '../../../src/services/agent/store.js';
import type { ProxyServerSpec } from '../../../src/services/api/types.js';
import { agentBed, aliceKeyDoc, listening, processesUnder, until, type AgentBed } from '../../helpers/services.js';

let bed: AgentBed;
let dir: string;
let cfg: AgentConfig;
before(async () => {
  bed = await agentBed('gvfs-agent-recovery-');
  ({ dir, cfg } = bed);
  await fs.mkdir(path.join(bed.exports, 'x'));
});
after(() => bed?.stop());

test('an agent restarted after a crash: what was half-started is removed, what died while it was down is restarted on its port, what runs is re-attached', { timeout: 600_000 }, async () => {
  const spec = (): ProxyServerSpec => ({ kind: 'proxy-server', key: aliceKeyDoc(), exports: [{ dir: path.join(dir, 'exports', 'x'), name: '/x' }], channel: 'tls' });
  let a = await Agent.open(cfg);
  const dies = await a.ensure('s-dies', 'ps', spec());
  const lives = await a.ensure('s-lives', 'ps', spec());
  // Idempotent: the same order again returns the running one; another order for the same name is a conflict.
  const s2 = spec();
  const again = await a.ensure('s-twice', 'ps', s2);
  assert.equal((await a.ensure('s-twice', 'ps', s2)).pid, again.pid);
  await assert.rejects(a.ensure('s-twice', 'ps', spec()), /already has a proxy-server "ps"/);
  const sibling = await a.ensure('s-sibling', 'ps', spec());
  a.close();

  // While the agent is down: one proxy server dies, and a start it had begun is left behind (row "starting", its process running).
  const st = await procStat(dies.pid!);
  process.kill(dies.pid!, 'SIGKILL');
  await until('the proxy server to die', async () => !(await isAlive({ pid: dies.pid!, startTime: st!.startTime })));
  const store = new AgentStore(cfg.stateDir);
  // A half-started process looks like `gvfs ARGS --json` (startDetached): node, a script, the row's arguments.
  const strayJs = path.join(dir, 'stray.js');
  await fs.writeFile(strayJs, 'setInterval(() => {}, 1000);\n');
  const spawnStray = (args: string[]) => {
    const p = spawn(process.execPath, [strayJs, ...args, '--json'], { stdio: 'ignore' });
    return { pid: p.pid!, exit: new Promise((r) => p.once('exit', r)) };
  };
  const halfKey = path.join(cfg.stateDir, 'sessions', 's-half', 'key.json');
  const halfArgs = ['proxy-server', '--key', halfKey];
  store.insert({ session: 's-half', name: 'ps', kind: 'proxy-server', spec: spec(), args: halfArgs, port: null });
  await fs.mkdir(path.dirname(halfKey), { recursive: true });
  await fs.writeFile(halfKey, '{}', { mode: 0o600 });
  const stray = spawnStray(halfArgs);
  const strayExit = stray.exit;
  // And one begun beside a running component of the same session (same key, same kind): only the half-started one is to go.
  const siblingArgs = ['proxy-server', '--key', path.join(cfg.stateDir, 'sessions', 's-sibling', 'key.json'), '--listen', '127.0.0.1:0'];
  store.insert({ session: 's-sibling', name: 'ps2', kind: 'proxy-server', spec: spec(), args: siblingArgs, port: null });
  store.close();
  const stray2 = spawnStray(siblingArgs);

  a = await Agent.open(cfg);
  try {
    await strayExit;
    assert.deepEqual(await a.session('s-half', false), []);
    await assert.rejects(fs.stat(path.dirname(halfKey)), /ENOENT/);

    const [back] = await a.session('s-dies', false);
    assert.ok(back.alive);
    assert.equal(back.restarts, 1);
    assert.equal(back.port, dies.port);
    assert.notEqual(back.pid, dies.pid);
    assert.ok(await listening(back.port!));

    await stray2.exit;
    const sib = await a.session('s-sibling', false);
    assert.deepEqual(
      sib.map((x) => [x.name, x.pid, x.alive, x.restarts]),
      [['ps', sibling.pid, true, 0]],
      'the half-started ps2 is gone; the running ps of the same session (same key file) is re-attached, not killed with it',
    );

    const [same] = await a.session('s-lives', false);
    assert.equal(same.pid, lives.pid);
    assert.equal(same.restarts, 0);

    // The monitor restarts what dies while the agent runs.
    process.kill(same.pid!, 'SIGKILL');
    await until('the monitor to restart it', async () => {
      const [v] = await a.session('s-lives', false);
      return v.alive && v.restarts === 1;
    });

    for (const s of ['s-dies', 's-lives', 's-twice', 's-sibling']) assert.deepEqual((await a.stopSession(s)).stopped, ['ps']);
    assert.deepEqual((await a.stopSession('s-dies')).stopped, [], 'idempotent');
    assert.deepEqual(a.list(), []);
    assert.deepEqual(await fs.readdir(path.join(cfg.stateDir, 'sessions')), []);
    assert.deepEqual(await processesUnder(path.join(cfg.stateDir, 'sessions')), []);
  } finally {
    a.close();
  }
});

test('the agent refuses exports outside its roots, symlinks and missing directories, naming the host', { timeout: 600_000 }, async () => {
  const a = await Agent.open(cfg);
  try {
    const order = (d: string): ProxyServerSpec => ({ kind: 'proxy-server', key: aliceKeyDoc(), exports: [{ dir: d, name: '/x' }], channel: 'tls' });
    await assert.rejects(a.ensure('s-bad', 'ps', order('/etc')), (e: any) => e.status === 403 && /host state does not allow exports at \/etc/.test(e.message));
    await fs.symlink('/etc', path.join(dir, 'exports', 'link'));
    await assert.rejects(a.ensure('s-bad', 'ps', order(path.join(dir, 'exports', 'link'))), (e: any) => e.status === 403);
    await assert.rejects(a.ensure('s-bad', 'ps', order(path.join(dir, 'exports', 'missing'))), (e: any) => e.status === 400 && /does not exist on state/.test(e.message));
    await assert.rejects(a.ensure('s-bad', 'ps', { ...order(path.join(dir, 'exports', 'x')), channel: 'ssh' }), (e: any) => e.code === 'NO_SSH');
    // A mount point whose not-yet-existing path runs through a link out of the mount roots.
    const mroot = path.join(dir, 'mnt');
    await fs.mkdir(mroot);
    await fs.symlink(path.join(dir, 'exports'), path.join(mroot, 'out'));
    const m = { kind: 'mount' as const, key: aliceKeyDoc(), server: { host: '127.0.0.1', port: 1 }, channel: { kind: 'tls' as const, fingerprint: cfg.fingerprint }, export: '/x', cache: { mode: 'none' as const }, attrTimeout: 1 };
    const b = await Agent.open({ ...cfg, stateDir: path.join(dir, 'state-b'), mountRoots: [mroot] });
    try {
      await assert.rejects(b.ensure('s-bad', 'm0', { ...m, mountpoint: path.join(mroot, 'out', 'new', 'mnt') }), (e: any) => e.status === 403 && /does not allow mounts|is a symbolic link/.test(e.message));
      await assert.rejects(b.ensure('s-bad', 'm0', { ...m, mountpoint: path.join(mroot, 'out') }), (e: any) => e.status === 403);
      await assert.rejects(fs.stat(path.join(dir, 'exports', 'new')), /ENOENT/);
    } finally {
      b.close();
    }
    assert.deepEqual(a.list(), []);
  } finally {
    a.close();
  }
});
