import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { Agent, type AgentConfig } from '../../src/services/agent/agent.js';
import type { ProxyServerSpec } from '../../src/services/api/types.js';
import { agentBed, aliceKeyDoc, listening, processesUnder, until, type AgentBed } from '../helpers/services.js';
import { gvfsArgv } from '../../src/cli/self.js';

const run = promisify(execFile);

/** Command lines of live processes that mention `s`. */
async function processesNaming(s: string): Promise<string[]> {
  const out: string[] = [];
  for (const p of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.split('\0').some((a) => a.includes(s))) out.push(cmd.replace(/\0/g, ' '));
  }
  return out;
}

/**
 * Issue 14 item 10: a session user who owns her exported directory swaps it
 * for a symbolic link (out of the export roots, or to another directory
 * inside them) and waits for the proxy server to be restarted (crash,
 * reboot). The agent checks again at every restart, the proxy server checks
 * itself, and the component stays stopped with its reason.
 */
describe('the agent confines exports at every start and restart', { timeout: 180_000 }, () => {
  let bed: AgentBed;
  let dir: string;
  let cfg: AgentConfig;
  let roots: string;
  let outside: string;
  before(async () => {
    bed = await agentBed('gvfs-sec-confine-');
    ({ dir, cfg, exports: roots } = bed);
    outside = path.join(dir, 'etc'); // stands for /etc: what must never be served
    await fs.mkdir(path.join(roots, 'alice'), { recursive: true });
    await fs.mkdir(path.join(roots, 'bob'), { recursive: true });
    await fs.mkdir(outside);
    await fs.writeFile(path.join(outside, 'shadow'), 'root:secret\n');
  });
  after(() => bed?.stop());

  const spec = (d: string): ProxyServerSpec => ({ kind: 'proxy-server', key: aliceKeyDoc(), exports: [{ dir: d, name: '/home' }], channel: 'tls' });

  /**
   * Start alice's proxy server, kill it, swap her directory for a link to `target`. With `reboot`, the agent is
   * closed first (its monitor must not restart the server between the kill and the swap) and the server is waited
   * out: a SIGKILLed process still looks alive in /proc until its exit completes, and a new agent would re-attach to it.
   */
  async function startThenSwap(a: Agent, session: string, target: string, reboot = false) {
    const home = path.join(roots, 'alice');
    await fs.rm(home, { recursive: true, force: true });
    await fs.mkdir(home);
    const v = await a.ensure(session, 'ps', spec(home));
    assert.equal(v.state, 'running');
    assert.ok(await listening(v.port!));
    if (reboot) a.close();
    process.kill(v.pid!, 'SIGKILL');
    if (reboot) {
      await until('the killed proxy server to be gone', async () => {
        const st = await fs.readFile(`/proc/${v.pid}/stat`, 'utf8').catch(() => '');
        return st === '' || /\) [ZX] /.test(st);
      });
    }
    await fs.rename(home, path.join(roots, `alice-old-${session}`));
    await fs.symlink(target, home);
    return v;
  }

  test('swapped for a link out of the roots while the agent runs: the monitor does not restart it; failed, with the reason; never served', async () => {
    const a = await Agent.open(cfg);
    try {
      const v = await startThenSwap(a, 's-monitor', outside);
      await until('the monitor to give up on it', async () => (await a.session('s-monitor', false))[0].state === 'failed');
      const [f] = await a.session('s-monitor', false);
      assert.equal(f.alive, false);
      assert.equal(f.pid, null);
      assert.match(f.error ?? '', /does not allow exports at .*alice.*resolves to .*etc|no longer the directory/);
      // No restart loop: after many monitor periods it is still failed, never restarted.
      await new Promise((r) => setTimeout(r, 2000));
      const [g] = await a.session('s-monitor', false);
      assert.equal(g.state, 'failed');
      assert.equal(g.restarts, 0);
      // (The port itself may be taken by anyone else on a shared machine: what counts is that no process of the session runs.)
      assert.deepEqual(await processesUnder(path.join(cfg.stateDir, 'sessions', 's-monitor')), [], 'no proxy server of the session runs');
      assert.deepEqual(await processesNaming(outside), [], 'no process was given the outside directory');
      void v;
      // Deleting the session still works and cleans up.
      assert.deepEqual((await a.stopSession('s-monitor')).stopped, ['ps']);
    } finally {
      a.close();
    }
  });

  test('swapped for a link to another directory inside the roots, then the agent restarts: refused (not the directory that was checked)', async () => {
    let a = await Agent.open(cfg);
    const v = await startThenSwap(a, 's-reboot', path.join(roots, 'bob'), true);
    a = await Agent.open(cfg); // "after a reboot": recovery restarts what died
    try {
      const [f] = await a.session('s-reboot', false);
      assert.equal(f.state, 'failed');
      assert.match(f.error ?? '', /no longer the directory that was checked/);
      assert.deepEqual(await processesUnder(path.join(cfg.stateDir, 'sessions', 's-reboot')), [], 'no proxy server of the session runs');
      assert.deepEqual(await processesNaming(path.join(roots, 'bob')), []);
      void v;
      assert.deepEqual((await a.stopSession('s-reboot')).stopped, ['ps']);
    } finally {
      a.close();
    }
  });

  test('the proxy server itself refuses an export root that is a link or another directory than the one checked', async () => {
    const d = path.join(dir, 'direct');
    await fs.mkdir(d);
    const st = await fs.stat(d, { bigint: true });
    const key = path.join(dir, 'k.key');
    await writeKeyFile(key, newSessionKey('alice', undefined, { uid: 2001, gid: 2001, gids: [] }));
    const start = (exp: string, expect: string) =>
      run(process.execPath, gvfsArgv(['proxy-server', '--listen', '127.0.0.1:0', '--key', key, '--state-dir', path.join(dir, 'direct-state'), '--export', `${exp}=/x`, '--export-expect', `${exp}=${expect}`, '--json']), { timeout: 30_000 });
    // Swapped for a link to the outside directory.
    await fs.rename(d, `${d}.old`);
    await fs.symlink(outside, d);
    await assert.rejects(start(d, `${st.dev}:${st.ino}`), (e: Error & { stderr?: string }) => /refusing to export .*direct: .*symbolic link/.test(e.stderr ?? ''));
    // Swapped for another directory (a link higher up would show the same way: its real path differs).
    await fs.unlink(d);
    await fs.mkdir(d);
    await assert.rejects(start(d, `${st.dev}:${st.ino}`), (e: Error & { stderr?: string }) => /not the directory that was checked/.test(e.stderr ?? ''));
    await fs.symlink(path.join(dir, 'direct'), path.join(dir, 'via'));
    await assert.rejects(start(path.join(dir, 'via'), `${st.dev}:${st.ino}`), (e: Error & { stderr?: string }) => /refusing to export/.test(e.stderr ?? ''));
  });
});
