import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hasFile, requirePrereq } from '../../helpers/prereq.js';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { fuseSkip, spawnMount, type MountProc } from './mount-helper.js';
import { attachStrace, detachStrace, STRACE } from '../../helpers/strace.js';

/**
 * Where `gvfs mount` reads its requests: /dev/fuse is read on the JS
 * thread's event loop (native/src/fuse_ll.c), so a request wakes the one
 * thread that answers it. With a reader thread of its own, every request
 * cost a second wake-up (the reader's, then the JS thread's); on an idle
 * machine each woke a sleeping CPU. strace shows which thread reads the
 * device: every read must be the process's main thread.
 */
describe('gvfs mount: requests are read by the thread that answers them', { skip: fuseSkip() || requirePrereq(hasFile(STRACE, 'strace')), timeout: 120_000 }, () => {
  let s: LocalServer;
  let m: MountProc;

  before(async () => {
    s = await startLocalServer();
    await fs.chmod(s.dir, 0o755);
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'));
  });
  after(async () => {
    await m?.stop();
    await s?.stop();
  });

  test('every read of /dev/fuse during lookups, creates, writes, reads, listings and removes is the main thread', async () => {
    const log = path.join(s.dir, 'strace.log');
    const st = await attachStrace(m.pid, ['--seccomp-bpf', '-yy', '-e', 'trace=read,readv'], log);
    let trace = '';
    try {
      const d = path.join(m.mnt, 'd');
      await fs.mkdir(d);
      for (let i = 0; i < 20; i++) {
        const f = path.join(d, `f${i}`);
        await fs.writeFile(f, Buffer.alloc(5000 + i, i));
        assert.equal((await fs.readFile(f)).length, 5000 + i);
        await fs.stat(f);
      }
      assert.equal((await fs.readdir(d)).length, 20);
      for (let i = 0; i < 20; i++) await fs.unlink(path.join(d, `f${i}`));
      await fs.rmdir(d);
    } finally {
      trace = await detachStrace(st, log);
    }
    const reads = trace
      .split('\n')
      .map((l) => /^(\d+)\s+readv?\(\d+<\/dev\/fuse/.exec(l))
      .filter((x): x is RegExpExecArray => x !== null)
      .map((x) => Number(x[1]));
    // mkdir, 20 × (create, write, flush, release, open, read, ...), readdir, 20 unlinks, rmdir: well over 100 requests.
    assert.ok(reads.length >= 100, `only ${reads.length} reads of /dev/fuse in the trace`);
    const others = [...new Set(reads.filter((tid) => tid !== m.pid))];
    assert.deepEqual(others, [], `/dev/fuse read by threads ${others.join(', ')}, not the main thread ${m.pid}`);
  });
});
