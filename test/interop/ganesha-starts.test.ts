import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ganeshaSkip, startGanesha, type Ganesha } from '../helpers/ganesha.js';
import { tempDir } from '../helpers/local-server.js';

/**
 * The ganesha helper (test/helpers/ganesha.ts): instances started at the
 * same moment share the machine's rpcbind, and a registration that loses
 * the race makes ganesha exit ("Cannot register NFS V3 on TCP"; a loaded
 * run of two suites at once lost a test file to it). The helper starts such
 * an instance again. Without that, three or four of eight failed here.
 */
describe('nfs-ganesha helper: instances started at once', { skip: ganeshaSkip(), timeout: 300_000 }, () => {
  test('eight instances started together all come up and serve', async () => {
    const base = await tempDir('gvfs-ganesha-starts-');
    const started: Ganesha[] = [];
    try {
      const rs = await Promise.allSettled(
        Array.from({ length: 8 }, async (_, i) => {
          const dir = path.join(base, `export${i}`);
          await fs.mkdir(dir);
          const g = await startGanesha({ dir, workDir: path.join(base, `work${i}`) });
          started.push(g);
          return g;
        }),
      );
      const failed = rs.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => String(r.reason?.message ?? r.reason).split('\n')[0]);
      assert.deepEqual(failed, [], 'every instance started');
      assert.equal(new Set(started.map((g) => g.port)).size, 8);
    } finally {
      for (const g of started) await g.stop();
      await fs.rm(base, { recursive: true, force: true });
    }
  });
});
