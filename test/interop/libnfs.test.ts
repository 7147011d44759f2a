import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { startLocalServer, type LocalServer } from '../helpers/local-server.js';

const run = promisify(execFile);

/** An NFS client this project did not write (libnfs-utils) against `gvfs serve`. */
describe('libnfs interoperability', { timeout: 300_000 }, () => {
  let s: LocalServer;
  const url = (p: string) => `nfs://127.0.0.1${p}?version=3&nfsport=${s.port}&mountport=${s.port}`;
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  before(async () => {
    s = await startLocalServer();
    await fs.mkdir(path.join(s.exportDir, 'dir/sub'), { recursive: true });
    await fs.writeFile(path.join(s.exportDir, 'dir/hello.txt'), 'hello from gvfs\n');
    for (let i = 0; i < 700; i++) await fs.writeFile(path.join(s.exportDir, 'dir/sub', `f${i}`), String(i));
  });
  after(() => s.stop());

  test('nfs-ls lists directories, including one that needs many READDIRPLUS pages', async () => {
    const top = (await run('nfs-ls', [url('/dir/')])).stdout;
    assert.match(top, /hello\.txt/);
    assert.match(top, /^d.* sub$/m);
    const sub = (await run('nfs-ls', [url('/dir/sub/')])).stdout.trim().split('\n');
    const names = sub.map((l) => l.split(/\s+/).pop()).filter((n) => n !== '.' && n !== '..');
    assert.equal(names.length, 700);
  });

  test('nfs-cat reads a file', async () => {
    assert.equal((await run('nfs-cat', [url('/dir/hello.txt')])).stdout, 'hello from gvfs\n');
  });

  test('nfs-cp copies out and in, byte-identical (multi-MiB, odd size)', async () => {
    const data = randomBytes(9 * 1024 * 1024 + 12345);
    // (libnfs mounts "" for a file directly under a "/" export and then gives up: keep files in a directory)
    await fs.writeFile(path.join(s.exportDir, 'dir/blob'), data);
    const out = path.join(s.dir, 'out.bin');
    await run('nfs-cp', [url('/dir/blob'), out]);
    assert.equal(sha(await fs.readFile(out)), sha(data));
    const local = path.join(s.dir, 'in.bin');
    const data2 = randomBytes(5 * 1024 * 1024 + 7);
    await fs.writeFile(local, data2);
    await run('nfs-cp', [local, url('/dir/uploaded.bin')]);
    assert.equal(sha(await fs.readFile(path.join(s.exportDir, 'dir/uploaded.bin'))), sha(data2));
  });

  test('a missing path is an error from libnfs, not a hang', async () => {
    await assert.rejects(run('nfs-cat', [url('/dir/missing')], { timeout: 20_000 }), (e: { code?: number; killed?: boolean }) => !e.killed);
  });
});
