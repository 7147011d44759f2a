import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../helpers/local-server.js';
import { gvfsArgv } from '../../src/cli/self.js';

const run = promisify(execFile);

/**
 * Issue 14, item 9: a detached `gvfs mount` used to append its log to
 * /tmp/gvfs-mount-<pid>.log, following a symbolic link planted there, and
 * print the tail of whatever it pointed to. The shell below plants the link
 * under its own pid, then execs gvfs mount (same pid), as an attacker who
 * guesses the next pid would.
 */
describe('security: a detached mount follows no symlink planted for its log', { timeout: 120_000 }, () => {
  let base: string;
  let target: string;
  const SECRET = 'root-only secret line\n';

  before(async () => {
    base = await tempDir('gvfs-sec-log-');
    target = path.join(base, 'root-only.txt');
    await fs.writeFile(target, SECRET, { mode: 0o600 });
  });
  after(async () => {
    if (base) await fs.rm(base, { recursive: true, force: true });
  });

  const mountWithPlantedLink = async (extra: string[]) => {
    // A mount that fails at once (nothing listens on port 1), after its log file is open.
    const mnt = path.join(base, 'mnt');
    await fs.mkdir(mnt, { recursive: true });
    const script = `ln -s "$1" "${os.tmpdir()}/gvfs-mount-$$.log" && echo "$$" >&2 && shift && exec "$@"`;
    const r = await run('sh', ['-c', script, 'sh', target, process.execPath, ...gvfsArgv(['mount', '--server', 'nfs://127.0.0.1:1/x', '--timeout', '2000', ...extra, mnt])], { timeout: 60_000 }).then(
      () => assert.fail('the mount cannot succeed'),
      (e: { stderr: string; stdout: string; code: number }) => e,
    );
    const pid = Number(r.stderr.split('\n')[0]);
    return { ...r, pid, planted: path.join(os.tmpdir(), `gvfs-mount-${pid}.log`) };
  };

  test('the planted symlink is not followed: the target is untouched and its content not shown', async () => {
    const before = await fs.stat(target);
    const r = await mountWithPlantedLink([]);
    try {
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /mount failed/);
      assert.equal(await fs.readFile(target, 'utf8'), SECRET, 'the target was not written');
      assert.equal((await fs.stat(target)).mtimeMs, before.mtimeMs);
      assert.ok(!r.stderr.includes('root-only secret'), 'the target was not shown');
      assert.equal(await fs.readlink(r.planted), target, 'the planted link is left alone');
      // The log went to a private place: a new owner-only file in an owner-only directory.
      // The message may come as a JSON log line (newlines escaped): the path ends at the first colon.
      const m = /mount failed \(exit \d+\); ([^\s:]+):/.exec(r.stderr);
      assert.ok(m, r.stderr);
      const logFile = m[1];
      assert.ok(!logFile.startsWith(os.tmpdir() + '/'), `log in ${logFile}`);
      const st = await fs.lstat(logFile);
      assert.ok(st.isFile());
      assert.equal(st.mode & 0o777, 0o600);
      const dst = await fs.lstat(path.dirname(logFile));
      assert.ok(dst.isDirectory() && !dst.isSymbolicLink());
      assert.equal(dst.mode & 0o077, 0, 'the log directory is owner-only');
      assert.equal(dst.uid, process.getuid!());
      assert.match(await fs.readFile(logFile, 'utf8'), /127\.0\.0\.1:1|ECONNREFUSED|connect/i, 'the log holds the mount\'s own error');
      await fs.rm(logFile);
    } finally {
      await fs.rm(r.planted, { force: true });
    }
  });

  test('--log naming a symbolic link is refused', async () => {
    const link = path.join(base, 'link.log');
    await fs.symlink(target, link);
    const r = await run(process.execPath, gvfsArgv(['mount', '--server', 'nfs://127.0.0.1:1/x', '--log', link, path.join(base, 'mnt')]), { timeout: 60_000 }).then(
      () => assert.fail('must fail'),
      (e: { stderr: string; code: number }) => e,
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ELOOP|symbolic link/i);
    assert.equal(await fs.readFile(target, 'utf8'), SECRET);
  });
});
