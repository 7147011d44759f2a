import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../../helpers/local-server.js';
import { gvfsDaemon, gvfsRun, type Daemon } from '../../helpers/cli-run.js';
import { sshdSkip, startSshd, type Sshd } from '../../helpers/sshd.js';

/**
 * A proxy client of the wrong channel kind (TLS at a plain proxy server,
 * plain at a TLS one, either at an SSH server, an SSH tunnel to a TLS port
 * or to something that is no SSH server) ends within seconds with exit
 * status 5 and names what is there, instead of retrying for ~52 s.
 * The right kinds still connect (the TLS server's first-byte check must
 * not break a real handshake).
 */
const BOUND_MS = 15_000; // "within seconds" on a loaded machine; the old behaviour took ~52 s

describe('wrong channel kind: named at once, exit status 5', { timeout: 300_000 }, () => {
  let base: string;
  let key: string;
  let fingerprint: string;
  let plain: Daemon;
  let tls: Daemon;
  let sshd: Sshd | undefined;

  before(async () => {
    base = await tempDir('gvfs-wrongchan-');
    const exp = path.join(base, 'export');
    await fs.mkdir(exp);
    key = path.join(base, 'alice.key');
    const uid = process.getuid!();
    const gid = process.getgid!();
    const k = await gvfsRun(['keygen', key, '--user', 'alice', '--account', `${uid}:${gid}`]);
    assert.equal(k.code, 0, k.stderr);
    const t = await gvfsRun(['tls-keygen', path.join(base, 'tls'), '--json']);
    assert.equal(t.code, 0, t.stderr);
    const tf = JSON.parse(t.stdout);
    fingerprint = tf.fingerprint;
    plain = await gvfsDaemon(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', key]);
    tls = await gvfsDaemon(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', key, '--tls-cert', tf.cert, '--tls-key', tf.key]);
    if (!sshdSkip()) sshd = await startSshd(path.join(base, 'sshd'));
  });
  after(async () => {
    plain?.kill();
    tls?.kill();
    await sshd?.stop();
    await fs.rm(base, { recursive: true, force: true });
  });

  const client = (port: number, extra: string[]) => gvfsRun(['proxy-client', '--server', `127.0.0.1:${port}`, '--key', key, '--listen', '127.0.0.1:0', ...extra], { timeoutMs: 90_000 });
  const via = (port: number) => ['--via', `ssh://root@127.0.0.1:${port}`, '--ssh-key', sshd!.userKey, '--known-hosts', sshd!.knownHosts];

  async function wrong(port: number, extra: string[], says: RegExp): Promise<void> {
    const r = await client(port, extra);
    assert.equal(r.code, 5, `exit ${r.code} after ${r.ms} ms:\n${r.stderr}`);
    assert.ok(r.ms < BOUND_MS, `took ${r.ms} ms`);
    assert.match(r.stderr, says);
  }

  /** The right kind: the proxy client starts (prints its JSON line) and stops cleanly. */
  async function right(args: string[]): Promise<void> {
    const d = await gvfsDaemon(['proxy-client', ...args, '--key', key, '--listen', '127.0.0.1:0']);
    try {
      assert.ok(d.info.listening.port > 0);
    } finally {
      const x = await d.terminate();
      assert.equal(x.code, 0, d.stderr());
    }
  }

  test('right kinds connect: plain to plain, TLS to TLS', async () => {
    await right(['--server', `127.0.0.1:${plain.info.listening.port}`]);
    await right(['--server', `127.0.0.1:${tls.info.listening.port}`, '--tls-fingerprint', fingerprint]);
  });

  test('TLS client at a plain proxy server', async () => {
    await wrong(plain.info.listening.port, ['--tls-fingerprint', fingerprint], /plain ONC RPC server, not TLS/);
  });

  test('plain client at a TLS proxy server', async () => {
    await wrong(tls.info.listening.port, [], /answered in TLS/);
  });

  test('TLS client at an SSH server', { skip: sshdSkip() }, async () => {
    await wrong(sshd!.port, ['--tls-fingerprint', fingerprint], /an SSH server, not a proxy server/);
  });

  test('plain client at an SSH server', { skip: sshdSkip() }, async () => {
    await wrong(sshd!.port, [], /answered in SSH/);
  });

  test('SSH tunnel: right to a plain proxy server; to a TLS proxy server is named', { skip: sshdSkip() }, async () => {
    await right(['--server', `127.0.0.1:${plain.info.listening.port}`, ...via(sshd!.port)]);
    await wrong(tls.info.listening.port, via(sshd!.port), /answered in TLS/);
  });

  test('SSH tunnel whose "SSH server" is a TLS or a plain proxy server', async () => {
    // No sshd needed: the SSH handshake fails at the proxy server's port, and the probe names what is there.
    const fake = { userKey: path.join(base, 'id_fake'), knownHosts: path.join(base, 'known_hosts_empty') };
    await promisify(execFile)('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', fake.userKey]);
    await fs.writeFile(fake.knownHosts, '');
    const v = (port: number) => ['--via', `ssh://root@127.0.0.1:${port}`, '--ssh-key', fake.userKey, '--known-hosts', fake.knownHosts];
    await wrong(1, [...v(tls.info.listening.port)], /the server there is a TLS server/);
    await wrong(1, [...v(plain.info.listening.port)], /plain ONC RPC server/);
  });
});
