// Which calls reach the proxy server for `tar -x` of N small files (the smallwan suite's tree) through a write-back
// `gvfs mount --cache-dir`, no link emulation. Not a benchmark (it times nothing): a count per procedure, from the
// proxy server's metrics, before the write-back data is flushed.
//   node bench/tools/tar-calls.mjs TREE [N] [mount options]   (TREE: a built checkout, e.g. this one)
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
const M = process.argv[2] ?? '/work/main';
const N = Number(process.argv[3] ?? 20);
const extra = process.argv.slice(4);
const { newSessionKey, writeKeyFile } = await import(`${M}/dist/src/channel/session-key.js`);
const { spawnGvfs } = await import(`${M}/dist/test/helpers/gvfs-proc.js`);
const { packSmallFileTree } = await import(`${M}/dist/bench/lib/files.js`);
const { spawnMount } = await import(`${M}/dist/bench/suites/mount.js`);
const run = promisify(execFile);
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tarcalls-'));
const exp = path.join(dir, 'export');
await fs.mkdir(exp);
const tarFile = await packSmallFileTree(dir, N);
const keyFile = path.join(dir, 'k.key');
await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
const ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, 'ps'), '--metrics', '127.0.0.1:0']);
const mnt = path.join(dir, 'mnt');
await fs.mkdir(mnt);
const gm = await spawnMount(['--server', `127.0.0.1:${ps.port}`, '--key', keyFile, '--cache-dir', path.join(dir, 'cache'), ...extra, mnt], `${M}/dist/src/cli/main.js`);
const metrics = ps.info.metrics;
const calls = async () => {
  const t = await (await fetch(`http://${metrics.host ?? metrics.address}:${metrics.port}/metrics`)).text();
  const m = new Map();
  for (const l of t.split('\n')) {
    const x = /^gvfs_rpc_calls_total\{.*procedure="([^"]+)".*\} (\d+)/.exec(l);
    if (x) m.set(x[1], (m.get(x[1]) ?? 0) + Number(x[2]));
  }
  return m;
};
const before = await calls();
await fs.mkdir(path.join(mnt, 't'));
await run('tar', ['-C', path.join(mnt, 't'), '-xf', tarFile]);
const after = await calls();
const diff = (a, b) => [...a].map(([k, v]) => [k, v - (b.get(k) ?? 0)]).filter(([, v]) => v > 0).sort((x, y) => y[1] - x[1]);
const d = diff(after, before);
console.log('during tar:', JSON.stringify(d), 'total', d.reduce((n, [, v]) => n + v, 0));
await gm.stop();
await ps.stop();
await fs.rm(dir, { recursive: true, force: true }).catch(() => {});
process.exit(0);
