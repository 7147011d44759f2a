import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { checkReadsAt, dropPages, fuseSkip, spawnMount, startCachedMount, type CachedMount, type MountProc } from './mount-helper.js';
import { gvfsArgv } from '../../../src/cli/self.js';

const run = promisify(execFile);
const MiB = 1 << 20;

/**
 * Reads a `gvfs mount` answers from its disk cache's block files, spliced by
 * the native layer (LocalReads, fuse_ll.c replyFds): the bytes are always
 * the ones `read` would have given — never a block of an older version,
 * never cached bytes under unflushed writes of this host, and a block file
 * damaged on disk is read the plain way (fetched again), not served.
 * The kernel's pages of the file are dropped before each read
 * (posix_fadvise DONTNEED), so every read reaches the mount.
 */
describe('FUSE reads from the files of the disk cache (local reads)', { skip: fuseSkip(), timeout: 300_000 }, () => {
  let base: string;
  let exportDir: string;
  let cacheDir: string;
  let m: MountProc;
  let cm: CachedMount | undefined;

  before(async () => {
    cm = await startCachedMount('gvfs-localreads-', ['--write-back', '--attr-timeout', '1']);
    ({ base, exportDir, cacheDir, m } = cm);
  });
  after(async () => {
    await cm?.close();
  });

  const readAll = async (file: string) => {
    await dropPages(file);
    return fs.readFile(file);
  };

  test('a file read again comes from the cache, byte for byte, at every offset and length', async () => {
    const data = randomBytes(3 * MiB + 123);
    await fs.writeFile(path.join(exportDir, 'a'), data);
    const f = path.join(m.mnt, 'a');
    assert.ok((await fs.readFile(f)).equals(data), 'first read (fills the cache)');
    assert.ok((await readAll(f)).equals(data), 'second read');
    await checkReadsAt(f, data, [[0, 1], [MiB - 3, 7], [123_456, 2 * MiB], [3 * MiB, 500], [3 * MiB + 100, 100]], { dropEach: true });
  });

  test('a file changed on the server: the new bytes once the attributes expire, never a mix of versions', async () => {
    const v1 = randomBytes(2 * MiB);
    const v2 = randomBytes(2 * MiB);
    await fs.writeFile(path.join(exportDir, 'b'), v1);
    const f = path.join(m.mnt, 'b');
    assert.ok((await fs.readFile(f)).equals(v1));
    assert.ok((await readAll(f)).equals(v1), 'cached');
    // Rewritten in place on the server's disk (same size; only the mtime and the bytes tell).
    await fs.writeFile(path.join(exportDir, 'b'), v2);
    const t0 = Date.now();
    for (;;) {
      const got = await readAll(f);
      if (got.equals(v2)) break;
      assert.ok(got.equals(v1), 'a read is one version or the other, whole');
      assert.ok(Date.now() - t0 < 10_000, 'the new version shows within the attribute timeout (1 s) and a margin');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  test('unflushed writes of this host over cached blocks: reads show them', async () => {
    const data = randomBytes(2 * MiB);
    await fs.writeFile(path.join(exportDir, 'c'), data);
    const f = path.join(m.mnt, 'c');
    assert.ok((await readAll(f)).equals(data));
    assert.ok((await readAll(f)).equals(data), 'cached');
    const patch = Buffer.from('written here, not yet on the server');
    const fh = await fs.open(f, 'r+');
    await fh.write(patch, 0, patch.length, MiB - 10);
    await fh.close();
    const want = Buffer.from(data);
    patch.copy(want, MiB - 10);
    assert.ok((await readAll(f)).equals(want), 'the write-back bytes over the cached blocks');
    assert.ok((await fs.readFile(path.join(exportDir, 'c'))).equals(data), 'still only here (write-back)');
  });

  test('a cached block damaged on disk is not served: the read fetches it again', async () => {
    const data = randomBytes(2 * MiB + 7);
    await fs.writeFile(path.join(exportDir, 'd'), data);
    const f = path.join(m.mnt, 'd');
    assert.ok((await readAll(f)).equals(data));
    assert.ok((await readAll(f)).equals(data), 'cached, its block files open');
    // The file's last block is the cache's only 7-byte block file: cut it short under the open descriptor.
    const found: string[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const e of await fs.readdir(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if ((await fs.stat(p)).size === 7) found.push(p);
      }
    };
    await walk(path.join(cacheDir, 'blocks'));
    assert.equal(found.length, 1, `one 7-byte block: ${found}`);
    await fs.truncate(found[0], 3);
    assert.ok((await readAll(f)).equals(data), 'the whole file, its last block fetched again');
    assert.ok((await readAll(f)).equals(data), 'and again');
  });

  test('the kernel reads 4 MiB ahead on a mount with a cache, 256 KiB on one without (no local reads there)', async () => {
    const readAheadKb = async (mnt: string) => {
      const line = (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === mnt);
      assert.ok(line, `${mnt} is mounted`);
      return Number((await fs.readFile(`/sys/class/bdi/${line.split(' ')[2]}/read_ahead_kb`, 'utf8')).trim());
    };
    assert.equal(await readAheadKb(m.mnt), 4096);
    const plain = await spawnMount(m.info.server as string, path.join(base, 'mnt-plain'), ['--key', path.join(base, 'k.key')]);
    try {
      assert.equal(await readAheadKb(plain.mnt), 256);
      assert.ok((await fs.readFile(path.join(plain.mnt, 'a'))).length > 0);
    } finally {
      assert.equal(await plain.stop(), 0);
    }
    assert.equal(plain.stats()?.localReads, 0);
  });

  test('the mount answered reads from local files, and read one again the plain way', async () => {
    assert.equal(await m.stop(), 0);
    const st = m.stats();
    assert.ok(st, 'stats printed');
    assert.ok(st.localReads > 20, `local reads: ${st.localReads}`);
    assert.ok(st.localRetries >= 1, `the damaged block's read went the plain way: ${st.localRetries}`);
    // The session's counters (util/counters.ts) say how much went that way, as part of what came from the cache.
    const cs = JSON.parse((await run(process.execPath, gvfsArgv(['cache', 'stats', '--cache-dir', cacheDir, '--json']))).stdout);
    const sum = (k: string) => cs.sessions.reduce((n: number, x: { stats: Record<string, number> }) => n + (x.stats[k] ?? 0), 0);
    assert.ok(sum('splicedBytes') >= 20 * 4096, `spliced: ${sum('splicedBytes')}`);
    assert.ok(sum('splicedBytes') <= sum('fromCacheBytes') + sum('zeroBytes'), 'a part of the cache\'s answers');
    assert.match((await run(process.execPath, gvfsArgv(['cache', 'stats', '--cache-dir', cacheDir]))).stdout, /MiB of it spliced from the cache's files to the kernel/);
  });
});
