import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeSelfSignedCert } from '../../src/channel/tls.js';
import { tempDir } from '../helpers/local-server.js';
import { runGvfs, spawnGvfs, startProxyServer, type GvfsProcess } from '../helpers/gvfs-proc.js';
import { keyFile } from '../helpers/key-file.js';

/** A wrong key or TLS pin is named on both sides, and the client command exits non-zero. */
describe('clear refusals: wrong session key, wrong TLS pin', { timeout: 240_000 }, () => {
  let dir: string;
  let plain: GvfsProcess;
  let tlsPs: GvfsProcess;
  let wrongKey: string;
  let goodKey: string;
  let pin: string;
  let otherPin: string;

  before(async () => {
    dir = await tempDir('gvfs-sec-refusal-');
    await fs.mkdir(path.join(dir, 'export'));
    await fs.mkdir(path.join(dir, 'mnt'));
    const good = await keyFile(dir, 'alice.key');
    goodKey = good.file;
    // Same session id, another secret: the proof is checked and does not match.
    wrongKey = (await keyFile(dir, 'wrong.key', 'alice', { ...good.key, key: randomBytes(32) })).file;
    const cert = await makeSelfSignedCert(path.join(dir, 'tls'));
    pin = cert.fingerprint;
    otherPin = (await makeSelfSignedCert(path.join(dir, 'tls-other'))).fingerprint;
    const common = ['--export', path.join(dir, 'export'), '--key', good.file];
    plain = await startProxyServer([...common, '--state-dir', path.join(dir, 'state1')]);
    tlsPs = await startProxyServer([...common, '--state-dir', path.join(dir, 'state2'), '--tls-cert', cert.cert, '--tls-key', cert.key]);
  });
  after(async () => {
    await plain?.stop();
    await tlsPs?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('proxy-client with a wrong key: exits non-zero, "session key refused by server"; the server logs peer and reason', async () => {
    const r = await runGvfs(['proxy-client', '--server', `127.0.0.1:${plain.port}`, '--key', wrongKey], 30_000);
    assert.equal(r.signal, null, `not exited by itself; stderr:\n${r.stderr}`);
    assert.notEqual(r.code, 0);
    // A daemon's fatal error is a JSON log line too (issue 23: no plain text mixed into its log).
    assert.match(r.stderr, /"msg":"gvfs proxy-client: session key refused by server/);
    const l = await plain.waitLog((x) => x.msg === 'session proof refused');
    assert.equal(l.reason, 'proof does not match the session key');
    assert.equal(l.peer?.address, '127.0.0.1');
    assert.equal(typeof l.peer?.port, 'number');
  });

  test('proxy-client with a wrong TLS pin: exits non-zero naming both fingerprints; the server logs the failed handshake', async () => {
    const r = await runGvfs(['proxy-client', '--server', `127.0.0.1:${tlsPs.port}`, '--key', goodKey, '--tls-fingerprint', otherPin], 30_000);
    assert.equal(r.signal, null, `not exited by itself; stderr:\n${r.stderr}`);
    assert.notEqual(r.code, 0);
    assert.ok(r.stderr.includes(`TLS certificate fingerprint mismatch: expected ${otherPin} got ${pin}`), r.stderr);
    // Depending on timing the client closes during or just after the server's side of the handshake; either way it is logged with the peer.
    const l = await tlsPs.waitLog((x) => x.msg === 'TLS handshake failed: closing connection' || x.msg === 'connection closed by the peer before it was proven');
    assert.equal(l.peer?.address, '127.0.0.1');
    assert.match(String(l.reason ?? l.stage), /TLS|certificate/);
  });

  test('the right key and pin still work (the refusals are not a broken server)', async () => {
    const c = await spawnGvfs(['proxy-client', '--server', `127.0.0.1:${tlsPs.port}`, '--key', goodKey, '--tls-fingerprint', pin]);
    try {
      assert.equal(c.info.channel, 'tls');
    } finally {
      await c.stop();
    }
  });

  test('gvfs mount (detached) with a wrong key exits non-zero with the reason', async () => {
    const r = await runGvfs(['mount', '--server', `127.0.0.1:${plain.port}`, '--key', wrongKey, '--log', path.join(dir, 'mount1.log'), path.join(dir, 'mnt')], 90_000);
    assert.equal(r.signal, null, `not exited by itself; stderr:\n${r.stderr}`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /session key refused by server/);
  });

  test('gvfs mount --foreground with a wrong TLS pin exits non-zero with the reason', async () => {
    const r = await runGvfs(['mount', '--foreground', '--server', `127.0.0.1:${tlsPs.port}`, '--key', goodKey, '--tls-fingerprint', otherPin, path.join(dir, 'mnt')], 90_000);
    assert.equal(r.signal, null, `not exited by itself; stderr:\n${r.stderr}`);
    assert.notEqual(r.code, 0);
    assert.ok(r.stderr.includes(`TLS certificate fingerprint mismatch: expected ${otherPin} got ${pin}`), r.stderr);
  });
});
