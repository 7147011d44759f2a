import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { constants as C, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import * as N from '../../../src/native/native.js';

const run = promisify(execFile);

/**
 * preadCached (binding.c): READ's data and attributes on the JS thread,
 * only from the page cache (RWF_NOWAIT); never a wait, never a job.
 */
describe('native: preadCached', { timeout: 60_000 }, () => {
  let dir: string;
  let p: string;
  const body = Buffer.alloc(300_000);
  for (let i = 0; i < body.length; i++) body[i] = (i * 13 + 5) & 0xff;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-pread-cached-'));
    p = path.join(dir, 'f');
    await fs.writeFile(p, body);
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  test('a cached range: the data and the statx, no job; short only at the end; past the end 0', async () => {
    const fd = openSync(p, C.O_RDONLY);
    try {
      const jobs = N.info().jobs;
      const buf = Buffer.alloc(65_536, 0xee);
      const r = N.preadCached(fd, buf, 100_000);
      assert.ok(r, 'a file just written is in the page cache');
      assert.equal(r.bytesRead, 65_536);
      assert.ok(buf.equals(body.subarray(100_000, 165_536)));
      assert.equal(Number(r.obj.size), body.length);
      assert.equal(r.obj.ino, (await fs.stat(p, { bigint: true })).ino);
      const tail = Buffer.alloc(65_536, 0xee);
      const t = N.preadCached(fd, tail, 280_000);
      assert.ok(t);
      assert.equal(t.bytesRead, 20_000, 'short only at the end of the file');
      assert.ok(tail.subarray(0, 20_000).equals(body.subarray(280_000)));
      assert.equal(tail[20_000], 0xee);
      assert.equal((N.preadCached(fd, Buffer.alloc(10), 400_000) || undefined)?.bytesRead, 0);
      assert.equal(N.info().jobs, jobs, 'no pool job');
    } finally {
      await N.close(fd);
    }
  });

  test('a range not in the page cache: undefined at once (no wait), and preadAs reads it', async () => {
    const q = path.join(dir, 'cold');
    await fs.writeFile(q, body);
    const fd = openSync(q, C.O_RDONLY);
    try {
      // Written back, then dropped from the page cache (dd's nocache: POSIX_FADV_DONTNEED over the whole file).
      await N.fsync(fd);
      await run('dd', [`if=${q}`, 'iflag=nocache', 'count=0', 'status=none']);
      const buf = Buffer.alloc(65_536);
      assert.equal(N.preadCached(fd, buf, 100_000), undefined, 'the data is on disk only: no copy on this thread');
      const r = await N.preadAs(fd, buf, 100_000, N.self());
      assert.ok(buf.subarray(0, r.bytesRead).equals(body.subarray(100_000, 165_536)));
      const again = N.preadCached(fd, Buffer.alloc(65_536), 100_000);
      assert.equal(again && again.bytesRead, 65_536, 'cached now');
    } finally {
      await N.close(fd);
    }
  });

  test('a file system without RWF_NOWAIT: false (the caller stops asking); errors throw; bad arguments are a TypeError', async () => {
    const proc = openSync('/proc/self/stat', C.O_RDONLY);
    try {
      assert.equal(N.preadCached(proc, Buffer.alloc(100), 0), false);
    } finally {
      await N.close(proc);
    }
    const wr = openSync(p, C.O_WRONLY);
    try {
      assert.throws(() => N.preadCached(wr, Buffer.alloc(1), 0), (e: NodeJS.ErrnoException) => e.code === 'EBADF' && e.syscall === 'preadv2');
    } finally {
      await N.close(wr);
    }
    assert.throws(() => N.preadCached(wr, Buffer.alloc(1), 0), (e: NodeJS.ErrnoException) => e.code === 'EBADF');
    assert.throws(() => N.preadCached(1, 'x' as unknown as Buffer, 0), TypeError);
    assert.throws(() => N.preadCached(1, Buffer.alloc(1), -1), TypeError);
  });
});
