#!/usr/bin/env node
// A/B of `gvfs serve` from two built trees (and nfs-ganesha beside them) on the
// create/stat/remove loop of the server suite: nfsbench (libnfs), one connection,
// FILES files per run, ROUNDS rounds alternating A, B, ganesha; medians printed.
// Usage: node bench/tools/serve-meta-ab.mjs A_TREE B_TREE [FILES] [ROUNDS]
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { execFileSync } from 'node:child_process';

const [a, b, filesArg, roundsArg] = process.argv.slice(2);
if (!a || !b) {
  console.error('usage: serve-meta-ab.mjs A_TREE B_TREE [FILES] [ROUNDS]');
  process.exit(2);
}
const files = Number(filesArg ?? 2000);
const rounds = Number(roundsArg ?? 5);
const here = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const { nfsbench } = await import(path.join(here, 'dist/bench/lib/libnfs-client.js'));
const { startGanesha } = await import(path.join(here, 'dist/test/helpers/ganesha.js'));

/** `gvfs serve --json` of one tree; resolves with its port once it listens. */
async function serve(tree, exp, state) {
  const p = spawn(process.execPath, [path.join(tree, 'dist/src/cli/main.js'), 'serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', state, '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const line = await new Promise((r) => createInterface({ input: p.stdout }).once('line', r));
  return { proc: p, port: JSON.parse(line).listening.port };
}

/** The commit a tree is at, and whether it has changes not committed (results carry both). */
const commitOf = (tree) => ({
  commit: execFileSync('git', ['-C', tree, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim(),
  dirty: execFileSync('git', ['-C', tree, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() !== '',
});
const trees = { A: { tree: a, ...commitOf(a) }, B: { tree: b, ...commitOf(b) } };
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-meta-ab-'));
const exp = path.join(dir, 'export');
await fs.mkdir(exp);
const servers = { A: await serve(a, exp, path.join(dir, 'sa')), B: await serve(b, exp, path.join(dir, 'sb')) };
const gan = await startGanesha({ dir: exp, workDir: path.join(dir, 'ganesha') });
const ends = {
  A: { nfsPort: servers.A.port, mountPort: servers.A.port, exportPath: '/' },
  B: { nfsPort: servers.B.port, mountPort: servers.B.port, exportPath: '/' },
  ganesha: { nfsPort: gan.port, mountPort: gan.mountPort, exportPath: gan.exportPath },
};
const got = { A: [], B: [], ganesha: [] };
try {
  for (let r = 0; r < rounds; r++) {
    for (const s of Object.keys(ends)) got[s].push((await nfsbench({ ...ends[s], op: 'meta', dir: `m-${s}-${r}`, files })).ops_per_s);
  }
} finally {
  for (const s of Object.values(servers)) s.proc.kill('SIGTERM');
  await gan.stop();
  await fs.rm(dir, { recursive: true, force: true });
}
const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const out = Object.fromEntries(Object.entries(got).map(([k, v]) => [k, { median: Math.round(med(v)), runs: v.map(Math.round) }]));
console.log(JSON.stringify({ date: new Date().toISOString(), files, rounds, trees, ...out, ratioB_A: +(out.B.median / out.A.median).toFixed(3), A_ganesha: +(out.A.median / out.ganesha.median).toFixed(3), B_ganesha: +(out.B.median / out.ganesha.median).toFixed(3) }, null, 1));
