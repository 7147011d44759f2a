import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { sdNotify } from '../../../src/native/native.js';
import { gvfsDaemon, type Daemon } from '../../helpers/cli-run.js';
import { hasAnyFile, hasFile, requirePrereq } from '../../helpers/prereq.js';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..', '..');

/**
 * A unix datagram socket owned by the test, standing in for systemd's
 * NOTIFY_SOCKET (Node cannot open one: a few lines of Python do). Each
 * datagram received is one stdout line, JSON-quoted.
 */
async function notifySocket(p: string): Promise<{ messages: string[]; next(match: RegExp, ms?: number): Promise<string>; close(): void }> {
  const py = 'import socket,sys,json\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\na=sys.argv[1]\ns.bind("\\0"+a[1:] if a[0]=="@" else a)\nprint("bound",flush=True)\nwhile True:\n  print(json.dumps(s.recv(4096).decode()),flush=True)\n';
  const proc: ChildProcess = spawn('python3', ['-c', py, p], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: string[] = [];
  const waiters: Array<() => void> = [];
  const rl = createInterface({ input: proc.stdout! });
  await new Promise<void>((resolve, reject) => {
    rl.once('line', (l) => (l === 'bound' ? resolve() : reject(new Error(l))));
    proc.once('exit', (c) => reject(new Error(`python3 exited ${c}`)));
  });
  rl.on('line', (l) => {
    messages.push(JSON.parse(l) as string);
    for (const w of waiters.splice(0)) w();
  });
  return {
    messages,
    async next(match, ms = 120_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = messages.find((x) => match.test(x));
        if (m) return m;
        if (Date.now() > deadline) throw new Error(`no ${match} on the notify socket (got ${JSON.stringify(messages)})`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 1000).unref();
        });
      }
    },
    close: () => void proc.kill('SIGKILL'),
  };
}

describe('systemd readiness (sd_notify) and the units', { timeout: 240_000 }, () => {
  const skip = requirePrereq(hasAnyFile(['/usr/bin/python3', '/usr/local/bin/python3', `${os.homedir()}/.pyenv/shims/python3`], 'python3 (the test\'s datagram socket)'));
  let dir: string;
  const daemons: Daemon[] = [];
  const sockets: Array<{ close(): void }> = [];
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-notify-'));
  });
  after(async () => {
    for (const d of daemons) d.kill();
    for (const s of sockets) s.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('the agent sends READY=1 from its own pid once its API listens, and STOPPING=1 on SIGTERM', { skip }, async () => {
    const sock = await notifySocket(path.join(dir, 'notify.sock'));
    sockets.push(sock);
    assert.equal(sock.messages.length, 0);
    const agent = await gvfsDaemon(['agent', '--name', 'h1', '--state-dir', path.join(dir, 'agent'), '--controller', 'ab'.repeat(32), '--listen', '127.0.0.1:0'], { NOTIFY_SOCKET: path.join(dir, 'notify.sock'), GVFS_RUNTIME_DIR: path.join(dir, 'run') });
    daemons.push(agent);
    assert.match(await sock.next(/READY=1/), /^READY=1\nSTATUS=serving$/);
    // Ready means listening: the API answers (a TLS handshake gets as far as asking for our certificate).
    assert.ok(agent.info.listening.port > 0);
    const { code } = await agent.terminate('SIGTERM');
    assert.equal(code, 0, agent.stderr());
    assert.match(await sock.next(/STOPPING=1/), /STOPPING=1/);
    assert.equal(sock.messages.filter((m) => m.includes('READY=1')).length, 1);
  });

  test('abstract-namespace sockets (@name) work; no listener is an error with its code; bad paths are refused', { skip }, async () => {
    const name = `@gvfs-test-${process.pid}-${Date.now()}`;
    const sock = await notifySocket(name);
    sockets.push(sock);
    sdNotify(name, 'STATUS=hello');
    assert.equal(await sock.next(/hello/), 'STATUS=hello');
    assert.throws(() => sdNotify(path.join(dir, 'nobody.sock'), 'READY=1'), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    assert.throws(() => sdNotify('relative.sock', 'READY=1'), /absolute path/);
    assert.throws(() => sdNotify(`/${'x'.repeat(200)}`, 'READY=1'), /fits sun_path/);
  });

  test('without NOTIFY_SOCKET nothing is sent and nothing is said', async () => {
    const d = await gvfsDaemon(['serve', '--export', dir, '--listen', '127.0.0.1:0', '--state-dir', path.join(os.tmpdir(), `gvfs-notify-st-${process.pid}`)], { NOTIFY_SOCKET: '', GVFS_RUNTIME_DIR: path.join(dir, 'run') });
    daemons.push(d);
    await d.terminate();
    assert.doesNotMatch(d.stderr(), /notify/);
  });

  test('systemd-analyze verify accepts the units', { skip: requirePrereq(hasFile('/usr/bin/systemd-analyze', 'systemd')) }, async () => {
    // The units run `gvfs` from systemd's PATH and name man:gvfs(1): give verify both.
    const v = path.join(dir, 'verify');
    await fs.mkdir(path.join(v, 'bin'), { recursive: true });
    await fs.mkdir(path.join(v, 'man', 'man1'), { recursive: true });
    await fs.writeFile(path.join(v, 'bin', 'gvfs'), '#!/bin/sh\n', { mode: 0o755 });
    await fs.copyFile(path.join(ROOT, 'dist', 'man', 'gvfs.1'), path.join(v, 'man', 'man1', 'gvfs.1')).catch(async () => {
      await fs.writeFile(path.join(v, 'man', 'man1', 'gvfs.1'), (await run(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'man'])).stdout);
    });
    const units = ['gvfs-agent.service', 'gvfs-sessiond.service', 'gvfs-mount@.service'];
    for (const u of units) {
      const text = await fs.readFile(path.join(ROOT, 'contrib', 'systemd', u), 'utf8');
      assert.match(text, /^Type=notify$/m, `${u}: Type=notify`);
      assert.match(text, /^NoNewPrivileges=yes$/m, `${u}: NoNewPrivileges`);
      await fs.writeFile(path.join(v, u === 'gvfs-mount@.service' ? 'gvfs-mount@mnt-x.service' : u), text.replace(/^(Exec\w+=-?)gvfs /gm, `$1${path.join(v, 'bin', 'gvfs')} `));
    }
    const r = await run('systemd-analyze', ['verify', ...['gvfs-agent.service', 'gvfs-sessiond.service', 'gvfs-mount@mnt-x.service'].map((u) => path.join(v, u))], { env: { ...process.env, MANPATH: path.join(v, 'man'), SYSTEMD_LOG_LEVEL: 'warning' } }).catch((e: { stderr: string; code: number }) => e);
    assert.equal(r.stderr.trim(), '', 'systemd-analyze verify complaints');
    // The mount and agent units must not get a private mount namespace: their FUSE mounts would be invisible to the host.
    for (const u of ['gvfs-agent.service', 'gvfs-mount@.service']) {
      const text = await fs.readFile(path.join(ROOT, 'contrib', 'systemd', u), 'utf8');
      assert.doesNotMatch(text, /^(ProtectSystem|ProtectHome|PrivateTmp|PrivateMounts|ReadOnlyPaths|ProtectKernelTunables)=/m, `${u} would mount in a private namespace`);
    }
  });
});
