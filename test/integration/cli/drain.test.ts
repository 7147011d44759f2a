import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../../helpers/local-server.js';
import { gvfsDaemon, gvfsRun, type Daemon } from '../../helpers/cli-run.js';
import { sshdSkip, startSshd, type Sshd } from '../../helpers/sshd.js';

/**
 * Every daemon exits promptly on SIGTERM while clients are connected, over
 * each channel it serves: plain TCP, TLS (a TLS proxy server with a proxy
 * client connected used to stay 30+ s), an SSH tunnel, HTTPS keep-alive and
 * half-sent requests. The drain bound is raised to 60 s here, so passing
 * means the close itself finished (status 0), not that the bound cut it.
 */
const ENV = { GVFS_DRAIN_MS: '60000' };
const PROMPT_MS = 8_000;

describe('SIGTERM with clients connected: every daemon exits promptly', { timeout: 300_000 }, () => {
  let base: string;
  let exp: string;
  let key: string;
  let tlsFiles: { cert: string; key: string; fingerprint: string };
  let sshd: Sshd | undefined;
  const daemons: Daemon[] = [];
  const sockets: net.Socket[] = [];

  before(async () => {
    base = await tempDir('gvfs-drain-');
    exp = path.join(base, 'export');
    await fs.mkdir(exp);
    key = path.join(base, 'alice.key');
    assert.equal((await gvfsRun(['keygen', key, '--user', 'alice', '--account', `${process.getuid!()}:${process.getgid!()}`])).code, 0);
    const t = await gvfsRun(['tls-keygen', path.join(base, 'tls'), '--json']);
    tlsFiles = JSON.parse(t.stdout);
    if (!sshdSkip()) sshd = await startSshd(path.join(base, 'sshd'));
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    for (const d of daemons) d.kill();
    await sshd?.stop();
    await fs.rm(base, { recursive: true, force: true });
  });

  const start = async (args: string[]) => {
    const d = await gvfsDaemon(args, ENV);
    daemons.push(d);
    return d;
  };
  /** A raw TCP connection held open (optionally after sending some bytes). */
  const hold = async (port: number, bytes?: Buffer) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    sockets.push(s);
    await new Promise((r) => s.once('connect', r));
    if (bytes) s.write(bytes);
    return s;
  };
  async function stopsPromptly(d: Daemon, what: string): Promise<void> {
    const x = await d.terminate();
    assert.equal(x.code, 0, `${what}: exit ${x.code ?? x.signal} after ${x.ms} ms\n${d.stderr().slice(-3000)}`);
    assert.ok(x.ms < PROMPT_MS, `${what}: took ${x.ms} ms to exit`);
  }
  // A record mark announcing 1000 bytes, then only 10 of them: a call half sent.
  const halfRecord = Buffer.concat([Buffer.from([0x80, 0, 0x03, 0xe8]), Buffer.alloc(10)]);

  test('gvfs serve (plain): an idle connection and a half-sent record', async () => {
    const d = await start(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(base, 'serve-state')]);
    await hold(d.info.listening.port);
    await hold(d.info.listening.port, halfRecord);
    await stopsPromptly(d, 'serve');
  });

  for (const kind of ['plain', 'TLS'] as const) {
    test(`gvfs proxy-server (${kind}) with a proxy client connected and a connection that never proves`, async () => {
      const tlsArgs = kind === 'TLS' ? ['--tls-cert', tlsFiles.cert, '--tls-key', tlsFiles.key] : [];
      const ps = await start(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', key, '--state-dir', path.join(base, `ps-${kind}`), ...tlsArgs]);
      const port = ps.info.listening.port;
      const pc = await start(['proxy-client', '--server', `127.0.0.1:${port}`, '--key', key, '--listen', '127.0.0.1:0', ...(kind === 'TLS' ? ['--tls-fingerprint', tlsFiles.fingerprint] : [])]);
      // The client's link is open and proven (the proxy client checks it before printing its address); and one that says nothing.
      await hold(port);
      await stopsPromptly(ps, `proxy-server ${kind}`);
      await stopsPromptly(pc, `proxy-client (${kind}) whose server went away`);
    });
  }

  test('gvfs proxy-client (plain link) with NFS clients connected, one mid-record', async () => {
    const ps = await start(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', key, '--state-dir', path.join(base, 'ps-pc')]);
    const pc = await start(['proxy-client', '--server', `127.0.0.1:${ps.info.listening.port}`, '--key', key, '--listen', '127.0.0.1:0']);
    await hold(pc.info.listening.port);
    await hold(pc.info.listening.port, halfRecord);
    await stopsPromptly(pc, 'proxy-client');
    await stopsPromptly(ps, 'proxy-server');
  });

  test('gvfs proxy-client through an SSH tunnel, NFS client connected', { skip: sshdSkip() }, async () => {
    const ps = await start(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', key, '--state-dir', path.join(base, 'ps-ssh')]);
    const pc = await start(['proxy-client', '--server', `127.0.0.1:${ps.info.listening.port}`, '--key', key, '--listen', '127.0.0.1:0', '--via', `ssh://root@127.0.0.1:${sshd!.port}`, '--ssh-key', sshd!.userKey, '--known-hosts', sshd!.knownHosts]);
    assert.equal(pc.info.channel, 'ssh');
    await hold(pc.info.listening.port);
    await stopsPromptly(pc, 'proxy-client over SSH');
    await stopsPromptly(ps, 'proxy-server behind SSH');
  });

  /** An HTTPS keep-alive connection left idle after one request, a TLS connection with half a request, and a bare TCP one. */
  async function httpsClients(port: number, cert?: { cert: Buffer; key: Buffer }): Promise<void> {
    const agent = new https.Agent({ keepAlive: true, rejectUnauthorized: false, ...cert });
    await new Promise<void>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: '/openapi.json', agent }, (res) => {
        res.resume();
        res.once('end', () => resolve());
      });
      req.once('error', reject);
      req.end();
    });
    const t = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...cert });
    t.on('error', () => undefined);
    await new Promise((r) => t.once('secureConnect', r));
    t.write('GET /sessions HTTP/1.1\r\nHost: x\r\n'); // headers never finished
    sockets.push(t as unknown as net.Socket);
    await hold(port);
  }

  test('gvfs sessiond: keep-alive, half-sent request, bare TCP', async () => {
    const users = path.join(base, 'users.json');
    assert.equal((await gvfsRun(['sessiond', 'add-user', users, 'alice'])).code, 0);
    const sd = await start(['sessiond', '--state-dir', path.join(base, 'sessiond'), '--users', users, '--listen', '127.0.0.1:0']);
    await httpsClients(sd.info.listening.port);
    await stopsPromptly(sd, 'sessiond');
  });

  test('gvfs agent: keep-alive (its controller), half-sent request, bare TCP', async () => {
    const ag = await start(['agent', '--name', 'h', '--state-dir', path.join(base, 'agent'), '--controller', tlsFiles.fingerprint, '--listen', '127.0.0.1:0']);
    await httpsClients(ag.info.listening.port, { cert: await fs.readFile(tlsFiles.cert), key: await fs.readFile(tlsFiles.key) });
    await stopsPromptly(ag, 'agent');
  });
});
