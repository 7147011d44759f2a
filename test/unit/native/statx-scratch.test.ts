import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { constants as C, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import * as N from '../../../src/native/native.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';

const ROOT: N.NativeCreds = { uid: 0, gid: 0, gids: [] };
const major = (d: bigint) => Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
const minor = (d: bigint) => Number((d & 0xffn) | ((d >> 12n) & ~0xffn));

/** Every field of a Statx against lstat(2) as Node reads it. */
async function agrees(x: N.Statx, p: string): Promise<void> {
  const l = await fs.lstat(p, { bigint: true });
  assert.deepEqual(
    {
      ino: x.ino, mode: x.mode, nlink: x.nlink, uid: x.uid, gid: x.gid, size: x.size, blocks: x.blocks, blksize: x.blksize,
      atimeNs: x.atimeNs, mtimeNs: x.mtimeNs, ctimeNs: x.ctimeNs, btimeNs: x.btimeNs,
      rdev: [x.rdevMajor, x.rdevMinor], dev: [x.devMajor, x.devMinor],
    },
    {
      ino: l.ino, mode: Number(l.mode), nlink: Number(l.nlink), uid: Number(l.uid), gid: Number(l.gid), size: l.size, blocks: l.blocks,
      blksize: Number(l.blksize), atimeNs: l.atimeNs, mtimeNs: l.mtimeNs, ctimeNs: l.ctimeNs, btimeNs: l.birthtimeNs,
      rdev: [major(l.rdev), minor(l.rdev)], dev: [major(l.dev), minor(l.dev)],
    },
    p,
  );
  assert.equal(x.mask & N.K.STATX_BASIC_STATS, N.K.STATX_BASIC_STATS, 'the basic fields were filled');
}

/**
 * The addon hands a statx to JS through a scratch buffer and a decoder
 * (binding.c statx_to_scratch, native.ts statxFromScratch) instead of
 * building the object through N-API: every field must arrive whole, also
 * past 32 and 53 bits and below zero, and results settled together must
 * not borrow each other's fields.
 */
describe('native: a statx reaches JS whole', { skip: requirePrereq(isRoot()), timeout: 60_000 }, () => {
  let dir: string;
  let big: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-statx-scratch-'));
    big = path.join(dir, 'big');
    await fs.writeFile(big, 'x');
    await fs.truncate(big, 2 ** 41 + 5); // sparse: the size past 32 bits
    await fs.chown(big, 4_000_000_000, 3_999_999_999); // ids past 31 bits
    await fs.chmod(big, 0o6755);
    // mtime in 2242 (ns past 2^62); atime before 1970 (negative ns: touch, as Node takes a negative time for "now").
    await fs.utimes(big, 1, 2 ** 33 + 0.25);
    await promisify(execFile)('touch', ['-a', '-d', '1969-12-31 23:59:58.5 UTC', big]);
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  test('every field through a pool job (statx): large, negative and set-ID values; a device', async () => {
    const x = await N.statx(N.K.AT_FDCWD, big, N.K.AT_SYMLINK_NOFOLLOW, ROOT);
    assert.equal(x.size, 2n ** 41n + 5n);
    assert.equal(x.uid, 4_000_000_000);
    assert.equal(x.atimeNs, -1_500_000_000n);
    assert.equal(x.mtimeNs, (2n ** 33n) * 1_000_000_000n + 250_000_000n);
    assert.equal(x.mode & 0o7777, 0o6755);
    await agrees(x, big);
    const d = await N.statx(N.K.AT_FDCWD, '/dev/null', 0, ROOT);
    assert.deepEqual([d.rdevMajor, d.rdevMinor], [1, 3]);
    await agrees(d, '/dev/null');
  });

  test('a one-trip job\'s several statx (lookupIn: the directory and the name) are each their own', async () => {
    const ds = await fs.stat(dir, { bigint: true });
    const root = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
    try {
      const r = await N.lookupIn(root, { rel: '.', ino: ds.ino, gen: ds.birthtimeNs }, 'big', ROOT);
      await agrees(r.obj, big);
      await agrees(r.dir, dir);
    } finally {
      await N.close(root);
    }
  });

  test('many results settled together: each its own file\'s', async () => {
    const names = Array.from({ length: 64 }, (_, i) => `f${i}`);
    await Promise.all(names.map((n, i) => fs.writeFile(path.join(dir, n), Buffer.alloc(i * 1000 + 1))));
    const xs = await Promise.all(names.map((n) => N.statx(N.K.AT_FDCWD, path.join(dir, n), 0, ROOT)));
    for (const [i, x] of xs.entries()) {
      assert.equal(x.size, BigInt(i * 1000 + 1));
      await agrees(x, path.join(dir, names[i]!));
    }
  });

  test('preadCached: the statx from the scratch, and a later result does not change it', async () => {
    const fd = openSync(big, C.O_RDONLY);
    try {
      const r = N.preadCached(fd, Buffer.alloc(4096), 0);
      assert.ok(r, 'the file\'s first page was just written');
      await agrees(r.obj, big);
      const other = await N.statx(N.K.AT_FDCWD, '/dev/null', 0, ROOT);
      assert.equal(other.rdevMajor, 1);
      assert.equal(r.obj.size, 2n ** 41n + 5n, 'the first result is its own object');
    } finally {
      await N.close(fd);
    }
  });
});
