import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
// dist/test/unit/bench → the checkout's root (scripts/ is not compiled).
const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
const SCRIPT = path.join(ROOT, 'scripts', 'check-readme-figures.mjs');

/** Exit code and output of the checker. */
async function check(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, [SCRIPT, ...args], { timeout: 60_000 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

describe('check-readme-figures', { timeout: 120_000 }, () => {
  test('every figure the README quotes is in the committed results file its block names', async () => {
    const r = await check([]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /\d+ figures in [1-9]\d* blocks/);
  });

  test('the real README with one figure changed fails, naming it', async () => {
    const readme = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8');
    assert.ok(readme.includes('took 4.45 s'), 'the README quotes the cold-clone figure this test alters');
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-figures-'));
    try {
      const f = path.join(dir, 'README.md');
      await fs.writeFile(f, readme.replace('took 4.45 s', 'took 7.77 s'));
      const r = await check(['--readme', f]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /figure 7\.77 is in none of/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  describe('in a scratch repository', () => {
    let repo: string;
    let added: string;
    const git = (...a: string[]) => run('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...a], { cwd: repo });
    const result = (gitState: object | undefined) =>
      JSON.stringify({
        date: '2026-01-01T00:00:00.000Z',
        ...(gitState ? { git: gitState } : {}),
        settings: { runs: 3 },
        results: [{ suite: 's', baseline: 'b', workloads: [{ name: 'w', unit: 'MiB/s', better: 'higher', systems: { a: { median: 358.517, min: 350, max: 360, runs: [350, 358.517, 360] }, b: { median: 2535.778, min: 2500, max: 2600, runs: [2500, 2535.778, 2600] } } }], notes: ['link 23.8 MiB/s'] }],
      });
    const readme = (body: string, files = 'r.json') => `# x\n\n<!-- figures: ${files} -->\n${body}\n<!-- /figures -->\n`;
    const checkWith = async (text: string) => {
      await fs.writeFile(path.join(repo, 'README.md'), text);
      return check(['--root', repo]);
    };

    before(async () => {
      repo = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-figures-repo-'));
      await git('init', '-q');
      await fs.writeFile(path.join(repo, 'r.json'), result(undefined));
      await fs.writeFile(path.join(repo, 'dirty.json'), result({ commit: 'abcdef0123456789abcdef0123456789abcdef01', dirty: true }));
      await git('add', 'r.json', 'dirty.json');
      await git('commit', '-q', '-m', 'results');
      added = (await git('rev-parse', '--short=7', 'HEAD')).stdout.trim();
      await fs.writeFile(path.join(repo, 'untracked.json'), result(undefined));
    });
    after(async () => {
      await fs.rm(repo, { recursive: true, force: true });
    });

    test('medians, rounded as printed, and ratios of two medians are found', async () => {
      const r = await checkWith(readme(`Of \`${added}\`: 359 vs 2536 MiB/s (0.14x), 358.5 too, over a 23.8 MiB/s link, 3 runs.`));
      assert.equal(r.code, 0, r.out);
    });

    test('a figure in no file fails', async () => {
      const r = await checkWith(readme(`Of \`${added}\`: 359 vs 2537 MiB/s.`));
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /figure 2537 is in none of r\.json/);
      const q = await checkWith(readme(`Of \`${added}\`: a ratio of 0.15x.`));
      assert.match(q.out, /figure 0\.15 is in none/);
    });

    test('a block that does not name the commit its figures are of fails', async () => {
      const r = await checkWith(readme('359 MiB/s.'));
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, new RegExp(`does not name commit ${added}`));
    });

    test('an uncommitted results file fails', async () => {
      const r = await checkWith(readme(`Of \`${added}\`: 359 MiB/s.`, 'untracked.json'));
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /untracked\.json is not committed/);
    });

    test('figures of a dirty tree must say "uncommitted"; the commit is the one the file recorded', async () => {
      const bad = await checkWith(readme('Of `abcdef0`: 359 MiB/s.', 'dirty.json'));
      assert.equal(bad.code, 1, bad.out);
      assert.match(bad.out, /must say "uncommitted"/);
      const good = await checkWith(readme('Of `abcdef0` with uncommitted changes: 359 MiB/s.', 'dirty.json'));
      assert.equal(good.code, 0, good.out);
      const wrong = await checkWith(readme(`Of \`${added}\` with uncommitted changes: 359 MiB/s.`, 'dirty.json'));
      assert.match(wrong.out, /does not name commit abcdef0/);
    });

    test('a rate or a ratio outside a figures block fails', async () => {
      const r = await checkWith(`${readme(`Of \`${added}\`: 359 MiB/s.`)}\nGVFS is 2.5x faster and reads 900 MiB/s.\n`);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /"2\.5x" is a figure outside a figures block/);
      assert.match(r.out, /"900 MiB\/s" is a figure outside/);
    });
  });
});
