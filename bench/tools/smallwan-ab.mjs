#!/usr/bin/env node
// A/B of the smallwan loop from two built trees, interleaved file by file: each tree runs its own proxy
// server and `gvfs mount` (disk cache, defaults); one python loop alternates between the two mounts (and
// which goes first), so both see the same machine at the same moments. GAP ms of idle before each create
// and each unlink (0: back to back; 20: every call finds the machine idle, as over a wan link); LINK=1: each
// mount reaches its proxy server through its own emulated wan link (bench/lib/link-emulator.ts).
// Prints each side's median create+close, unlink and whole file (the gaps not counted).
// Usage: [GAP=20] [LINK=1] node bench/tools/smallwan-ab.mjs A_TREE B_TREE [FILES]
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const [treeA, treeB, filesArg] = process.argv.slice(2);
if (!treeA || !treeB) throw new Error('usage: smallwan-ab.mjs A_TREE B_TREE [FILES]');
const files = Number(filesArg ?? 200);
const gap = process.env.GAP ?? '20';
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smallwan-ab-'));
const sides = [];
const script = `import os,sys,time
ds=sys.argv[1:3]; n=int(sys.argv[3]); gap=float(sys.argv[4])/1000
r={d:{'c':[],'u':[],'f':[]} for d in ds}
for i in range(n):
  for d in (ds if i%2==0 else ds[::-1]):
    a=f'{d}/f{i}'
    t0=time.perf_counter()
    if gap: time.sleep(gap)
    t=time.perf_counter(); os.close(os.open(a,os.O_CREAT|os.O_EXCL|os.O_WRONLY,0o644)); r[d]['c'].append(time.perf_counter()-t)
    os.stat(a)
    if gap: time.sleep(gap)
    t=time.perf_counter(); os.unlink(a); r[d]['u'].append(time.perf_counter()-t)
    r[d]['f'].append(time.perf_counter()-t0-2*gap)
m=lambda x: sorted(x)[len(x)//2]*1000
for k,d in zip('AB',ds): print(f"{k}: create+close {m(r[d]['c']):.3f} unlink {m(r[d]['u']):.3f} file {m(r[d]['f']):.3f} ms (medians of {n})")`;
try {
  for (const [name, tree] of [['A', treeA], ['B', treeB]]) {
    const dist = path.resolve(tree, 'dist');
    const commit = (await run('git', ['-C', tree, 'rev-parse', '--short', 'HEAD'])).stdout.trim();
    const dirty = (await run('git', ['-C', tree, 'status', '--porcelain', '--untracked-files=no'])).stdout.trim() ? ' (tree has uncommitted changes)' : '';
    console.log(`${name}: ${tree} at ${commit}${dirty}`);
    const { newSessionKey, writeKeyFile } = await import(`${dist}/src/channel/session-key.js`);
    const { spawnGvfs } = await import(`${dist}/test/helpers/gvfs-proc.js`);
    const { spawnMount } = await import(`${dist}/bench/suites/mount.js`);
    const exp = path.join(dir, `export-${name}`);
    await fs.mkdir(exp);
    const keyFile = path.join(dir, `k-${name}.key`);
    await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
    const side = { name };
    sides.push(side);
    side.ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, `ps-${name}`)]);
    let port = side.ps.port;
    if (process.env.LINK) {
      const { PROFILES, startLink } = await import(`${dist}/bench/lib/link-emulator.js`);
      side.link = await startLink(PROFILES.wan, { host: '127.0.0.1', port });
      port = side.link.port;
    }
    const mnt = path.join(dir, `mnt-${name}`);
    await fs.mkdir(mnt);
    side.gm = await spawnMount(['--server', `127.0.0.1:${port}`, '--key', keyFile, '--cache-dir', path.join(dir, `cache-${name}`), mnt]);
    side.d = path.join(mnt, 'm');
    await fs.mkdir(side.d);
  }
  const out = (await run('python3', ['-c', script, sides[0].d, sides[1].d, String(files), gap])).stdout.trim();
  console.log(`gap ${gap} ms${process.env.LINK ? ', wan link' : ''}:\n${out}`);
} finally {
  for (const s of sides) {
    if (s.d) await fs.rmdir(s.d).catch(() => undefined);
    await s.gm?.stop();
    await s.ps?.stop();
    await s.link?.close();
  }
  await fs.rm(dir, { recursive: true, force: true });
}
