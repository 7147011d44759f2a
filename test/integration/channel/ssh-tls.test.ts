import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { newSessionKey } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { makeSelfSignedCert, readTlsFiles } from '../../../src/channel/tls.js';
import { createProxyClient, type ProxyClient } from '../../../src/proxy/proxy-client.js';
import { SshTunnel } from '../../../src/channel/ssh.js';
import type { RpcError } from '../../../src/rpc/types.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import { defaultMap, startUpstream, type Upstream } from '../../helpers/chain.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';
import { startSshd, sshdSkip, type Sshd } from '../../helpers/sshd.js';

const run = promisify(execFile);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Proxy client → (SSH tunnel through OpenSSH | TLS 1.3) → proxy server → gvfs serve. */
describe('private channels', { timeout: 240_000 }, () => {
  let base: string;
  let up: Upstream;
  let ps: ProxyServer;
  let psPort: number;
  let tlsPs: ProxyServer;
  let tlsPort: number;
  let fingerprint: string;
  let sshd: Sshd | undefined;
  const key = newSessionKey('alice');

  before(async () => {
    base = await tempDir('gvfs-chan-');
    up = await startUpstream('gvfs', base);
    await fs.chmod(up.dir, 0o777);
    const mk = (tls?: Awaited<ReturnType<typeof readTlsFiles>>, sub = 'ps') =>
      createProxyServer({
        exports: [{ kind: 'upstream', url: { host: '127.0.0.1', port: up.port, mountPort: up.port, path: '/' } }],
        map: defaultMap(),
        sessions: new SessionRegistry([key]),
        tls,
        stateDir: path.join(base, sub),
      });
    ps = await mk();
    psPort = (await ps.listen(0, '127.0.0.1')).port; // plaintext, loopback only: reached through SSH
    const cert = await makeSelfSignedCert(path.join(base, 'tls'));
    fingerprint = cert.fingerprint;
    tlsPs = await mk(await readTlsFiles(cert.cert, cert.key), 'tls-ps');
    tlsPort = (await tlsPs.listen(0, '127.0.0.1')).port;
    if (!sshdSkip()) sshd = await startSshd(path.join(base, 'sshd'));
  });
  after(async () => {
    await ps.close();
    await tlsPs.close();
    await sshd?.stop();
    await up.stop();
    await fs.rm(base, { recursive: true, force: true });
  });

  async function through(pc: ProxyClient, f: (cl: RemoteNfs, root: Buffer, port: number) => Promise<void>): Promise<void> {
    const port = (await pc.server.listen(0, '127.0.0.1')).port;
    const cl = new RemoteNfs({ host: '127.0.0.1', port, timeoutMs: 30_000 });
    try {
      await f(cl, (await cl.mount('/', ROOT)).fh, port);
    } finally {
      await cl.close();
      await pc.close();
    }
  }

  test('SSH tunnel: libnfs copies through OpenSSH, byte-identical; a dropped tunnel reconnects', { skip: sshdSkip() }, async () => {
    const pc = createProxyClient({
      host: '127.0.0.1',
      port: psPort,
      key,
      ssh: { host: '127.0.0.1', port: sshd!.port, username: 'root', privateKeyFile: sshd!.userKey, knownHostsFile: sshd!.knownHosts },
    });
    await through(pc, async (cl, root, port) => {
      const data = randomBytes(3 * 1024 * 1024 + 5);
      await fs.mkdir(path.join(up.dir, 'ssh'), { mode: 0o777 });
      await fs.chmod(path.join(up.dir, 'ssh'), 0o777);
      const src = path.join(base, 'ssh-src');
      await fs.writeFile(src, data);
      await run('nfs-cp', [src, `nfs://127.0.0.1/ssh/f?version=3&nfsport=${port}&mountport=${port}`]);
      assert.equal(sha(await fs.readFile(path.join(up.dir, 'ssh/f'))), sha(data));
      pc.tunnel!.drop();
      const f = await cl.lookup(ROOT, (await cl.lookup(ROOT, root, 'ssh')).fh, 'f');
      assert.equal((await cl.read(ROOT, f.fh, 0, 16)).data.length, 16, 'works again after the tunnel dropped');
      assert.ok(pc.remote.stats.reconnects >= 1);
    });
  });

  test('SSH tunnel: a host key not in known_hosts is refused', { skip: sshdSkip() }, async () => {
    // known_hosts naming this host and port with another key (a fresh one: a man in the middle's).
    const other = path.join(base, 'other_host_key');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const wrongKnown = path.join(base, 'wrong_known_hosts');
    const otherPub = (await fs.readFile(`${other}.pub`, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
    await fs.writeFile(wrongKnown, `[127.0.0.1]:${sshd!.port} ${otherPub}\n`);
    const opts = { host: '127.0.0.1', port: sshd!.port, username: 'root', privateKeyFile: sshd!.userKey, target: { host: '127.0.0.1', port: psPort } };
    // The same tunnel with the right known_hosts gets through (so a refusal below is the host key's doing).
    const good = new SshTunnel({ ...opts, knownHostsFile: sshd!.knownHosts });
    try {
      (await good.dialer()()).destroy();
    } finally {
      good.close();
    }
    const bad = new SshTunnel({ ...opts, knownHostsFile: wrongKnown });
    try {
      await assert.rejects(
        bad.dialer()().then((ch) => ch.destroy()),
        (e: RpcError) => e.kind === 'auth_error' && /host key not in known_hosts/.test(e.message),
      );
    } finally {
      bad.close();
    }
    // And through a proxy client: the mount fails, and the proxy server behind the tunnel never saw a connection.
    const conns = ps.server.stats.connections;
    const pc = createProxyClient({ host: '127.0.0.1', port: psPort, key, timeoutMs: 10_000, ssh: { ...opts, knownHostsFile: wrongKnown } });
    let mounted = false;
    await assert.rejects(through(pc, async () => void (mounted = true)));
    assert.equal(mounted, false, 'nothing was mounted through a tunnel to an unknown host key');
    assert.equal(ps.server.stats.connections, conns, 'no connection reached the proxy server');
  });

  test('TLS 1.3 with the pinned fingerprint works; any other certificate is refused', async () => {
    await through(createProxyClient({ host: '127.0.0.1', port: tlsPort, key, tlsFingerprint: fingerprint }), async (cl, root) => {
      assert.ok((await cl.getattr(ROOT, root)).fileid > 0n);
    });
    const wrong = 'AA:'.repeat(31) + 'AA';
    const pc = createProxyClient({ host: '127.0.0.1', port: tlsPort, key, tlsFingerprint: wrong, timeoutMs: 5000 });
    const port = (await pc.server.listen(0, '127.0.0.1')).port;
    const cl = new RemoteNfs({ host: '127.0.0.1', port, timeoutMs: 10_000 });
    const t0 = Date.now();
    await assert.rejects(cl.mount('/', ROOT));
    assert.ok(Date.now() - t0 < 5000, 'refused at once, not retried until the deadline');
    await cl.close();
    await pc.close();
  });

  test('no plaintext fallback: a plain client gets nothing from a TLS server; off-loopback plaintext is refused', async () => {
    const pc = createProxyClient({ host: '127.0.0.1', port: tlsPort, key, timeoutMs: 3000 });
    const port = (await pc.server.listen(0, '127.0.0.1')).port;
    const cl = new RemoteNfs({ host: '127.0.0.1', port, timeoutMs: 10_000 });
    await assert.rejects(cl.mount('/', ROOT));
    await cl.close();
    await pc.close();
    assert.throws(() => createProxyClient({ host: '192.0.2.1', port: 1, key }), /refusing plaintext/);
    await assert.rejects(ps.listen(0, '0.0.0.0'), /refusing plaintext/);
  });
});
