import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { readKeyFile } from '../../../src/channel/session-key.js';
import { fingerprintOf, tlsDialer } from '../../../src/channel/tls.js';
import { tempDir } from '../../helpers/local-server.js';
import { gvfsArgv } from '../../../src/cli/self.js';

const run = promisify(execFile);
const gvfs = (...args: string[]) => run(process.execPath, gvfsArgv(args));

describe('gvfs keygen and gvfs tls-keygen', { timeout: 120_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('gvfs-keygen-');
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  test('keygen writes a fresh 256-bit key readable by its owner only, never over an existing file', async () => {
    const f = path.join(dir, 'a.key');
    const t0 = Date.now();
    const out = JSON.parse((await gvfs('keygen', '--user', 'alice', '--lifetime', '60', '--json', f)).stdout);
    assert.equal((await fs.stat(f)).mode & 0o777, 0o600);
    const k = await readKeyFile(f);
    assert.equal(k.id, out.id);
    assert.equal(k.user, 'alice');
    assert.equal(k.key.length, 32);
    const exp = k.expires!.getTime();
    assert.ok(exp >= t0 + 59_000 && exp <= Date.now() + 61_000, `expires ${k.expires!.toISOString()}`);
    const g = path.join(dir, 'b.key');
    await gvfs('keygen', '--user', 'alice', g);
    const k2 = await readKeyFile(g);
    assert.notEqual(k2.id, k.id);
    assert.ok(!k2.key.equals(k.key), 'two keys differ');
    const before = await fs.readFile(f);
    await assert.rejects(gvfs('keygen', '--user', 'bob', f), 'an existing key file is not overwritten');
    assert.ok((await fs.readFile(f)).equals(before));
  });

  test('tls-keygen makes a certificate whose printed fingerprint is the one a pinned client accepts', async () => {
    const d = path.join(dir, 'tls');
    const out = JSON.parse((await gvfs('tls-keygen', '--json', d)).stdout);
    assert.equal((await fs.stat(out.key)).mode & 0o777, 0o600, 'the private key is readable by its owner only');
    const cert = await fs.readFile(out.cert);
    assert.equal(out.fingerprint, fingerprintOf(cert));
    const server = tls.createServer({ cert, key: await fs.readFile(out.key), minVersion: 'TLSv1.3' }, (s) => s.end('hello'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    try {
      const s = await tlsDialer('127.0.0.1', port, out.fingerprint)();
      s.destroy();
      const other = JSON.parse((await gvfs('tls-keygen', '--json', path.join(dir, 'tls2'))).stdout);
      assert.notEqual(other.fingerprint, out.fingerprint);
      await assert.rejects(tlsDialer('127.0.0.1', port, other.fingerprint)(), 'another certificate\'s fingerprint is refused');
    } finally {
      server.close();
    }
  });
});
