import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startCachedMount, type CachedMount } from '../../helpers/cached-mount.js';
import { fuseSkip, run } from '../fuse/mount-helper.js';
import { gvfsArgv } from '../../../src/cli/self.js';

/**
 * Through `gvfs mount` with the disk cache and the write-back journal
 * (writes acknowledged once journalled, delivered by `gvfs flush`):
 * offsets past 4 GiB, renames across directories and hard links keep every
 * byte and name, also when the mount process is killed (kill -9) between
 * the rename and the flush and its journal is replayed by the next mount.
 */
const GiB = 2 ** 30;

/** Bytes written at `off`; compared region by region (a 5 GiB file is never read whole). */
interface Region {
  off: number;
  data: Buffer;
}

async function writeRegions(file: string, regions: Region[], flags = 'r+'): Promise<void> {
  const fh = await fs.open(file, flags);
  try {
    for (const r of regions) assert.equal((await fh.write(r.data, 0, r.data.length, r.off)).bytesWritten, r.data.length);
  } finally {
    await fh.close();
  }
}

async function readAt(file: string, off: number, len: number): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const b = Buffer.alloc(len);
    const { bytesRead } = await fh.read(b, 0, len, off);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function assertRegions(file: string, regions: Region[], where: string): Promise<void> {
  for (const r of regions) assert.ok((await readAt(file, r.off, r.data.length)).equals(r.data), `${where}: bytes at ${r.off} (${r.data.length})`);
}

