#!/usr/bin/env node
// Records what was built (package version, git commit, uncommitted changes, time) in dist/build-info.json,
// so an installed package can say which commit it is (`gvfs version`) without git at run time.
// Run by `npm run build` after tsc; outside a git checkout the commit is recorded as null.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const git = (...args) => {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
};
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const commit = git('rev-parse', 'HEAD');
const status = commit ? git('status', '--porcelain', '--untracked-files=no') : null;
const info = { name: pkg.name, version: pkg.version, commit, dirty: status === null ? null : status !== '', builtAt: new Date().toISOString() };
mkdirSync(path.join(root, 'dist'), { recursive: true });
// The bin is run directly when linked onto the PATH (README's quickstart; npm link does the same).
try {
  chmodSync(path.join(root, 'dist', 'src', 'cli', 'main.js'), 0o755);
} catch {
  /* not built yet */
}
writeFileSync(path.join(root, 'dist', 'build-info.json'), JSON.stringify(info, null, 2) + '\n');
console.error(`build-info: ${info.version} ${info.commit ?? '(no git)'}${info.dirty ? ' +uncommitted changes' : ''}`);
