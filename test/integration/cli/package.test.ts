import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { builtinModules } from 'node:module';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { gvfsRun } from '../../helpers/cli-run.js';

const run = promisify(execFile);
/** The package root (dist/test/integration/cli → four up). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

/**
 * What `npm pack` ships: only what runs. The list is checked both ways:
 * nothing of tests, benchmarks, results, CI or TypeScript sources is in
 * it, and everything the shipped code needs is (every relative import of
 * every shipped module resolves to a shipped file, every package it imports
 * is a runtime dependency, the bin and the demo guest's scripts are there).
 */
describe('the npm package', { timeout: 180_000 }, () => {
  let files: string[];
  const pkg = async () => JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8'));

  test('npm pack --dry-run lists only what runs', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, maxBuffer: 64 << 20 });
    files = (JSON.parse(stdout)[0].files as Array<{ path: string }>).map((f) => f.path).sort();
    const allowed = [/^package\.json$/, /^README\.md$/, /^LICENSE$/, /^dist\/build-info\.json$/, /^dist\/src\/.*\.js$/, /^scripts\/guest\/[^/]+$/, /^dist\/man\/gvfs\.1$/, /^contrib\/systemd\/[^/]+$/];
    const stray = files.filter((f) => !allowed.some((re) => re.test(f)));
    assert.deepEqual(stray, [], 'files outside the runtime set');
    for (const bad of [/^test\//, /^dist\/test\//, /^bench\//, /^dist\/bench\//, /results/, /^\.ci\//, /\.ts$/, /\.map$/]) {
      assert.deepEqual(files.filter((f) => bad.test(f)), [], `${bad} shipped`);
    }
    const p = await pkg();
    for (const need of ['package.json', 'README.md', p.bin.gvfs, 'dist/build-info.json', 'scripts/guest/build.sh', 'scripts/guest/init', 'scripts/guest/mkdisk.sh', 'dist/man/gvfs.1', 'contrib/systemd/gvfs-agent.service', 'contrib/systemd/gvfs-mount@.service']) {
      assert.ok(files.includes(need), `${need} missing from the package`);
    }
    assert.equal(p.dependencies['playwright-core'], undefined, 'playwright-core is for tests (a devDependency)');
  });

  test('every import of the shipped code resolves inside the package or to a runtime dependency', async () => {
    assert.ok(files, 'the pack list (previous test)');
    const shipped = new Set(files);
    const deps = new Set(Object.keys((await pkg()).dependencies));
    const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
    const missing: string[] = [];
    for (const f of files.filter((x) => x.endsWith('.js'))) {
      const text = await fs.readFile(path.join(ROOT, f), 'utf8');
      for (const m of text.matchAll(/(?:^|[;\s])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm)) {
        const spec = m[1] ?? m[2] ?? m[3];
        if (spec.startsWith('.')) {
          const target = path.posix.normalize(path.posix.join(path.posix.dirname(f), spec));
          if (!shipped.has(target)) missing.push(`${f} imports ${spec} (${target})`);
        } else if (!builtins.has(spec)) {
          const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
          if (!deps.has(name)) missing.push(`${f} imports ${spec}, not a runtime dependency`);
        }
      }
    }
    assert.deepEqual(missing, []);
  });

  test('gvfs version: the commit recorded at build time, with no git at run time', async () => {
    const info = JSON.parse(await fs.readFile(path.join(ROOT, 'dist', 'build-info.json'), 'utf8'));
    assert.match(info.commit, /^[0-9a-f]{40}$/, 'dist/build-info.json records the commit (npm run build)');
    // No git on the PATH and a directory that is no checkout: only the recorded file can answer.
    const r = await gvfsRun(['version', '--json'], { cwd: '/', env: { PATH: '/nonexistent' } });
    assert.equal(r.code, 0, r.stderr);
    const v = JSON.parse(r.stdout);
    assert.equal(v.commit, info.commit);
    assert.equal(v.version, (await pkg()).version);
    const h = await gvfsRun(['version'], { cwd: '/', env: { PATH: '/nonexistent' } });
    assert.match(h.stdout, new RegExp(`commit ${info.commit}`));
    assert.match((await gvfsRun(['--version'])).stdout.trim(), /^\d+\.\d+\.\d+/);
  });
});
