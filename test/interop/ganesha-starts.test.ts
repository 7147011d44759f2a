import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ganeshaSkip, startGanesha, type Ganesha } from '../helpers/ganesha.js';
import { tempDir } from '../helpers/local-server.js';
import { ephemeralRange, reservePort } from '../helpers/ports.js';

/**
 * The ganesha helper (test/helpers/ganesha.ts): instances started at the
 * same moment share the machine's rpcbind, and a registration that loses
 * the race makes ganesha exit ("Cannot register NFS V3 on TCP"; a loaded
 * run of two suites at once lost a test file to it). The helper starts such
 * an instance again. Without that, three or four of eight failed here.
 * Their ports come from test/helpers/ports.ts: a CI run lost one of eight
 * to "exited during start-up (code 2)" when ports came from listen(0).
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
      // The whole message: it carries ganesha's log, gone with `base` afterwards.
      const failed = rs.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => String(r.reason?.message ?? r.reason));
      assert.deepEqual(failed, [], 'every instance started');
      assert.equal(new Set(started.map((g) => g.port)).size, 8);
    } finally {
      for (const g of started) await g.stop();
      await fs.rm(base, { recursive: true, force: true });
    }
  });

  test('ports the caller chose and someone else holds: the start fails, saying why, and is not tried on other ports', async () => {
    const base = await tempDir('gvfs-ganesha-taken-');
    const holder = net.createServer();
    try {
      const port = await reservePort();
      await new Promise<void>((r) => holder.listen(port, '127.0.0.1', r));
      const mountPort = await reservePort();
      const dir = path.join(base, 'export');
      await fs.mkdir(dir);
      await assert.rejects(startGanesha({ dir, port, mountPort, workDir: path.join(base, 'work') }), /exited during start-up[\s\S]*Cannot bind/);
    } finally {
      holder.close();
      await fs.rm(base, { recursive: true, force: true });
    }
  });
});

describe('test ports (test/helpers/ports.ts)', () => {
  test('outside the ephemeral range, each handed out once, free to listen on', async () => {
    const [first, last] = ephemeralRange();
    const ports = await Promise.all(Array.from({ length: 64 }, () => reservePort()));
    assert.equal(new Set(ports).size, ports.length);
    for (const p of ports) assert.ok(p < first || p > last, `${p} outside ${first}-${last}`);
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(ports[0], '127.0.0.1', r));
    s.close();
  });
});
