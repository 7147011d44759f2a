import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gitState, render, ResultsFile, type SuiteResult } from '../../../bench/lib/report.js';
import { summarize } from '../../../bench/lib/stats.js';

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));

const suite = (name: string): SuiteResult => ({
  suite: name,
  baseline: 'local',
  workloads: [
    { name: 'clone', unit: 's', better: 'lower', systems: { gvfs: summarize([2, 3, 4]), local: summarize([1, 1, 1]) } },
    { name: 'read', unit: 'MiB/s', better: 'higher', systems: { gvfs: summarize([10]), local: summarize([20]) } },
  ],
  notes: [],
});

describe('bench results file', { timeout: 60_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-bench-report-'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });
  const read = async (f: string) => JSON.parse(await fs.readFile(f, 'utf8'));

  test('records the commit, the command line, the machine and the settings from the start', async () => {
    const out = await ResultsFile.create(dir, { runs: 3, profile: 'wan' });
    const doc = await read(out.file);
    assert.equal(doc.status, 'running');
    const head = (await run('git', ['rev-parse', 'HEAD'], { cwd: HERE })).stdout.trim();
    assert.equal(doc.git.commit, head);
    assert.equal(typeof doc.git.dirty, 'boolean');
    assert.deepEqual(doc.command, [process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
    assert.equal(doc.machine.cpus, os.cpus().length);
    assert.equal(doc.machine.cpu, os.cpus()[0]?.model);
    assert.ok(doc.machine.memGiB > 0);
    assert.ok(String(doc.machine.kernel).includes(os.release()));
    assert.deepEqual(doc.settings, { runs: 3, profile: 'wan' });
    assert.deepEqual(doc.results, []);
  });

  test('each suite is in the file as soon as it ends; a later failure keeps it and records the error', async () => {
    const sub = await fs.mkdtemp(path.join(dir, 'run-'));
    const out = await ResultsFile.create(sub, {});
    await out.add(suite('first'));
    let doc = await read(out.file);
    assert.equal(doc.status, 'running');
    assert.deepEqual(doc.results.map((r: SuiteResult) => r.suite), ['first']);
    await out.finish({ suite: 'second', message: 'Error: link out of tolerance' });
    doc = await read(out.file);
    assert.equal(doc.status, 'failed');
    assert.deepEqual(doc.error, { suite: 'second', message: 'Error: link out of tolerance' });
    assert.deepEqual(doc.results.map((r: SuiteResult) => r.suite), ['first']);
    // One chart per workload, each saying which way is better.
    const svgs = (await fs.readdir(sub)).filter((f) => f.endsWith('.svg')).sort();
    assert.equal(svgs.length, 2);
    assert.match(await fs.readFile(path.join(sub, svgs[0]), 'utf8'), /clone \(s, median; whisker min–max; lower is better\)/);
    assert.match(await fs.readFile(path.join(sub, svgs[1]), 'utf8'), /read \(MiB\/s, median; whisker min–max; higher is better\)/);
  });

  test('the table says which way is better per workload', () => {
    const lines = render(suite('t')).split('\n');
    assert.match(lines[1], /^workload\s+unit\s+better\s/);
    assert.match(lines.find((l) => l.startsWith('clone'))!, /^clone\s+s\s+lower\s/);
    assert.match(lines.find((l) => l.startsWith('read'))!, /^read\s+MiB\/s\s+higher\s/);
  });

  test('git state: a modified tracked file makes the tree dirty; outside a checkout there is no commit', async () => {
    const repo = await fs.mkdtemp(path.join(dir, 'repo-'));
    const git = (...a: string[]) => run('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...a], { cwd: repo });
    await git('init', '-q');
    await fs.writeFile(path.join(repo, 'a.txt'), 'a');
    await git('add', 'a.txt');
    await git('commit', '-q', '-m', 'a');
    const head = (await git('rev-parse', 'HEAD')).stdout.trim();
    assert.deepEqual(await gitState(repo), { commit: head, dirty: false });
    await fs.writeFile(path.join(repo, 'untracked.txt'), 'not part of the code');
    assert.equal((await gitState(repo)).dirty, false, 'untracked files (new results) do not make it dirty');
    await fs.writeFile(path.join(repo, 'a.txt'), 'b');
    assert.deepEqual(await gitState(repo), { commit: head, dirty: true, changed: ['a.txt'] });
    const none = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-nogit-'));
    try {
      const g = await gitState(none);
      assert.equal(g.commit, null);
      assert.equal(g.dirty, null);
    } finally {
      await fs.rm(none, { recursive: true, force: true });
    }
  });
});
