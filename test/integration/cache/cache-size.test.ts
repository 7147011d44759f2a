import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { tempDir } from '../../helpers/local-server.js';
import { gvfsDaemon, gvfsRun, type Daemon } from '../../helpers/cli-run.js';
import { hasFile, isRoot, requirePrereq } from '../../helpers/prereq.js';
import { headroomOf } from '../../../src/wrappers/cache/disk-room.js';

const run = promisify(execFile);
const MiB = 1 << 20;

/**
 * The cache and its disk (a tmpfs of 8 MiB): a --cache-size larger than
 * the disk can hold is refused at start with exit status 3 and says why;
 * the default size shrinks to fit; and when something else fills the disk,
 * the cache gives blocks back until the headroom is free again.
 */
describe('--cache-size against the cache disk', { skip: requirePrereq(isRoot(), hasFile('/usr/bin/nfs-cat', 'libnfs-utils')), timeout: 300_000 }, () => {
  let base: string;
  let disk: string;
  let key: string;
  let server: Daemon;
  const daemons: Daemon[] = [];

  before(async () => {
    base = await tempDir('gvfs-cachesize-');
    disk = path.join(base, 'disk');
    await fs.mkdir(disk);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0755', 'tmpfs', disk]);
    const exp = path.join(base, 'export');
    await fs.mkdir(exp);
    for (let i = 0; i < 8; i++) await fs.writeFile(path.join(exp, `f${i}`), randomBytes(MiB));
    key = path.join(base, 'alice.key');
    assert.equal((await gvfsRun(['keygen', key, '--user', 'alice', '--account', '0:0'])).code, 0);
    server = await gvfsDaemon(['proxy-server', '--listen', '127.0.0.1:0', '--export', `${exp}=/x`, '--key', key, '--state-dir', path.join(base, 'ps')]);
    daemons.push(server);
  });
  after(async () => {
    for (const d of daemons) d.kill();
    await run('umount', ['-l', disk]).catch(() => undefined);
    await fs.rm(base, { recursive: true, force: true });
  });

  const client = (extra: string[]) => ['proxy-client', '--server', `127.0.0.1:${server.info.listening.port}`, '--key', key, '--listen', '127.0.0.1:0', '--cache-dir', path.join(disk, 'c'), '--block-size', '64K', ...extra];

  test('a --cache-size larger than the disk is refused: status 3, the reason, at once', async () => {
    const r = await gvfsRun([...client(['--cache-size', '64M']), '--json'], { timeoutMs: 60_000 });
    assert.equal(r.code, 3, `exit ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, /cache size 64\.0 MiB is larger than its disk can hold: at most .* MiB in .*disk\/c/);
    assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
  });

  test('a --cache-size that fits is taken as given; the default shrinks to what the disk can hold', async () => {
    const a = await gvfsDaemon(client(['--cache-size', '4M']));
    daemons.push(a);
    assert.equal(a.info.cache.capacity, 4 * MiB);
    assert.equal((await a.terminate()).code, 0, a.stderr());
    const b = await gvfsDaemon(client([]));
    daemons.push(b);
    assert.ok(b.info.cache.capacity <= 8 * MiB - headroomOf(8 * MiB), `default became ${b.info.cache.capacity}`);
    assert.ok(b.info.cache.capacity >= 4 * MiB, `default became ${b.info.cache.capacity}`);
    assert.equal((await b.terminate()).code, 0, b.stderr());
  });

  test('something else fills the disk: the cache gives blocks back until the headroom is free', async () => {
    const pc = await gvfsDaemon(client(['--cache-size', '6M']));
    daemons.push(pc);
    const port = pc.info.listening.port;
    for (let i = 0; i < 6; i++) await run('nfs-cat', [`nfs://127.0.0.1/x/f${i}?version=3&nfsport=${port}&mountport=${port}`], { encoding: 'buffer', maxBuffer: 4 * MiB });
    const cached = Number((await run('du', ['-sb', path.join(disk, 'c')])).stdout.split('\t')[0]);
    assert.ok(cached > 3 * MiB, `the reads were cached: ${cached} bytes`);
    // Fill the rest of the disk from outside the cache.
    const fh = await fs.open(path.join(disk, 'filler'), 'w');
    try {
      for (;;) await fh.write(Buffer.alloc(64 * 1024, 1));
    } catch (e) {
      assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
    } finally {
      await fh.close();
    }
    const free = async () => {
      const st = await fs.statfs(disk);
      return st.bavail * st.bsize;
    };
    assert.ok((await free()) < 256 * 1024, 'the disk is full now');
    const want = headroomOf(8 * MiB) - 128 * 1024; // a block's slack
    const t0 = Date.now();
    while ((await free()) < want) {
      if (Date.now() - t0 > 20_000) assert.fail(`the cache did not give back its disk's headroom: ${await free()} bytes free, want ${want}`);
      await delay(200);
    }
    await fs.rm(path.join(disk, 'filler'));
    assert.equal((await pc.terminate()).code, 0, pc.stderr());
  });
});
