import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { tempDir } from '../../helpers/local-server.js';

const run = promisify(execFile);
const BENCH = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bench', 'main.js');

/**
 * The benchmark suite's smoke run: it runs end to end on the emulated WAN
 * link and writes well-formed results and charts. No timing is asserted.
 */
test('bench --quick --suite wan runs and writes well-formed figures', { timeout: 600_000 }, async () => {
  const out = await tempDir('gvfs-bench-smoke-');
  try {
    const r = await run(process.execPath, [BENCH, '--quick', '--suite', 'wan', '--profile', 'wan', '--out', out], { timeout: 590_000, maxBuffer: 16 << 20 });
    assert.match(r.stdout, /== wan-wan ==/);
    const files = await fs.readdir(out);
    const json = files.find((f) => f.endsWith('.json'));
    assert.ok(json, 'a JSON result');
    const doc = JSON.parse(await fs.readFile(path.join(out, json!), 'utf8'));
    assert.equal(doc.settings.quick, true);
    assert.equal(doc.status, 'complete');
    assert.match(doc.git.commit, /^[0-9a-f]{40}$/);
    assert.equal(typeof doc.git.dirty, 'boolean');
    assert.ok(doc.command.includes('--suite') && doc.command.includes('wan'), 'the full command line');
    assert.ok(doc.machine.cpus >= 1 && doc.machine.memGiB > 0 && doc.machine.kernel && doc.machine.cpu !== undefined);
    const suite = doc.results[0];
    assert.ok(suite.workloads.length >= 3);
    // Plain NFS with GVFS's read-ahead depth is the baseline; one READ at a time is a second row.
    assert.equal(suite.baseline, 'nfs');
    assert.ok(suite.workloads.every((w: { systems: object }) => 'nfs-depth1' in w.systems));
    for (const w of suite.workloads) {
      assert.equal(w.better, 'higher', `${w.name}: rates, higher is better`);
      for (const [sys, s] of Object.entries(w.systems) as Array<[string, { median: number; min: number; max: number; runs: number[] }]>) {
        assert.ok(Number.isFinite(s.median) && s.median > 0, `${w.name}/${sys}: median ${s.median}`);
        assert.ok(s.min <= s.median && s.median <= s.max);
        assert.equal(s.runs.length, 1);
      }
    }
    assert.equal(files.filter((f) => f.endsWith('.svg')).length, suite.workloads.length, 'one chart per workload');
    assert.match(await fs.readFile(path.join(out, files.find((f) => f.endsWith('.svg'))!), 'utf8'), /^<svg /);
  } finally {
    await fs.rm(out, { recursive: true, force: true });
  }
});
