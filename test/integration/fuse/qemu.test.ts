import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { run, spawnMount, type MountProc } from './mount-helper.js';
import { fusePrereqs, hasFile, requirePrereq } from '../../helpers/prereq.js';

const qemuSkip = () => requirePrereq(...fusePrereqs(), hasFile('/usr/bin/qemu-img', 'qemu-utils'), hasFile('/usr/bin/qemu-io', 'qemu-utils'));

/**
 * QEMU's own tools as an unmodified VM technology: images on the mount,
 * driven with cache=none (O_DIRECT) and native AIO where qemu-io allows, and
 * every result compared with the same operations on local disk.
 */
describe('gvfs mount: QEMU images', { skip: qemuSkip(), timeout: 600_000 }, () => {
  let s: LocalServer;
  let m: MountProc;
  let M: string;
  let L: string;
  const both = (f: (dir: string) => Promise<unknown>) => Promise.all([f(M), f(L)]);
  const io = (img: string, fmt: string, cmds: string[], flags = ['-t', 'none', '-n']) =>
    run('qemu-io', ['-f', fmt, ...flags, ...cmds.flatMap((c) => ['-c', c]), img]).then((r) => {
      // qemu-io reports failed commands on stdout and still exits 0.
      assert.doesNotMatch(r.stdout + r.stderr, /Pattern verification failed|failed|error/i, r.stdout + r.stderr);
      return r;
    });

  before(async () => {
    s = await startLocalServer();
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'));
    M = m.mnt;
    L = path.join(s.dir, 'local');
    await fs.mkdir(L);
  });
  after(async () => {
    await m?.stop();
    await s?.stop();
  });

  const writes = ['write -P 0x11 0 1M', 'write -P 0x22 10M 512k', 'write -P 0x33 63M 64k', 'write -z 20M 1M', 'write -P 0x55 30000k 4k'];
  const reads = ['read -P 0x11 0 1M', 'read -P 0x22 10M 512k', 'read -P 0x33 63M 64k', 'read -P 0 2M 1M', 'read -P 0 20M 1M', 'read -P 0x55 30000k 4k'];

  test('qemu-img create, qemu-io writes and reads with cache=none + native AIO on qcow2, check, compare', async () => {
    await both((d) => run('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(d, 'base.qcow2'), '64M']));
    await both((d) => io(path.join(d, 'base.qcow2'), 'qcow2', writes));
    await both((d) => io(path.join(d, 'base.qcow2'), 'qcow2', reads));
    for (const d of [M, L]) assert.match((await run('qemu-img', ['check', path.join(d, 'base.qcow2')])).stdout, /No errors were found/);
    await run('qemu-img', ['compare', '-q', path.join(M, 'base.qcow2'), path.join(L, 'base.qcow2')]);
    await run('cmp', [path.join(M, 'base.qcow2'), path.join(L, 'base.qcow2')]);
    await run('cmp', [path.join(s.exportDir, 'base.qcow2'), path.join(L, 'base.qcow2')]);
  });

  test('qemu-img convert qcow2 → raw (source and target cache=none) and back, byte-identical to local', async () => {
    await both((d) => run('qemu-img', ['convert', '-T', 'none', '-t', 'none', '-O', 'raw', path.join(d, 'base.qcow2'), path.join(d, 'base.raw')]));
    await run('cmp', [path.join(M, 'base.raw'), path.join(L, 'base.raw')]);
    // The raw image stays sparse: only what was written takes space.
    assert.ok((await fs.stat(path.join(M, 'base.raw'))).blocks * 512 < 8 * 1024 * 1024);
    await both((d) => run('qemu-img', ['convert', '-c', '-O', 'qcow2', path.join(d, 'base.raw'), path.join(d, 'again.qcow2')]));
    await run('qemu-img', ['compare', '-q', path.join(M, 'again.qcow2'), path.join(L, 'again.qcow2')]);
    await run('qemu-img', ['compare', '-q', path.join(M, 'again.qcow2'), path.join(M, 'base.qcow2')]);
  });

  test('raw image: qemu-io writes and reads with cache=none, compare', async () => {
    await both((d) => run('qemu-img', ['create', '-q', '-f', 'raw', path.join(d, 'disk.raw'), '64M']));
    await both((d) => io(path.join(d, 'disk.raw'), 'raw', writes));
    await both((d) => io(path.join(d, 'disk.raw'), 'raw', reads));
    await both((d) => io(path.join(d, 'disk.raw'), 'raw', ['writev -P 0x66 40M 4k 8k 64k', 'aio_write -P 0x77 50M 256k', 'aio_flush'], ['-t', 'directsync']));
    await run('cmp', [path.join(M, 'disk.raw'), path.join(L, 'disk.raw')]);
    await run('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'raw', path.join(M, 'disk.raw'), path.join(L, 'disk.raw')]);
  });

  test('a local qcow2 overlay over a backing file on the mount', async () => {
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', path.join(M, 'base.qcow2'), '-F', 'qcow2', path.join(L, 'over-mnt.qcow2')]);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', path.join(L, 'base.qcow2'), '-F', 'qcow2', path.join(L, 'over-local.qcow2')]);
    const info = (await run('qemu-img', ['info', '--backing-chain', path.join(L, 'over-mnt.qcow2')])).stdout;
    assert.ok(info.includes(path.join(M, 'base.qcow2')));
    const ov = ['write -P 0x44 5M 1M', 'write -P 0x45 10M 4k'];
    const check = ['read -P 0x11 0 1M', 'read -P 0x44 5M 1M', 'read -P 0x45 10M 4k', 'read -P 0x22 10244k 508k', 'read -P 0x33 63M 64k'];
    for (const o of ['over-mnt.qcow2', 'over-local.qcow2']) {
      await io(path.join(L, o), 'qcow2', ov);
      await io(path.join(L, o), 'qcow2', check);
    }
    await run('qemu-img', ['compare', '-q', path.join(L, 'over-mnt.qcow2'), path.join(L, 'over-local.qcow2')]);
    for (const o of ['over-mnt', 'over-local']) await run('qemu-img', ['convert', '-O', 'raw', path.join(L, `${o}.qcow2`), path.join(L, `${o}.raw`)]);
    await run('cmp', [path.join(L, 'over-mnt.raw'), path.join(L, 'over-local.raw')]);
    // The backing file was only read.
    await run('cmp', [path.join(M, 'base.qcow2'), path.join(L, 'base.qcow2')]);
  });
});
