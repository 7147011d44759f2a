import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Fattr3 } from '../../src/nfs3/types.js';
import { ROOT, startLocalServer, type LocalServer } from '../helpers/local-server.js';
import { startSwapper } from './symlink-swapper.js';

const OUTSIDER = 4242; // owner of everything outside the export: an attribute with it describes an outside object

/**
 * Issue 17 step 3: the reads. While a local user swaps a directory of the
 * export for a symlink to a look-alike tree outside it, GETATTR, LOOKUP,
 * READLINK, READDIR and READDIRPLUS by handle never describe anything
 * outside the export: no outside owner, inode, name or symlink target ever
 * appears in a reply (every read opens beneath the root's descriptor and
 * reads through it). Attribute cache off, so every call reaches the disk.
 */
describe('a symlink swapped in by a local user: no read ever describes an object outside the export', { timeout: 300_000 }, () => {
  let s: LocalServer;
  let outside: string;
  const outsideInos = new Set<bigint>();
  const NAMES = 6;

  before(async () => {
    s = await startLocalServer({ attrCacheMs: 0 });
    outside = path.join(s.dir, 'outside');
    for (const base of [path.join(s.exportDir, 'v'), outside]) {
      const out = base === outside;
      await fs.mkdir(path.join(base, 'sub'), { recursive: true });
      for (let i = 0; i < NAMES; i++) {
        await fs.writeFile(path.join(base, 'sub', `f${i}`), out ? 'outside' : 'in');
        await fs.symlink(out ? 'outside-target' : 'inside-target', path.join(base, 'sub', `s${i}`));
      }
      if (out) await fs.writeFile(path.join(base, 'sub', 'outside-only'), '');
    }
    for (const p of [outside, path.join(outside, 'sub'), ...(await fs.readdir(path.join(outside, 'sub'))).map((n) => path.join(outside, 'sub', n))]) {
      await fs.lchown(p, OUTSIDER, OUTSIDER);
      outsideInos.add((await fs.lstat(p, { bigint: true })).ino);
    }
  });
  after(async () => {
    await s?.stop();
  });

  test('GETATTR, LOOKUP, READLINK, READDIR, READDIRPLUS race the swapper: nothing from outside in any reply', async () => {
    const v = (await s.client.lookup(ROOT, s.root, 'v')).fh;
    const sub = (await s.client.lookup(ROOT, v, 'sub')).fh;
    const links = await Promise.all(Array.from({ length: NAMES }, (_, i) => s.client.lookup(ROOT, sub, `s${i}`).then((r) => r.fh)));
    const flag = path.join(s.dir, 'stop');
    const { exited, swaps } = startSwapper(s.exportDir, outside, flag);
    const leaks: string[] = [];
    const inside = (what: string, a: Fattr3 | undefined) => {
      if (a && (a.uid === OUTSIDER || outsideInos.has(BigInt(a.fileid)))) leaks.push(`${what}: uid ${a.uid} fileid ${a.fileid}`);
    };
    let ok = 0;
    let failed = 0;
    const tryOp = async <T>(p: Promise<T>, check: (r: T) => void) => {
      try {
        check(await p);
        ok++;
      } catch {
        failed++; // NOENT, STALE ... while the directory is away: expected
      }
    };
    try {
      for (let round = 0; round < 100 || (ok <= 200 && round < 3000); round++) {
        const i = round % NAMES;
        // The directory changes every round, so no listing the server cached earlier answers for it.
        await tryOp<unknown>(round % 2 ? s.client.remove(ROOT, sub, 'tick') : s.client.create(ROOT, sub, 'tick', { mode: 'unchecked', attrs: {} }), () => undefined);
        await tryOp(s.client.getattr(ROOT, sub), (a) => inside('GETATTR', a));
        // Several at once: more chances to land in the swap window.
        await Promise.all(
          Array.from({ length: NAMES }, (_, k) =>
            tryOp(s.client.lookup(ROOT, sub, `f${k}`), (r) => {
              inside('LOOKUP', r.attr);
              inside('LOOKUP dir', r.dirAttr);
            }),
          ),
        );
        await tryOp(s.client.lookup(ROOT, sub, 'outside-only'), (r) => leaks.push(`LOOKUP found outside-only (uid ${r.attr?.uid})`));
        await tryOp(s.client.readlink(ROOT, links[i]), (r) => {
          if (r.path !== 'inside-target') leaks.push(`READLINK: ${r.path}`);
        });
        await tryOp(s.client.readdir(ROOT, sub, 0n, Buffer.alloc(8), 8192), (p) => {
          for (const e of p.entries) {
            if (e.name === 'outside-only' || outsideInos.has(BigInt(e.fileid))) leaks.push(`READDIR: ${e.name} ${e.fileid}`);
          }
          inside('READDIR dir', p.dirAttr);
        });
        await tryOp(s.client.readdirplus(ROOT, sub, 0n, Buffer.alloc(8), 8192, 32768), (p) => {
          for (const e of p.entries) {
            if (e.name === 'outside-only') leaks.push('READDIRPLUS: outside-only');
            inside(`READDIRPLUS ${e.name}`, e.attr);
          }
        });
      }
    } finally {
      await fs.writeFile(flag, '');
      await exited;
    }
    assert.deepEqual(leaks.slice(0, 10), [], `${leaks.length} replies described objects outside the export`);
    assert.ok(Number(swaps()) > 100, `the swapper ran (${swaps().trim()} swaps)`);
    assert.ok(ok > 200, `the server answered between swaps (${ok} ok, ${failed} failed)`);
  });
});
