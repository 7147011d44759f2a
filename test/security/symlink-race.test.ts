import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FType, StableHow } from '../../src/nfs3/constants.js';
import { ROOT, startLocalServer, type LocalServer } from '../helpers/local-server.js';
import { startSwapper } from './symlink-swapper.js';
import { treeSnapshot } from './tree-snapshot.js';

/**
 * Issue 17: a local user who swaps a directory of the export for a symlink
 * to a directory outside it, over and over, while the server creates,
 * writes, renames and removes files in it by handle, never makes the server
 * touch anything outside the export (every change goes through a directory
 * descriptor opened with openat2 RESOLVE_BENEATH below the export root).
 */
describe('a symlink swapped in by a local user never leads the server out of the export', { timeout: 300_000 }, () => {
  let s: LocalServer;
  let outside: string;
  const NAMES = 8;

  before(async () => {
    s = await startLocalServer();
    outside = path.join(s.dir, 'outside');
    // The same shape outside as inside, with files of every name the server will use: tempting targets.
    for (const base of [path.join(s.exportDir, 'v'), outside]) {
      await fs.mkdir(path.join(base, 'sub'), { recursive: true });
      for (let i = 0; i < NAMES; i++) {
        for (const n of [`f${i}`, `g${i}`, `keep${i}`]) await fs.writeFile(path.join(base, 'sub', n), base === outside ? `outside ${n}` : `inside ${n}`);
        await fs.mkdir(path.join(base, 'sub', `d${i}`));
      }
    }
  });
  after(() => s?.stop());

  test('creates, writes, setattrs, renames, links and removes race the swapper: the outside tree is untouched', async () => {
    const before = await treeSnapshot(outside);
    const v = (await s.client.lookup(ROOT, s.root, 'v')).fh;
    const sub = (await s.client.lookup(ROOT, v, 'sub')).fh;
    const flag = path.join(s.dir, 'stop');
    const { exited, swaps } = startSwapper(s.exportDir, outside, flag);
    let ok = 0;
    let failed = 0;
    const tryOp = async (p: Promise<unknown>) => {
      try {
        await p;
        ok++;
      } catch {
        failed++; // ENOENT, STALE, XDEV ... while the directory is away: expected
      }
    };
    try {
      // 150 rounds, and on until the server has done real work between swaps: on a loaded machine the swapper can
      // win most races, and a run that did almost nothing would prove nothing (bounded: 5000 rounds).
      for (let round = 0; round < 150 || (ok <= 100 && round < 5000); round++) {
        const i = round % NAMES;
        await tryOp(s.client.remove(ROOT, sub, `f${i}`));
        await tryOp(
          s.client.create(ROOT, sub, `f${i}`, { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } }).then(async (c) => {
            if (c.fh) await s.client.write(ROOT, c.fh, 0, Buffer.from(`written ${round}`), StableHow.UNSTABLE);
          }),
        );
        await tryOp(
          s.client.lookup(ROOT, sub, `keep${i}`).then((l) =>
            Promise.all([
              s.client.setattr(ROOT, l.fh, { mode: 0o600, mtime: { sec: 1, nsec: 0 } }),
              s.client.write(ROOT, l.fh, 0, Buffer.from('overwritten'), StableHow.FILE_SYNC),
              s.client.setattr(ROOT, l.fh, { size: 1 }),
            ]),
          ),
        );
        await tryOp(s.client.rename(ROOT, sub, `g${i}`, sub, `h${i}`));
        await tryOp(s.client.rename(ROOT, sub, `h${i}`, sub, `g${i}`));
        await tryOp(s.client.mkdir(ROOT, sub, `n${i}`, { mode: 0o755 }));
        await tryOp(s.client.rmdir(ROOT, sub, `d${i}`));
        await tryOp(s.client.mkdir(ROOT, sub, `d${i}`, { mode: 0o700 }));
        await tryOp(s.client.symlink(ROOT, sub, `s${i}`, '/etc/passwd', {}));
        await tryOp(s.client.mknod(ROOT, sub, `p${i}`, { type: FType.FIFO, attrs: { mode: 0o600 } }));
        await tryOp(s.client.lookup(ROOT, sub, `g${i}`).then((l) => s.client.link(ROOT, l.fh, sub, `hard${i}`)));
        for (const n of [`n${i}`, `s${i}`, `p${i}`, `hard${i}`]) await tryOp(n.startsWith('n') ? s.client.rmdir(ROOT, sub, n) : s.client.remove(ROOT, sub, n));
      }
    } finally {
      await fs.writeFile(flag, '');
      await exited;
    }
    // Confinement first: it must be checked whatever else went wrong.
    assert.deepEqual(await treeSnapshot(outside), before, 'nothing outside the export changed');
    assert.ok(Number(swaps()) > 100, `the swapper ran (${swaps().trim()} swaps)`);
    assert.ok(ok > 100, `the server did work between swaps (${ok} ok, ${failed} failed)`);
  });
});
