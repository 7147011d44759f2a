#!/usr/bin/env node
// Which FUSE requests the smallwan loop makes per file: a proxy server and a `gvfs mount` (disk cache,
// defaults) of it on loopback, no link; one python loop of FILES files in a new directory (BODY: the python
// statements per file, `a` the file's path; default the smallwan loop: create + close, stat, unlink); the
// mount's own request counters, which it logs at unmount ("gvfs mount: stats"), printed as JSON.
// Run from a built tree (dist/). Usage: [BODY='...'] node bench/tools/smallwan-fuse-ops.mjs [FILES]
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const dist = new URL('../../dist', import.meta.url).pathname;
const run = promisify(execFile);
const { newSessionKey, writeKeyFile } = await import(`${dist}/src/channel/session-key.js`);
const { spawnGvfs } = await import(`${dist}/test/helpers/gvfs-proc.js`);
const files = Number(process.argv[2] ?? 100);
const body = process.env.BODY ?? 'os.close(os.open(a,os.O_CREAT|os.O_EXCL|os.O_WRONLY,0o644)); os.stat(a); os.unlink(a)';
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fuse-ops-'));
const exp = path.join(dir, 'export');
await fs.mkdir(exp);
const keyFile = path.join(dir, 'k.key');
await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
const ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, 'ps')]);
const mnt = path.join(dir, 'mnt');
await fs.mkdir(mnt);
const gm = await spawnGvfs(['mount', '--server', `127.0.0.1:${ps.port}`, '--key', keyFile, '--cache-dir', path.join(dir, 'cache'), '--foreground', mnt]);
const script = ['import os,sys', 'd=sys.argv[1]', 'for i in range(int(sys.argv[2])):', "  a=f'{d}/f{i}'", `  ${body}`].join('\n');
try {
  const d = path.join(mnt, 'm');
  await fs.mkdir(d);
  await run('python3', ['-c', script, d, String(files)]);
} finally {
  await gm.stop();
  await ps.stop();
  await fs.rm(dir, { recursive: true, force: true });
}
const line = gm.log().split('\n').find((l) => l.includes('gvfs mount: stats'));
if (!line) throw new Error('no "gvfs mount: stats" line in the mount\'s log');
console.log(JSON.stringify({ files, body, ops: JSON.parse(line).stats.ops }));
