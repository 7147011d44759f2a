import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { newSessionKey, writeKeyFile } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import { tempDir } from '../../helpers/local-server.js';
import { fuseSkip, spawnMount, type MountProc } from './mount-helper.js';

const run = promisify(execFile);

/**
 * Issue 20, end to end through the KERNEL's caches: two hosts (two `gvfs
 * mount` processes, each with its own cache directory, poll model, 1 s
 * period) on one proxy server exporting a local directory. Host B's kernel
 * holds the file's attributes (--attr-timeout 3600: the kernel never asks
 * on its own) and its pages (an open descriptor, read once). Host A (or a
 * program on the server's disk) changes the file: B's next poll drops the
 * cache's copy AND, through low-level FUSE notifications, the kernel's
 * attributes and pages, so fstat and pread on B's still-open descriptor see
 * the new bytes within one poll period.
 */
const P = 1000;
const SLACK = 2000;

describe('kernel cache invalidation: poll reaches the page and attribute caches of a FUSE mount', { skip: fuseSkip(), timeout: 300_000 }, () => {
  let base: string;
  let exportDir: string;
  let ps: ProxyServer;
  let a: MountProc;
  let b: MountProc;

  before(async () => {
    base = await tempDir('gvfs-kinval-');
    exportDir = path.join(base, 'export');
    await fs.mkdir(exportDir);
    const ka = newSessionKey('alice');
    const kb = newSessionKey('alice');
    ps = await createProxyServer({
      sessions: new SessionRegistry([ka, kb]),
      exports: [{ kind: 'local', dir: exportDir }],
      map: new Map([['alice', { uid: 0, gid: 0, gids: [] }]]),
      stateDir: path.join(base, 'ps-state'),
    });
    const port = (await ps.listen(0, '127.0.0.1')).port;
    await writeKeyFile(path.join(base, 'a.key'), ka);
    await writeKeyFile(path.join(base, 'b.key'), kb);
    await fs.writeFile(path.join(exportDir, 'f'), 'version 1');
    const common = ['--consistency', 'poll', '--poll-period', String(P / 1000), '--attr-timeout', '3600', '--write-through'];
    a = await spawnMount(`127.0.0.1:${port}`, path.join(base, 'mnt-a'), ['--key', path.join(base, 'a.key'), '--cache-dir', path.join(base, 'cache-a'), ...common]);
    b = await spawnMount(`127.0.0.1:${port}`, path.join(base, 'mnt-b'), ['--key', path.join(base, 'b.key'), '--cache-dir', path.join(base, 'cache-b'), ...common]);
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
    await ps?.close();
    if (base) await fs.rm(base, { recursive: true, force: true });
  });

  /** B's descriptor shows `want` (fstat size and pread bytes) within one poll period; never later. */
  async function openFdSees(fd: fs.FileHandle, want: string, t0: number): Promise<number> {
    for (;;) {
      const st = await fd.stat();
      const buf = Buffer.alloc(want.length + 64);
      const { bytesRead } = await fd.read(buf, 0, buf.length, 0);
      const got = buf.subarray(0, bytesRead).toString();
      if (st.size === want.length && got === want) return Date.now() - t0;
      assert.ok(Date.now() - t0 <= P + SLACK, `B's open descriptor still shows size ${st.size}, ${JSON.stringify(got)} ${Date.now() - t0} ms after the change`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  test("a change on host A reaches host B's kernel: its cached attributes and pages are dropped", async () => {
    const fb = path.join(b.mnt, 'f');
    const fd = await fs.open(fb, 'r');
    try {
      // The kernel now holds f's attributes (for an hour) and its one page.
      assert.equal((await fd.readFile()).toString(), 'version 1');
      assert.equal((await fd.stat()).size, 9);
      for (let round = 2; round <= 3; round++) {
        const text = `version ${round}: ${'y'.repeat(round * 7)}`;
        await fs.writeFile(path.join(a.mnt, 'f'), text); // write-through: on the server when close returns
        const t0 = Date.now();
        const ms = await openFdSees(fd, text, t0);
        assert.ok(ms <= P + SLACK, `B saw A's change after ${ms} ms`);
        // And a fresh open and stat by path agree.
        assert.equal(await fs.readFile(fb, 'utf8'), text);
        assert.equal((await fs.stat(fb)).size, text.length);
      }
    } finally {
      await fd.close();
    }
  });

  test("a change made on the server's disk by another program reaches B's kernel too", async () => {
    const fb = path.join(b.mnt, 'f');
    const fd = await fs.open(fb, 'r');
    try {
      const before = (await fd.readFile()).toString();
      const text = `${before} + appended on the server disk`;
      const t0 = Date.now();
      await run('sh', ['-c', `printf %s ' + appended on the server disk' >> f`], { cwd: exportDir });
      const ms = await openFdSees(fd, text, t0);
      assert.ok(ms <= P + SLACK, `B saw the disk change after ${ms} ms`);
    } finally {
      await fd.close();
    }
  });
});
