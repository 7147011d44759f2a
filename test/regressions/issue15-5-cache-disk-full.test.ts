import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../helpers/local-server.js';
import { compileC, fuseSkip, run, smallTmpfs, startIssue15Mount, type Issue15Mount } from './issue15-helper.js';

/**
 * Issue 15, failure 5: with write-back and a nearly full cache disk, writes
 * the FUSE layer had accepted were dropped when the journal append failed;
 * fsync() and close() returned 0 and MBs of zeros reached the server. Now a
 * write the journal refuses goes to the server directly, and a write that
 * is lost all the same (the server full too) is reported by fsync() and
 * close() of every descriptor.
 */
const PROGRAM = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned char pat(long long off) { return (unsigned char)((((off >> 9) * 7) + (off & 511)) | 1); }

int main(int argc, char **argv) {
  const char *F = argv[1];
  long long total = atoll(argv[2]) << 20, chunk = 1 << 20, done = 0;
  int werr = 0;
  unsigned char *buf = malloc(chunk);
  int fd1 = open(F, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int fd2 = open(F, O_WRONLY);
  if (fd1 < 0 || fd2 < 0) { perror("open"); return 2; }
  while (done < total) {
    for (long long i = 0; i < chunk; i++) buf[i] = pat(done + i);
    ssize_t n = write(fd1, buf, total - done < chunk ? total - done : chunk);
    if (n < 0) { werr = errno; break; }
    done += n;
  }
  int s1 = fsync(fd1) ? errno : 0;
  int s2 = fsync(fd2) ? errno : 0;
  int c1 = close(fd1) ? errno : 0;
  int c2 = close(fd2) ? errno : 0;
  printf("{\"written\":%lld,\"write\":%d,\"fsync1\":%d,\"fsync2\":%d,\"close1\":%d,\"close2\":%d}\n", done, werr, s1, s2, c1, c2);
  return 0;
}
`;

const pat = (off: number) => ((Math.floor(off / 512) * 7 + (off % 512)) & 0xff) | 1;
const MiB = 1 << 20;

describe('issue 15 (5): write-back with a full cache disk', { skip: fuseSkip(), timeout: 300_000 }, () => {
  const cleanup: Array<() => Promise<void>> = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => undefined);
  });

  async function setup(serverTmpfs?: string): Promise<{ t: Issue15Mount; exe: string }> {
    const base = await tempDir('gvfs-issue15-5-');
    cleanup.push(() => fs.rm(base, { recursive: true, force: true }));
    const cache = await smallTmpfs(base, 'cache', '3m');
    cleanup.push(() => cache.unmount());
    const t = await startIssue15Mount('write-back', [], { cacheDir: path.join(cache.dir, 'c'), beforeMount: serverTmpfs ? async (up) => {
      await run('mount', ['-t', 'tmpfs', '-o', `size=${serverTmpfs},mode=0777`, 'tmpfs', up]);
      cleanup.push(() => run('umount', ['-l', up]).then(() => undefined));
    } : undefined });
    cleanup.push(() => t.stop());
    const exe = await compileC(base, 'fill', PROGRAM);
    return { t, exe };
  }

  test('30 MiB through a 3 MiB cache disk: every write accepted reaches the server, byte for byte', async () => {
    const { t, exe } = await setup();
    const r = JSON.parse((await run(exe, [path.join(t.dir, 'big.bin'), '30'])).stdout);
    assert.deepEqual(r, { written: 30 * MiB, write: 0, fsync1: 0, fsync2: 0, close1: 0, close2: 0 }, t.m.stderr().split("\n").filter((l) => !/journal append failed|cannot take writes/.test(l)).join("\n"));
    await t.m.stop();
    const got = await fs.readFile(path.join(t.up, 'big.bin'));
    assert.equal(got.length, 30 * MiB);
    for (let i = 0; i < got.length; i++) if (got[i] !== pat(i)) assert.fail(`byte ${i} on the server is ${got[i]}, want ${pat(i)} (zeros where accepted data was?)`);
  });

  test('the server full as well: write, fsync and close of every descriptor report the loss; the server holds only what the program wrote', async () => {
    const { t, exe } = await setup('8m');
    const r = JSON.parse((await run(exe, [path.join(t.dir, 'big.bin'), '30'])).stdout);
    assert.ok(r.written < 30 * MiB || r.write === 0, JSON.stringify(r));
    for (const k of ['fsync1', 'fsync2', 'close1', 'close2']) assert.notEqual(r[k], 0, `${k} must report the lost data: ${JSON.stringify(r)}`);
    await t.m.stop();
    const got = await fs.readFile(path.join(t.up, 'big.bin'));
    assert.ok(got.length < 30 * MiB);
    // What the server holds is the program's bytes; where a write the program was told failed would have gone, a hole may read as zeros.
    let zeros = 0;
    for (let i = 0; i < got.length; i++) {
      if (got[i] === pat(i)) continue;
      assert.equal(got[i], 0, `byte ${i} of ${got.length} on the server is ${got[i]}, want ${pat(i)}`);
      assert.ok(i >= 4 * MiB, `a zero at ${i}: before the server filled up; ${JSON.stringify(r)}\n${t.m.stderr().split('\n').filter((l) => !l.includes('"level":40')).slice(0, 20).join('\n')}`);
      zeros++;
    }
    assert.ok(zeros < got.length / 2);
  });
});
