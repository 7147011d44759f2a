#!/usr/bin/env node
// Where a file's time goes in the smallwan suite's create/stat/remove loop: the same python loop, through a
// gvfs mount (disk cache, defaults) of a proxy server behind the emulated wan link, under strace -T: each
// system call's median time. DIRECT=1: the mount talks to the proxy server without the link (the local cost).
// Usage: node bench/tools/smallwan-calls.mjs [FILES]   (from a built tree; two rounds of FILES, default 100)
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const dist = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../dist');
const { newSessionKey, writeKeyFile } = await import(`${dist}/src/channel/session-key.js`);
const { spawnGvfs } = await import(`${dist}/test/helpers/gvfs-proc.js`);
const { PROFILES, startLink } = await import(`${dist}/bench/lib/link-emulator.js`);
const { spawnMount } = await import(`${dist}/bench/suites/mount.js`);
const run = promisify(execFile);

const files = Number(process.argv[2] ?? 100);
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smallwan-calls-'));
const exp = path.join(dir, 'export');
await fs.mkdir(exp);
const keyFile = path.join(dir, 'k.key');
await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
const ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, 'ps')]);
const link = await startLink(PROFILES.wan, { host: '127.0.0.1', port: ps.port });
const mnt = path.join(dir, 'mnt');
await fs.mkdir(mnt);
const port = process.env.DIRECT ? ps.port : link.port;
const gm = await spawnMount(['--server', `127.0.0.1:${port}`, '--key', keyFile, '--cache-dir', path.join(dir, 'cache'), mnt]);
// The suite's loop, timed inside python.
const script = [
  'import os,sys,time',
  'd=sys.argv[1]',
  't=time.perf_counter()',
  'for i in range(int(sys.argv[2])):',
  "  a=f'{d}/f{i}'",
  '  os.close(os.open(a,os.O_CREAT|os.O_EXCL|os.O_WRONLY,0o644)); os.stat(a); os.unlink(a)',
  'print(time.perf_counter()-t)',
].join('\n');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  for (let r = 0; r < 2; r++) {
    const d = path.join(mnt, `meta-${r}`);
    await fs.mkdir(d);
    const log = path.join(dir, `strace-${r}.log`);
    const trace = ['-T', '-y', '-e', 'trace=openat,close,newfstatat,unlink', '-o', log];
    const t = Number((await run('strace', [...trace, 'python3', '-c', script, d, String(files)])).stdout.trim());
    const by = {};
    for (const l of (await fs.readFile(log, 'utf8')).split('\n')) {
      const m = l.includes(d) && /^(\w+)\(.*<([\d.]+)>$/.exec(l);
      if (m) (by[m[1]] ??= []).push(Number(m[2]) * 1000);
    }
    const calls = Object.fromEntries(Object.entries(by).map(([k, v]) => [k, `${v.length}x median ${median(v).toFixed(2)} ms, max ${Math.max(...v).toFixed(2)}`]));
    console.log(`round ${r}: ${((t / files) * 1000).toFixed(2)} ms/file (strace on)`, calls);
    await fs.rmdir(d);
  }
} finally {
  await gm.stop();
  await ps.stop();
  await link.close();
  await fs.rm(dir, { recursive: true, force: true });
}
