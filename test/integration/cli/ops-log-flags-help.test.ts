import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { buildProgram } from '../../../src/cli/program.js';
import { commandTree, flatten } from '../../../src/cli/command-tree.js';
import { gvfsRun } from '../../helpers/cli-run.js';

const run = promisify(execFile);

async function complete(script: string, words: string[]): Promise<string[]> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-compl-log-'));
  try {
    await fs.writeFile(path.join(dir, 'c.bash'), script);
    const arr = words.map((w) => `'${w}'`).join(' ');
    const { stdout } = await run('bash', ['-c', `source ${dir}/c.bash; COMP_WORDS=(${arr}); COMP_CWORD=${words.length - 1}; _gvfs; printf '%s\\n' "\${COMPREPLY[@]}"`]);
    return stdout.split('\n').filter(Boolean);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * Issue 23: -v / -vv / --log-level are part of the command tree (program.ts),
 * not added by main.ts after it is built, so --help, `gvfs man` and
 * `gvfs completion` all show them on every command.
 */
describe('log flags in --help, man and completion', { timeout: 120_000 }, () => {
  test('every command that runs (each leaf of the tree) has -v/--verbose and --log-level', async () => {
    const leaves = flatten(commandTree(await buildProgram())).filter((n) => !n.children.length);
    assert.ok(leaves.length > 25, `${leaves.length} leaves`);
    for (const n of leaves) {
      const longs = n.options.map((o) => o.long);
      assert.ok(longs.includes('--verbose') && longs.includes('--log-level'), `${n.path.join(' ')}: ${longs.join(' ')}`);
      assert.ok(n.options.some((o) => o.short === '-v'), `${n.path.join(' ')}: no -v`);
    }
  });

  test('--help, the man page and bash completion show them', async () => {
    const help = await gvfsRun(['serve', '--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /-v, --verbose/);
    assert.match(help.stdout, /--log-level <level>/);
    const man = await gvfsRun(['man']);
    assert.equal(man.code, 0, man.stderr);
    for (const cmd of ['serve', 'proxy-client', 'agent', 'vm clone']) {
      const sec = man.stdout.split(`.SS gvfs ${cmd.replace(/-/g, '\\-')}\n`)[1]?.split('.SS ')[0] ?? '';
      assert.match(sec, /\\-\\-log\\-level/, `man: gvfs ${cmd} lacks --log-level`);
      assert.match(sec, /\\-\\-verbose/, `man: gvfs ${cmd} lacks --verbose`);
    }
    const script = (await gvfsRun(['completion', 'bash'])).stdout;
    assert.ok((await complete(script, ['gvfs', 'mount', '--log'])).includes('--log-level'));
    assert.ok((await complete(script, ['gvfs', 'vm', 'clone', '--verb'])).includes('--verbose'));
    // --log-level takes a value: after it, no command or flag is offered.
    assert.deepEqual(await complete(script, ['gvfs', 'serve', '--log-level', '']), []);
  });

  test('the flags still act: a bad --log-level is a usage error on a nested command', async () => {
    // Given to `show`, not swallowed by the group `meta` (which would leave the level unchecked and unused).
    const r = await gvfsRun(['meta', 'show', '--log-level', 'chatty', '/nonexistent']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--log-level: one of/);
  });
});
