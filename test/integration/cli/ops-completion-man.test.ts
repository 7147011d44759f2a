import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { Command } from 'commander';
import { buildProgram } from '../../../src/cli/program.js';
import { commandTree, flatten } from '../../../src/cli/command-tree.js';
import { bashScript } from '../../../src/cli/completion.js';
import { manPage, roff } from '../../../src/cli/man.js';
import { gvfsRun } from '../../helpers/cli-run.js';
import { hasFile, requirePrereq } from '../../helpers/prereq.js';

const run = promisify(execFile);

/** What bash completes for the words typed so far (the last one being completed), with the generated script sourced. */
async function complete(script: string, words: string[]): Promise<string[]> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-compl-'));
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
 * Completion and the man page come from commander's command tree: every
 * command and subcommand is in both, and a command added to the tree shows
 * up without touching either generator.
 */
describe('gvfs completion and gvfs man', { timeout: 120_000 }, () => {
  test('bash completion: every command path completes, options and choices too', async () => {
    const r = await gvfsRun(['completion', 'bash']);
    assert.equal(r.code, 0, r.stderr);
    const script = r.stdout;
    const nodes = flatten(commandTree(await buildProgram()));
    assert.ok(nodes.length > 30, `only ${nodes.length} commands in the tree`);
    for (const n of nodes.filter((x) => x.children.length)) {
      // Typing the parent's path and a space offers every child.
      const got = await complete(script, [...n.path, '']);
      for (const c of n.children) assert.ok(got.includes(c.cmd.name()), `"${n.path.join(' ')} " does not offer ${c.cmd.name()} (got ${got.join(' ')})`);
    }
    assert.deepEqual(await complete(script, ['gvfs', 'vm', 'cl']), ['clone']);
    assert.ok((await complete(script, ['gvfs', 'proxy-client', '--cache-'])).includes('--cache-size'));
    assert.deepEqual((await complete(script, ['gvfs', 'serve', '--squash', ''])).sort(), ['all', 'none', 'root']);
    // After an option that takes a value, nothing is offered (bash falls back to file names).
    assert.deepEqual(await complete(script, ['gvfs', 'mount', '--cache-dir', '']), []);
    assert.deepEqual((await complete(script, ['gvfs', 'completion', ''])).filter((w) => !w.startsWith('-')).sort(), ['bash', 'zsh']);
  });

  test('zsh completion names every command; unknown shells are a usage error', async () => {
    const r = await gvfsRun(['completion', 'zsh']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^#compdef gvfs/);
    for (const n of flatten(commandTree(await buildProgram())).slice(1)) assert.ok(r.stdout.includes(`(${n.cmd.name()})`), `zsh script misses ${n.path.join(' ')}`);
    const bad = await gvfsRun(['completion', 'fish']);
    assert.equal(bad.code, 2);
  });

  test('a command added to the tree appears in completion and the man page with no other edit', async () => {
    const p = await buildProgram();
    p.commands.find((c) => c.name() === 'vm')!.addCommand(new Command('teleport').description('a brand new command').option('--to <host>', 'where'));
    const tree = commandTree(p);
    assert.deepEqual(await complete(bashScript(tree), ['gvfs', 'vm', 'tele']), ['teleport']);
    assert.ok((await complete(bashScript(tree), ['gvfs', 'vm', 'teleport', '--'])).includes('--to'));
    assert.match(manPage(tree, '0'), /^\.SS gvfs vm teleport$/m);
  });

  test('the man page has a section for every command and every option, and groff reads it without warnings', async () => {
    const r = await gvfsRun(['man']);
    assert.equal(r.code, 0, r.stderr);
    const page = r.stdout;
    assert.match(page, /^\.TH GVFS 1 /m);
    for (const n of flatten(commandTree(await buildProgram())).slice(1)) {
      assert.ok(page.split('\n').includes(`.SS ${roff(n.path.join(' '))}`), `no section for ${n.path.join(' ')}`);
      for (const o of n.options) assert.ok(page.includes(o.long!.replace(/-/g, '\\-')), `${n.path.join(' ')}: ${o.long} missing`);
    }
    assert.match(page, /^\.SH EXIT STATUS$/m);
    const skip = requirePrereq(hasFile('/usr/bin/groff', 'groff'));
    if (skip) return;
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-man-'));
    try {
      await fs.writeFile(path.join(dir, 'gvfs.1'), page);
      const g = await run('groff', ['-man', '-ww', '-z', path.join(dir, 'gvfs.1')]);
      assert.equal(g.stderr.trim(), '', 'groff warnings');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