describe('gvfs mount, cache + write-back journal: files over 4 GiB, cross-directory renames and hard links, a crash before the flush', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let t: CachedMount;
  /** What the journal still holds (bytes), as `gvfs cache stats` reports it. */
  const dirty = async () => {
    const { stdout } = await run(process.execPath, gvfsArgv(['cache', 'stats', '--cache-dir', t.cacheDir!, '--json']), { timeout: 120_000 });
    return (JSON.parse(stdout).sessions as Array<{ stats?: { dirtyBytes?: number; flushBacklog?: { bytes: number } } }>).reduce((n, s) => n + (s.stats?.flushBacklog?.bytes ?? s.stats?.dirtyBytes ?? 0), 0);
  };
  const flush = () => run(process.execPath, gvfsArgv(['flush', '--cache-dir', t.cacheDir!]), { timeout: 10 * 60_000 });

  before(async () => {
    // Nothing is delivered on its own while a test looks: only gvfs flush (or the end of the mount) sends.
    t = await startCachedMount('write-back', ['--dirty-max-age', '3600']);
  });
  after(async () => {
    await t?.stop();
  });

  test('a sparse file written at 4 GiB - 1 .. 5 GiB: exact bytes and size through the mount, then on the server after gvfs flush', async () => {
    const regions: Region[] = [
      { off: 0, data: randomBytes(4096) },
      { off: 4 * GiB - 1, data: randomBytes(8192) }, // across 2^32
      { off: 4 * GiB + 12345, data: randomBytes(100_000) }, // unaligned
      { off: 5 * GiB - 65536, data: randomBytes(65536) }, // ends at 5 GiB exactly
    ];
    const file = path.join(t.dir, 'big.img');
    await writeRegions(file, regions, 'w');
    assert.equal((await fs.stat(file)).size, 5 * GiB);
    await assertRegions(file, regions, 'through the mount');
    assert.ok((await readAt(file, 4.5 * GiB, 65536)).equals(Buffer.alloc(65536)), 'a hole reads as zeros');
    assert.ok((await dirty()) >= 4096 + 8192 + 100_000 + 65536, 'the writes are in the journal, not yet on the server');

    await flush();
    assert.equal(await dirty(), 0);
    const server = path.join(t.up, 'big.img');
    assert.equal((await fs.stat(server)).size, 5 * GiB);
    await assertRegions(server, regions, 'on the server');
    assert.ok((await readAt(server, 4.5 * GiB, 65536)).equals(Buffer.alloc(65536)));
    // Re-read through the mount after the flush: still the same.
    await assertRegions(file, regions, 'through the mount after the flush');
    // A rewrite past 4 GiB of a flushed file goes to the same place, not 4 GiB lower.
    const patch = randomBytes(4096);
    await writeRegions(file, [{ off: 4 * GiB + 20_000, data: patch }]);
    patch.copy(regions[2].data, 20_000 - 12345);
    await flush();
    await assertRegions(server, regions, 'on the server after a rewrite');
    assert.ok((await readAt(server, 20_000, 4096)).equals(Buffer.alloc(4096)), 'nothing landed at 20000 (the offset modulo 2^32)');
  });

  test('rename d1/f -> d2/g, link d2/g -> d1/h, write through h, unmount: the server has both names, nlink 2 and every byte', async () => {
    const [d1, d2] = [path.join(t.dir, 'd1'), path.join(t.dir, 'd2')];
    await fs.mkdir(d1);
    await fs.mkdir(d2);
    const a = randomBytes(300_000);
    await fs.writeFile(path.join(d1, 'f'), a);
    await fs.rename(path.join(d1, 'f'), path.join(d2, 'g'));
    await fs.link(path.join(d2, 'g'), path.join(d1, 'h'));
    const b = randomBytes(20_000);
    await writeRegions(path.join(d1, 'h'), [{ off: 100_000, data: b }, { off: 300_000, data: b }]);
    const want = Buffer.concat([a, b]);
    b.copy(want, 100_000);
    for (const n of [path.join(d2, 'g'), path.join(d1, 'h')]) {
      assert.ok((await fs.readFile(n)).equals(want), `${n} through the mount`);
      assert.equal((await fs.stat(n)).nlink, 2);
    }
    await assert.rejects(fs.stat(path.join(d1, 'f')), { code: 'ENOENT' });
    assert.ok((await dirty()) > 0, 'the data is in the journal');

    assert.equal(await t.m.stop(), 0, 'the mount delivered its journal and exited cleanly');
    const [g, h] = [path.join(t.up, 'd2', 'g'), path.join(t.up, 'd1', 'h')];
    assert.ok((await fs.readFile(g)).equals(want), 'server d2/g');
    const [sg, sh] = [await fs.stat(g), await fs.stat(h)];
    assert.equal(sg.ino, sh.ino, 'one file, two names');
    assert.equal(sg.nlink, 2);
    assert.deepEqual((await fs.readdir(path.join(t.up, 'd1'))).sort(), ['h']);
    assert.deepEqual((await fs.readdir(path.join(t.up, 'd2'))).sort(), ['g']);
    await t.remount();
    assert.equal(await dirty(), 0);
  });

  test('kill -9 of the mount between the rename/link and the flush: the next mount replays the journal to the renamed, linked file', async () => {
    const [e1, e2] = [path.join(t.dir, 'e1'), path.join(t.dir, 'e2')];
    await fs.mkdir(e1);
    await fs.mkdir(e2);
    const a = randomBytes(200_000);
    await fs.writeFile(path.join(e1, 'f'), a);
    await fs.rename(path.join(e1, 'f'), path.join(e2, 'g'));
    await fs.link(path.join(e2, 'g'), path.join(e1, 'h'));
    const b = randomBytes(10_000);
    const big = randomBytes(5000);
    // Through h: inside the file, at its end, and past 4 GiB (the file becomes sparse).
    await writeRegions(path.join(e1, 'h'), [{ off: 50_000, data: b }, { off: 200_000, data: b }, { off: 4 * GiB + 7, data: big }]);
    const head = Buffer.concat([a, b]);
    b.copy(head, 50_000);
    const regions: Region[] = [{ off: 0, data: head }, { off: 4 * GiB + 7, data: big }];
    const size = 4 * GiB + 7 + big.length;
    const [g, h] = [path.join(t.up, 'e2', 'g'), path.join(t.up, 'e1', 'h')];
    // The names are on the server (renames and links are not journalled), the bytes are not yet.
    assert.equal((await fs.stat(h)).ino, (await fs.stat(g)).ino);
    assert.notEqual((await fs.stat(g)).size, size, 'not yet delivered');
    assert.ok((await dirty()) >= a.length, 'in the journal');

    await t.crash();
    await t.remount();
    await flush();
    assert.equal(await dirty(), 0);
    assert.equal((await fs.stat(g)).size, size);
    await assertRegions(g, regions, 'server e2/g after the replay');
    await assertRegions(h, regions, 'server e1/h after the replay');
    assert.equal((await fs.stat(g)).nlink, 2);
    assert.deepEqual(await fs.readdir(path.join(t.up, 'e1')), ['h']);
    assert.deepEqual(await fs.readdir(path.join(t.up, 'e2')), ['g']);
    // Through the new mount as well.
    for (const n of [path.join(e2, 'g'), path.join(e1, 'h')]) {
      assert.equal((await fs.stat(n)).size, size);
      assert.equal((await fs.stat(n)).nlink, 2);
      await assertRegions(n, regions, `${n} through the mount after the replay`);
    }
  });
});
