import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { tempDir } from '../helpers/local-server.js';
import { hasFile, requirePrereq } from '../helpers/prereq.js';

/** The checkout (dist/test/integration → three up). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The shell commands between <!-- quickstart --> and <!-- /quickstart --> in README.md, fences removed. */
async function quickstartScript(): Promise<string> {
  const readme = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8');
  const m = /<!-- quickstart -->\s*```sh\n([\s\S]*?)```\s*<!-- \/quickstart -->/.exec(readme);
  assert.ok(m, 'README.md has a ```sh block between <!-- quickstart --> and <!-- /quickstart -->');
  return m[1];
}

/**
 * The README's hand-made session, run as written (bash -e, in an empty
 * directory, gvfs on the PATH linked as the build step does): a
 * TLS proxy server and a write-back proxy client on loopback, libnfs's
 * tools through them, a flush, and both stopped by SIGTERM.
 */
describe('README quickstart', { skip: requirePrereq(hasFile('/usr/bin/nfs-ls', 'libnfs-utils'), hasFile('/usr/bin/nfs-cp', 'libnfs-utils')), timeout: 240_000 }, () => {
  let dir: string | undefined;
  after(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  test('runs literally and does what it says', async () => {
    dir = await tempDir('gvfs-quickstart-');
    const script = await quickstartScript();
    // The build step's link: gvfs on the PATH is this build's main.js, run directly (npm run build made it executable).
    const bin = path.join(dir, 'bin');
    await fs.mkdir(bin);
    await fs.symlink(path.join(ROOT, 'dist', 'src', 'cli', 'main.js'), path.join(bin, 'gvfs'));
    const work = path.join(dir, 'work');
    await fs.mkdir(work);
    // Its own process group, so a failure midway leaves no proxy behind.
    const sh = spawn('bash', ['-euo', 'pipefail', '-c', script], {
      cwd: work,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, GVFS_LOG_LEVEL: 'warn' },
    });
    let out = '';
    let err = '';
    sh.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    sh.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const killer = setTimeout(() => process.kill(-sh.pid!, 'SIGKILL'), 180_000);
    const code = await new Promise<number | null>((r) => sh.once('close', (c) => r(c)));
    clearTimeout(killer);
    try {
      process.kill(-sh.pid!, 'SIGKILL');
    } catch {
      /* the group is gone: nothing left running */
    }
    assert.equal(code, 0, `the quickstart failed (exit ${code}):\n--- stdout\n${out}\n--- stderr\n${err.slice(-6000)}`);
    assert.match(out, /hello\.txt/, 'nfs-ls lists the export');
    assert.match(out, /hello from the state server/, 'nfs-cat reads through both proxies');
    assert.match(out, /written on the compute server/, 'the write reached the state server after gvfs flush');
    assert.equal(await fs.readFile(path.join(work, 'export', 'note.txt'), 'utf8'), 'written on the compute server\n');
  });
});
