#!/usr/bin/env node
// Head-of-line blocking behind syncs (from a review): a LOOKUP of a missing name (a native job) issued
// while eight CREATEs of the local export wait on their fsyncs, with 0 and then 300 MB of unrelated dirty
// data on the same file system (which makes an fsync slow). Run on a built tree's dist:
//   node bench/tools/sync-hol.mjs TREE/dist
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const dist = process.argv[2];
if (!dist) {
  console.error('usage: sync-hol.mjs TREE/dist');
  process.exit(2);
}
const { LocalExport } = await import(path.resolve(dist, 'src/backends/local-export/local-export.js'));
const base = await fs.mkdtemp(path.join(os.tmpdir(), 'sync-hol-'));
const root = path.join(base, 'exp');
await fs.mkdir(root);
const e = await LocalExport.open({ root, stateDir: path.join(base, 'state') });
const cred = { flavor: 1, uid: 0, gid: 0, gids: [] };
const big = Buffer.alloc(1 << 20, 7);
/** `mb` MiB written to a file beside the export and not synced: dirty pages an fsync may wait behind. */
async function dirty(mb) {
  const fh = await fs.open(path.join(base, 'unrelated.bin'), 'w');
  for (let i = 0; i < mb; i++) await fh.write(big);
  await fh.close();
}
async function lookupMs() {
  const t = performance.now();
  await e.lookup(cred, e.rootHandle, `missing-${Math.random()}`).catch(() => undefined);
  return performance.now() - t;
}
let n = 0;
try {
  for (const mb of [0, 300]) {
    await dirty(mb);
    const creates = Array.from({ length: 8 }, () => e.create(cred, e.rootHandle, `f${n++}`, { mode: 'guarded', attrs: { mode: 0o644 } }));
    await new Promise((r) => setTimeout(r, 5)); // the creates' jobs are queued by then
    const l = await lookupMs();
    const t = performance.now();
    await Promise.all(creates);
    console.log(`${mb} MB dirty elsewhere on the fs: a LOOKUP issued during 8 CREATEs took ${l.toFixed(1)} ms (creates done ${(performance.now() - t).toFixed(0)} ms later); idle LOOKUP ${(await lookupMs()).toFixed(1)} ms`);
  }
} finally {
  await e.close();
  await fs.rm(base, { recursive: true, force: true });
}
