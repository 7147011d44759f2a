// open(O_RDONLY) + close pairs through two plain `gvfs mount`s of one NFS server (`gvfs serve`'s local export,
// in this process), built from two checkouts, alternating over 5 rounds; microseconds per pair, medians.
// Written for FOPEN_NOFLUSH (0ca8943): the close of a read-only open no longer sends the mount a FLUSH.
//   node bench/tools/open-close-ab.mjs A_TREE B_TREE [N]   (each a built checkout; A's test helpers serve)
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
const run = promisify(execFile);
import fs from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
const [A, B] = [process.argv[2], process.argv[3]];
if (!A || !B) throw new Error('usage: open-close-ab.mjs A_TREE B_TREE [N]');
const { startLocalServer } = await import(`${A}/dist/test/helpers/local-server.js`);
const s = await startLocalServer();
await fs.writeFile(path.join(s.exportDir, 'f'), 'x'.repeat(100));
const mounts = {};
async function mount(name, root) {
  const mnt = path.join(s.dir, name);
  await fs.mkdir(mnt);
  const p = spawn(process.execPath, [path.join(root, 'dist/src/cli/main.js'), 'mount', '--server', `nfs://127.0.0.1:${s.port}/`, mnt, '--foreground', '--json'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, GVFS_LOG_LEVEL: 'warn' } });
  await new Promise((r) => createInterface({ input: p.stdout }).once('line', r));
  mounts[name] = { mnt, p };
}
await mount('a', A);
await mount('b', B);
const N = Number(process.argv[4] ?? 3000);
const py = `import os,sys,time\nf=sys.argv[1]\nfor i in range(200): os.close(os.open(f,os.O_RDONLY))\nt=time.perf_counter()\nfor i in range(int(sys.argv[2])): os.close(os.open(f,os.O_RDONLY))\nprint((time.perf_counter()-t)/int(sys.argv[2])*1e6)`;
const res = { a: [], b: [] };
for (let r = 0; r < 5; r++) for (const k of r % 2 ? ['b', 'a'] : ['a', 'b']) {
  res[k].push(Number((await run('python3', ['-c', py, path.join(mounts[k].mnt, 'f'), String(N)])).stdout.trim()));
}
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const git = async (t) => (await run('git', ['-C', t, 'rev-parse', 'HEAD'])).stdout.trim();
console.log(JSON.stringify({ a: { tree: A, commit: await git(A) }, b: { tree: B, commit: await git(B) }, N, usPerOpenClose: res, median: { a: med(res.a), b: med(res.b) } }));
for (const k of Object.keys(mounts)) { mounts[k].p.kill('SIGTERM'); await new Promise((r) => mounts[k].p.once('exit', r)); }
await s.stop();
