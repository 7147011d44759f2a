import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { memoryStateFile } from '../../../bench/lib/files.js';
import { newSessionKey, writeKeyFile } from '../../../src/channel/session-key.js';
import { generateMeta } from '../../../src/meta/generate.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { fusePrereqs, hasFile, requirePrereq } from '../../helpers/prereq.js';
import { run, spawnMount, type MountProc } from '../fuse/mount-helper.js';
import { gvfsArgv } from '../../../src/cli/self.js';

const MB = 1 << 20;
const skip = () => requirePrereq(...fusePrereqs(), hasFile('/usr/bin/dd', 'coreutils'));
const gvfs = async (args: string[]) => (await run(process.execPath, gvfsArgv(args), { maxBuffer: 16 << 20 })).stdout;

/** The live counters of the one session on a cache directory, as `gvfs cache stats --json` prints them. */
async function cacheStats(cacheDir: string): Promise<Record<string, number>> {
  const out = JSON.parse(await gvfs(['cache', 'stats', '--cache-dir', cacheDir, '--json']));
  assert.equal(out.sessions.length, 1, JSON.stringify(out));
  assert.equal(out.sessions[0].live, true, 'the running mount answered');
  return out.sessions[0].stats;
}

/** The invariants every snapshot keeps (util/counters.ts): each byte read has exactly one source; hits and misses are bytes. */
function assertAddsUp(st: Record<string, number>): void {
  const j = JSON.stringify(st);
  assert.equal(st.fromCacheBytes + st.fromJournalBytes + st.zeroBytes + st.fromChannelBytes, st.readBytes, `sources add up to the bytes read: ${j}`);
  assert.equal(st.hitBytes + st.missBytes, st.readBytes, `hits + misses = bytes read: ${j}`);
  assert.ok(st.fromCacheBytes <= st.readBytes, `served from the cache ${st.fromCacheBytes} never more than was read ${st.readBytes}`);
  assert.equal(st.movedBytes, st.channelReadBytes + st.bulkWireBytes + st.channelWriteBytes, j);
  assert.equal(st.fetchedBytes, st.channelReadBytes + st.bulkRawBytes, j);
}

/**
 * Issue 23, "numbers that add up", through the real commands: `gvfs
 * proxy-server --export`, `gvfs mount --cache-dir` (FUSE), programs reading
 * and writing through the mount, and `gvfs cache stats` / `gvfs meta stats` /
 * `gvfs flush` reading the session's counters.
 */
