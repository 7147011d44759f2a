#!/usr/bin/env node
// Writes the manual page dist/man/gvfs.1 from the built command tree (`gvfs man`), so the page
// lists exactly the commands and options of this build. Run by `npm run build` after tsc and
// build-info; package.json's "man" field installs it with the package.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const page = execFileSync(process.execPath, [path.join(root, 'dist', 'src', 'cli', 'main.js'), 'man'], { encoding: 'utf8' });
mkdirSync(path.join(root, 'dist', 'man'), { recursive: true });
writeFileSync(path.join(root, 'dist', 'man', 'gvfs.1'), page);
