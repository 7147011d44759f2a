#!/usr/bin/env node
// The syncs each server makes in the create/stat/remove loop: `strace -f -c` (fsync, fdatasync,
// sync_file_range, syncfs, sync) on `gvfs serve` and on nfs-ganesha, each exporting its own empty directory,
// through nfsbench's loop of 500 files; then a second loop under `strace -f` of the opens (open, openat,
// openat2), counting those with O_SYNC or O_DSYNC (a write through such a descriptor is synced without a
// sync call). Run from a built tree (dist/). Usage: node bench/tools/meta-syncs.mjs
import fs from 'node:fs/promises'; import os from 'node:os'; import path from 'node:path'; import { spawn } from 'node:child_process';
const dist = new URL('../../dist', import.meta.url).pathname;
const { startGanesha } = await import(`${dist}/test/helpers/ganesha.js`);
const { spawnGvfs } = await import(`${dist}/test/helpers/gvfs-proc.js`);
const { nfsbench } = await import(`${dist}/bench/lib/libnfs-client.js`);
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ms-')); const exp = path.join(dir, 'export'); await fs.mkdir(exp);
const gv = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(dir, 'state')]);
const gan = await startGanesha({ dir: exp, workDir: path.join(dir, 'ganesha') });
const sys = { gvfs: { e: { nfsPort: gv.port, mountPort: gv.port, exportPath: '/' }, pid: gv.pid }, ganesha: { e: { nfsPort: gan.port, mountPort: gan.mountPort, exportPath: gan.exportPath }, pid: gan.pid } };
try {
  for (const s of ['gvfs', 'ganesha']) {
    const out = path.join(dir, `${s}.strace`);
    const p = spawn('strace', ['-f', '-c', '-o', out, '-e', 'trace=fsync,fdatasync,sync_file_range,syncfs,sync', '-p', String(sys[s].pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise((r) => { let b = ''; p.stderr.on('data', (d) => { b += d; if (/attached/.test(b)) r(); }); setTimeout(r, 3000); });
    const o = await nfsbench({ ...sys[s].e, op: 'meta', dir: `m-${s}`, files: 500 });
    p.kill('SIGINT'); await new Promise((r) => p.on('exit', r));
    console.log(`== ${s}: create/stat/remove of 500 files under strace -f -c (${o.ops_per_s.toFixed(0)} calls/s traced)`);
    console.log((await fs.readFile(out, 'utf8')).trim());
    const opens = path.join(dir, `${s}.opens`);
    const q = spawn('strace', ['-f', '-o', opens, '-e', 'trace=open,openat,openat2', '-p', String(sys[s].pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise((r) => { let b = ''; q.stderr.on('data', (d) => { b += d; if (/attached/.test(b)) r(); }); setTimeout(r, 3000); });
    await nfsbench({ ...sys[s].e, op: 'meta', dir: `o-${s}`, files: 500 });
    q.kill('SIGINT'); await new Promise((r) => q.on('exit', r));
    const lines = (await fs.readFile(opens, 'utf8')).split('\n').filter((l) => /open(at2?)?\(/.test(l));
    console.log(`${s}: ${lines.length} opens traced through a second loop of 500 files, ${lines.filter((l) => /O_D?SYNC/.test(l)).length} with O_SYNC or O_DSYNC`);
  }
} finally { await gv.stop(); await gan.stop(); await fs.rm(dir, { recursive: true, force: true }); }
