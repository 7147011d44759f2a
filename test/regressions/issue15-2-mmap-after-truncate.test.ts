import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { compileC, fuseSkip, run, startIssue15Mount, type Issue15Mount, type MountKind } from './issue15-helper.js';

/**
 * Issue 15, failure 2: after ftruncate() down, a mapped read of the page
 * that holds the new end of file must show zeros past it (the kernel's
 * cached page must not keep the old bytes).
 */
const PROGRAM = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
  const char *F = argv[1];
  int iters = atoi(argv[2]), bad = 0;
  static unsigned char buf[3 * 4096];
  for (int it = 0; it < iters; it++) {
    int fd = open(F, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror("open"); return 2; }
    memset(buf, 0xA0 | (it & 15), sizeof buf);
    if (pwrite(fd, buf, sizeof buf, 0) != sizeof buf) { perror("pwrite"); return 2; }
    /* The pages are in the kernel's cache (read through a mapping). */
    unsigned char *m = mmap(NULL, sizeof buf, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 2; }
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < sizeof buf; i += 512) sink ^= m[i];
    off_t n = 4096 + 1000 + it;
    if (ftruncate(fd, n)) { perror("ftruncate"); return 2; }
    /* Within the end-of-file page, past the new end: zeros. */
    for (size_t i = n; i < 2 * 4096; i++) if (m[i]) { printf("iteration %d: byte %zu past the end (%lld) reads 0x%02x through the mapping\n", it, i, (long long)n, m[i]); bad++; break; }
    unsigned char *m2 = mmap(NULL, 2 * 4096, PROT_READ, MAP_SHARED, fd, 0);
    for (size_t i = n; i < 2 * 4096; i++) if (m2[i]) { printf("iteration %d: a new mapping: byte %zu reads 0x%02x\n", it, i, m2[i]); bad++; break; }
    munmap(m2, 2 * 4096);
    munmap(m, sizeof buf);
    close(fd);
  }
  printf("bad %d of %d\n", bad, iters);
  return bad ? 1 : 0;
}
`;

for (const kind of ['no-cache', 'write-back', 'write-through'] as MountKind[]) {
  describe(`issue 15 (2): mapped read past the end after truncate down, ${kind}`, { skip: fuseSkip(), timeout: 180_000 }, () => {
    let t: Issue15Mount;
    let exe: string;
    before(async () => {
      t = await startIssue15Mount(kind);
      exe = await compileC(t.c.base, 'mmap-trunc', PROGRAM);
    });
    after(async () => {
      await t?.stop();
    });

    test('20 iterations: zeros past the new end in the end-of-file page', async () => {
      const r = await run(exe, [path.join(t.dir, 'm.bin'), '20']).catch((e: { stdout?: string }) => {
        throw new Error(`stale bytes past the end:\n${e.stdout}`);
      });
      assert.match(r.stdout, /bad 0 of 20/);
    });
  });
}