describe('counters that add up, through gvfs mount', { skip: skip(), timeout: 600_000 }, () => {
  let dir: string;
  let exp: string;
  let keyFile: string;
  let ps: GvfsProcess;
  const mounts: MountProc[] = [];
  const cold = randomBytes(24 * MB + 4321);
  let mem: { zeroBlocks: number; blocks: number; size: number };

  const mount = async (name: string, extra: string[] = []) => {
    const cacheDir = path.join(dir, `cache-${name}`);
    const m = await spawnMount(`127.0.0.1:${ps.port}`, path.join(dir, `mnt-${name}`), ['--key', keyFile, '--cache-dir', cacheDir, ...extra]);
    mounts.push(m);
    return { m, cacheDir };
  };

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-counters-'));
    exp = path.join(dir, 'export');
    await fs.mkdir(exp);
    await fs.writeFile(path.join(exp, 'cold.bin'), cold);
    // A memory-state-like file, half zero 64 KiB blocks, with whole-file meta-data: it moves by bulk transfer.
    const size = 16 * MB;
    const info = await memoryStateFile(path.join(exp, 'mem.img'), size, 0.5, 23);
    await generateMeta(path.join(exp, 'mem.img'), { root: exp, hint: 'whole' });
    mem = { ...info, size };
    keyFile = path.join(dir, 'session.key');
    await writeKeyFile(keyFile, newSessionKey('alice', undefined, { uid: 0, gid: 0, gids: [] }));
    ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, 'ps')]);
  });
  after(async () => {
    for (const m of mounts) await m.stop().catch(() => undefined);
    await ps?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  test('a cold read: served from the cache + fetched >= read, never more from the cache than was read', async () => {
    const { m, cacheDir } = await mount('cold');
    const got = await fs.readFile(path.join(m.mnt, 'cold.bin'));
    assert.ok(got.equals(cold), 'the file as on the server');
    const st = await cacheStats(cacheDir);
    assertAddsUp(st);
    assert.ok(st.readBytes >= cold.length, `read ${st.readBytes} of ${cold.length}`);
    assert.ok(st.fromCacheBytes + st.fetchedBytes >= st.readBytes, `from cache ${st.fromCacheBytes} + fetched ${st.fetchedBytes} >= read ${st.readBytes}`);
    // Cold: every byte crossed the channel once, as a READ or a read-ahead; nothing was zero, nothing was written.
    assert.ok(st.fetchedBytes >= cold.length && st.fetchedBytes < cold.length * 1.5, `fetched ${st.fetchedBytes}`);
    assert.equal(st.zeroBytes + st.fromJournalBytes + st.bulkRawBytes + st.channelWriteBytes, 0, JSON.stringify(st));
    assert.ok(st.programReadBytes >= cold.length && st.readBytes >= st.programReadBytes, `programs read ${st.programReadBytes}, the stack answered ${st.readBytes}`);
    assert.ok(st.movedBytes >= cold.length && st.channelBytesIn! >= st.channelReadBytes, JSON.stringify(st));
    // Warm: read again through O_DIRECT (past the kernel's page cache): all hits, nothing more on the wire.
    await run('dd', [`if=${path.join(m.mnt, 'cold.bin')}`, 'of=/dev/null', 'bs=1M', 'iflag=direct']);
    const warm = await cacheStats(cacheDir);
    assertAddsUp(warm);
    assert.equal(warm.channelReadBytes, st.channelReadBytes, 'no READ on the wire for the warm read');
    assert.ok(warm.fromCacheBytes - st.fromCacheBytes >= cold.length, `warm read from the cache: ${warm.fromCacheBytes - st.fromCacheBytes}`);
    assert.equal(warm.missBytes, st.missBytes);
  });

  test('a cold read moved by a bulk transfer counts as network bytes; zero blocks as answered locally', async () => {
    const { m, cacheDir } = await mount('bulk');
    const got = await fs.readFile(path.join(m.mnt, 'mem.img'));
    assert.ok(got.equals(await fs.readFile(path.join(exp, 'mem.img'))), 'the file as on the server');
    const st = await cacheStats(cacheDir);
    assertAddsUp(st);
    const dataBytes = mem.size - mem.zeroBlocks * 64 * 1024;
    assert.ok(st.bulkRawBytes > 0 && st.bulkWireBytes > 0, `moved by bulk transfer: ${JSON.stringify(st)}`);
    assert.ok(st.fetchedBytes >= dataBytes, `fetched ${st.fetchedBytes} >= the file's non-zero bytes ${dataBytes}`);
    assert.ok(st.movedBytes >= st.bulkWireBytes, JSON.stringify(st));
    assert.ok(st.zeroBytes >= mem.zeroBlocks * 64 * 1024, `zero blocks answered locally: ${st.zeroBytes}`);
    assert.ok(st.fromCacheBytes + st.fetchedBytes + st.zeroBytes >= st.readBytes, JSON.stringify(st));
    assert.ok(st.programReadBytes >= mem.size && st.readBytes >= st.programReadBytes, `programs read ${st.programReadBytes}, the stack answered ${st.readBytes}`);
    // gvfs meta stats shows the same counters (one definition).
    const ms = JSON.parse(await gvfs(['meta', 'stats', '--cache-dir', cacheDir, '--json']));
    assert.equal(ms.bulkRawBytes, st.bulkRawBytes);
    assert.equal(ms.zeroBytes, st.zeroBytes);
    assert.equal(ms.hashMismatches, 0);
  });

  test('data written and flushed stays in the cache as clean blocks: reading it back is a hit, no READ on the wire', async () => {
    const { m, cacheDir } = await mount('wb', ['--write-back']);
    const data = randomBytes(8 * MB + 100);
    const file = path.join(m.mnt, 'written.bin');
    await fs.writeFile(file, data);
    const before = await cacheStats(cacheDir);
    assert.ok(before.writeBytes >= data.length, JSON.stringify(before));
    const fl = JSON.parse((await gvfs(['flush', '--cache-dir', cacheDir, '--json'])).trim().split('\n').pop()!); // the done event
    assert.ok(JSON.stringify(fl).includes('running proxy client'), JSON.stringify(fl));
    assert.ok((await fs.readFile(path.join(exp, 'written.bin'))).equals(data), 'the server has the data');
    const flushed = await cacheStats(cacheDir);
    assert.equal(flushed.dirtyBytes, 0);
    assert.ok(flushed.flushBytes >= data.length && flushed.channelWriteBytes >= flushed.flushBytes, JSON.stringify(flushed));
    assert.ok(flushed.writtenBlocksKept >= 8, `written blocks kept: ${flushed.writtenBlocksKept}`);
    // O_DIRECT: past the kernel's page cache, to the mount.
    const out = path.join(dir, 'readback.bin');
    await run('dd', [`if=${file}`, `of=${out}`, 'bs=1M', 'iflag=direct']);
    assert.ok((await fs.readFile(out)).equals(data), 'read back as written');
    const st = await cacheStats(cacheDir);
    assertAddsUp(st);
    assert.ok(st.readBytes - flushed.readBytes >= data.length, 'the read reached the mount');
    assert.equal(st.channelReadBytes, flushed.channelReadBytes, `no READ on the wire after the flush: ${JSON.stringify(st)}`);
    assert.equal(st.missBytes, flushed.missBytes, 'no miss');
    assert.ok(st.fromCacheBytes - flushed.fromCacheBytes >= data.length, `served from the cache: ${st.fromCacheBytes - flushed.fromCacheBytes}`);
  });

  test('gvfs cache stats of a directory that is not a cache is an error', async () => {
    const notCache = path.join(dir, 'not-a-cache');
    await fs.mkdir(notCache);
    await fs.writeFile(path.join(notCache, 'file.txt'), 'x');
    for (const [d, why] of [
      [notCache, /not a GVFS cache directory/],
      [path.join(dir, 'missing'), /no such directory/],
      [path.join(notCache, 'file.txt'), /not a directory/],
    ] as const) {
      const e = await run(process.execPath, gvfsArgv(['cache', 'stats', '--cache-dir', d])).then(
        () => assert.fail(`gvfs cache stats --cache-dir ${d} succeeded`),
        (err: { code?: number; stderr?: string }) => err,
      );
      assert.notEqual(e.code, 0);
      assert.match(e.stderr ?? '', why);
    }
    // A cache directory is still fine, and an unknown --session on it is an error too.
    const { cacheDir } = await mount('ok');
    assert.match(await gvfs(['cache', 'stats', '--cache-dir', cacheDir]), /answered 0\.0 MiB in 0 READs/);
    await assert.rejects(run(process.execPath, gvfsArgv(['cache', 'stats', '--cache-dir', cacheDir, '--session', 'nobody'])), /has no session nobody/);
  });
});
