import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { compileC, fuseSkip, run, startIssue15Mount, type Issue15Mount, type MountKind } from './issue15-helper.js';

/**
 * Issue 15, failure 1: after a truncate up and a write that extends the
 * file, fstat returned the truncate's size (the front end kept whichever
 * attributes had the later ctime, and the cache answered write-back WRITEs
 * with the client's clock in ms), and an O_APPEND write from a second
 * descriptor then landed inside data written before. The exact syscalls,
 * many times over, on each mount configuration; the file's bytes are checked
 * through the mount after every iteration and on the server at the end.
 */
const PROGRAM = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned char model[0x40004], got[0x40004], buf[0x10000];
static size_t msize;

static void mwrite(const unsigned char *b, size_t len, size_t off) {
  if (off + len > msize) { memset(model + msize, 0, off + len > msize ? off + len - msize : 0); msize = off + len; }
  memcpy(model + off, b, len);
}
static void mtrunc(size_t n) { if (n > msize) memset(model + msize, 0, n - msize); msize = n; }

int main(int argc, char **argv) {
  const char *F = argv[1];
  int iters = atoi(argv[2]);
  int bad = 0;
  for (int it = 0; it < iters; it++) {
    msize = 0;
    int fd = open(F, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror("open"); return 2; }
    if (ftruncate(fd, 0x182ea)) { perror("ftruncate"); return 2; }
    mtrunc(0x182ea);
    if (pread(fd, buf, 0x8926, 0xf9c4) != 0x8926) { perror("pread"); return 2; }
    /* A pattern that names the iteration and the offset, so a misplaced byte shows. */
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i * 7 + it + 1) | 1;
    if (pwrite(fd, buf, 0x529f, 0x21d2b) != 0x529f) { perror("pwrite 1"); return 2; }
    mwrite(buf, 0x529f, 0x21d2b);
    if (ftruncate(fd, 0x3f8c3)) { perror("ftruncate up"); return 2; }
    mtrunc(0x3f8c3);
    if (pwrite(fd, buf + 3, 0xf36, 0x3f0ca) != 0xf36) { perror("pwrite 2"); return 2; }
    mwrite(buf + 3, 0xf36, 0x3f0ca);
    struct stat st;
    if (fstat(fd, &st)) { perror("fstat"); return 2; }
    if (st.st_size != 0x40000) { printf("iteration %d: fstat size 0x%llx, want 0x40000\n", it, (long long)st.st_size); bad++; }
    int afd = open(F, O_WRONLY | O_APPEND);
    if (afd < 0) { perror("open append"); return 2; }
    if (write(afd, "TAIL", 4) != 4) { perror("append"); return 2; }
    mwrite((const unsigned char *)"TAIL", 4, 0x40000);
    if (fstat(fd, &st)) { perror("fstat 2"); return 2; }
    if (st.st_size != 0x40004) { printf("iteration %d: size after append 0x%llx, want 0x40004\n", it, (long long)st.st_size); bad++; }
    if (close(afd)) { perror("close append"); return 2; }
    ssize_t n = pread(fd, got, sizeof got, 0);
    if (n != (ssize_t)msize || memcmp(got, model, msize)) {
      size_t i = 0;
      while (i < msize && i < (size_t)(n < 0 ? 0 : n) && got[i] == model[i]) i++;
      printf("iteration %d: read back %zd bytes (want %zu), first difference at 0x%zx\n", it, n, msize, i);
      bad++;
    }
    if (close(fd)) { perror("close"); return 2; }
  }
  FILE *m = fopen(argv[3], "w");
  fwrite(model, 1, msize, m);
  fclose(m);
  printf("bad %d of %d\n", bad, iters);
  return bad ? 1 : 0;
}
`;

const ITERS = Number(process.env.GVFS_ISSUE15_ITERS ?? 100);

/** Where the server's clock stands against ours: the same, ahead, behind (two machines). */
const CONFIGS: Array<[MountKind, number]> = [
  ['write-back', 0],
  ['write-back', 2000],
  ['write-back', -2000],
  ['write-through', 2000],
  ['no-cache', 0],
  ['no-cache', 2000],
];

for (const [kind, skew] of CONFIGS) {
  describe(`issue 15 (1): size after truncate-up + extending write, then O_APPEND, ${kind}, server clock ${skew} ms ahead`, { skip: fuseSkip(), timeout: 300_000 }, () => {
    let t: Issue15Mount;
    let exe: string;
    before(async () => {
      t = await startIssue15Mount(kind, [], { serverClockAheadMs: skew });
      exe = await compileC(t.c.base, 'size-append', PROGRAM);
    });
    after(async () => {
      await t?.stop();
    });

    test(`${ITERS} iterations: fstat says 0x40000, TAIL lands at 0x40000, the server gets the same bytes`, async () => {
      const expected = path.join(t.c.base, 'expected.bin');
      const r = await run(exe, [path.join(t.dir, 'f.bin'), String(ITERS), expected]).catch((e: { stdout?: string; stderr?: string }) => {
        throw new Error(`the program found mismatches:\n${e.stdout}${e.stderr}`);
      });
      assert.match(r.stdout, new RegExp(`bad 0 of ${ITERS}`));
      // Unmounting flushes the write-back journal: the server must hold what the program wrote.
      await t.m.stop();
      const server = await fs.readFile(path.join(t.up, 'f.bin'));
      const want = await fs.readFile(expected);
      assert.equal(server.length, want.length);
      assert.ok(server.equals(want), 'the server holds the bytes the program wrote');
    });
  });
}
