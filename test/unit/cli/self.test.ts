import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { GVFS_CLI, gvfsArgsOf, gvfsArgv, NODE_FLAGS, scriptArgsOf } from '../../../src/cli/self.js';

const run = promisify(execFile);

test('the gvfs command\'s #! line carries exactly the flags gvfs processes start others with', () => {
  const first = readFileSync(GVFS_CLI, 'utf8').split('\n')[0];
  assert.equal(first, `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`);
  assert.deepEqual(gvfsArgv(['version']), [...NODE_FLAGS, GVFS_CLI, 'version']);
});

test('every flag is one node accepts: a gvfs process started with them runs', async () => {
  const { stdout } = await run(process.execPath, gvfsArgv(['version', '--json']));
  assert.equal(typeof JSON.parse(stdout).version, 'string');
});

test('gvfsArgsOf: a gvfs process\'s own arguments, whatever node flags come first; nothing for another program', () => {
  assert.deepEqual(gvfsArgsOf(['/usr/bin/node', ...gvfsArgv(['mount', '--cache-dir', '/c', '/m'])]), ['mount', '--cache-dir', '/c', '/m']);
  assert.deepEqual(gvfsArgsOf(['/usr/bin/node', '/opt/gvfs/dist/src/cli/main.js', 'serve']), ['serve']);
  assert.deepEqual(gvfsArgsOf(['node', '--inspect', '/usr/local/bin/gvfs', 'agent', '--json']), ['agent', '--json']);
  assert.equal(gvfsArgsOf(['/usr/bin/qemu-system-x86_64', '-m', '256']), undefined);
  assert.equal(gvfsArgsOf(['/usr/bin/node', '-e', 'main.js']), undefined);
  // Another node program whose arguments name a gvfs-looking path is not gvfs.
  assert.equal(gvfsArgsOf(['/usr/bin/node', '/work/dist/bench/main.js', '/tmp/x/gvfs', 'mount']), undefined);
  assert.equal(gvfsArgsOf(['/usr/bin/sshfs', 'root@h:/e', '/tmp/b/gvfs']), undefined);
});

test('scriptArgsOf: the script node runs and what follows it, past node\'s flags', () => {
  assert.deepEqual(scriptArgsOf(['/usr/bin/node', '--max-semi-space-size=2', '/tmp/stray.js', 'proxy-server', '--json']), { script: '/tmp/stray.js', args: ['proxy-server', '--json'] });
  assert.equal(scriptArgsOf(['/usr/bin/node', '--version']), undefined);
});
