import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemoteNfs } from '../../src/backends/remote-nfs/remote-nfs.js';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { StableHow } from '../../src/nfs3/constants.js';
import { demoGuest, type DemoGuest } from '../../src/vm/demo-guest.js';
import { verifyFiles, type VmManifest } from '../../src/vm/manifest.js';
import { publishVm } from '../../src/vm/publish.js';
import { spawnGvfs, type GvfsProcess } from '../helpers/gvfs-proc.js';
import { ROOT, tempDir } from '../helpers/local-server.js';
import { counters, gvfsVm, stopAllVms, vmSkip, waitCounters } from '../helpers/vm.js';
import { spawnMount, type MountProc } from '../integration/fuse/mount-helper.js';
import { treeSnapshot } from './tree-snapshot.js';

const MEMORY = 128 * 2 ** 20;

/** Fails with some error (the code is shown on failure). */
async function refused(what: string, p: () => Promise<unknown>): Promise<void> {
  await assert.rejects(p, (e: NodeJS.ErrnoException) => {
    assert.ok(['EROFS', 'EACCES', 'EPERM'].includes(e.code ?? ''), `${what}: ${e.code} ${e.message}`);
    return true;
  }, what);
}

/**
 * Issue 14 item 3, golden VMs: the state server serves them read-only
 * (`--export DIR=/state:ro`). A session that clones them — even as root on
 * the state server, even on purpose — cannot change a golden file, through
 * its mount or with raw NFS calls; its clones still resume (QEMU's O_RDWR
 * open of the RAM file succeeds, its private mapping writes nothing back).
 */
describe('golden VMs on a read-only state export: clones work, nobody can change them', { skip: vmSkip(), timeout: 600_000 }, () => {
  let dir: string;
  let exp: string;
  let vms: string;
  let ps: GvfsProcess | undefined;
  let pc: GvfsProcess | undefined;
  let m: MountProc | undefined;
  let g: DemoGuest;
  let golden: VmManifest;
  let stateRoot: string;
  let snapshot: Record<string, string>;
  let goldenLast: number;

  before(async () => {
    g = await demoGuest();
    dir = await tempDir('gvfs-sec-golden-');
    exp = path.join(dir, 'export');
    vms = path.join(exp, 'vms');
    await fs.mkdir(vms, { recursive: true });
    stateRoot = path.join(dir, 'vm-state');
    const r = await publishVm({ dir: vms, metaRoot: exp, name: 'demo', kernel: g.kernel, initrd: g.initrd, append: g.append, disk: g.disk, memoryBytes: MEMORY, ready: /gvfs-guest: counter \d+ /, readyTimeoutMs: 180_000 });
    golden = r.manifest;
    goldenLast = counters(golden.lastConsoleLine ?? '')[0]?.n ?? NaN;
    snapshot = await treeSnapshot(exp);
    // The session's account is root on the state server: the strongest a session can be.
    const key = path.join(dir, 'alice.key');
    await writeKeyFile(key, newSessionKey('alice', undefined, { uid: 0, gid: 0, gids: [] }));
    ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', `${exp}=/state:ro`, '--key', key, '--state-dir', path.join(dir, 'ps')]);
    m = await spawnMount(`127.0.0.1:${ps.port}`, path.join(dir, 'mnt'), ['--key', key, '--export', '/state', '--cache-dir', path.join(dir, 'cache'), '--write-back']);
    pc = await spawnGvfs(['proxy-client', '--server', `127.0.0.1:${ps.port}`, '--key', key, '--listen', '127.0.0.1:0']);
  });

  after(async () => {
    if (stateRoot) await stopAllVms(stateRoot);
    await m?.stop();
    await pc?.stop();
    await ps?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  test('a clone resumes from the read-only golden VM (QEMU opens the RAM file O_RDWR, maps it private)', async () => {
    const v = await gvfsVm(['clone', 'demo', '--mount', m!.mnt, '--vm-path', 'vms', '--as', 'a', '--state-dir', stateRoot]);
    const lines = await waitCounters(v.console, 2);
    assert.ok(lines[0].n > goldenLast, `first counter ${lines[0].n} after the golden ${goldenLast}: resumed, not rebooted`);
    for (const l of lines) assert.equal(l.md5, g.dataMd5);
    await gvfsVm(['stop', 'a', '--state-dir', stateRoot]);
    assert.deepEqual(await verifyFiles(path.join(vms, 'demo'), golden), []);
  });

  test('through the mount: write, O_RDWR write, truncate, chmod, chown, utimes, rename, remove, create: all refused', async () => {
    const d = path.join(m!.mnt, 'vms', 'demo');
    const ram = path.join(d, 'ram');
    await refused('writeFile', () => fs.writeFile(ram, 'EVIL'));
    await refused('append', () => fs.appendFile(path.join(d, 'state'), 'EVIL'));
    // O_RDWR opens (what QEMU needs) but nothing written through it lands.
    const fh = await fs.open(ram, 'r+');
    try {
      await refused('write through an O_RDWR descriptor', async () => {
        await fh.write(Buffer.from('EVIL'), 0, 4, 0);
        await fh.sync();
      });
    } finally {
      await fh.close().catch(() => undefined);
    }
    await refused('open O_RDWR|O_TRUNC', () => fs.open(ram, 'r+').then(() => fs.open(ram, 'w')));
    await refused('truncate', () => fs.truncate(ram, 0));
    await refused('chmod', () => fs.chmod(ram, 0o4777));
    await refused('chown', () => fs.chown(ram, 1234, 1234));
    await refused('utimes', () => fs.utimes(ram, 1, 1));
    await refused('rename', () => fs.rename(ram, path.join(d, 'ram.old')));
    await refused('rename the VM', () => fs.rename(d, path.join(m!.mnt, 'vms', 'gone')));
    await refused('unlink', () => fs.unlink(path.join(d, 'disk.qcow2')));
    await refused('create', () => fs.writeFile(path.join(d, 'new'), 'x'));
    await refused('mkdir', () => fs.mkdir(path.join(d, 'sub')));
    await refused('symlink', () => fs.symlink('/etc/passwd', path.join(d, 'manifest.json.evil')));
    await refused('rm -r', () => fs.rm(d, { recursive: true }));
  });

  test('raw NFSv3 through the session (proxy client → keyed proxy server): ROFS for every change', async () => {
    const c = new RemoteNfs({ host: '127.0.0.1', port: pc!.port, timeoutMs: 30_000 });
    try {
      const root = (await c.mount('/state', ROOT)).fh;
      const vdir = (await c.lookup(ROOT, root, 'vms')).fh;
      const d = (await c.lookup(ROOT, vdir, 'demo')).fh;
      const ram = (await c.lookup(ROOT, d, 'ram')).fh;
      const rofs = { code: 'ROFS' };
      await assert.rejects(c.write(ROOT, ram, 0, Buffer.from('EVIL'), StableHow.FILE_SYNC), rofs);
      await assert.rejects(c.setattr(ROOT, ram, { size: 0 }), rofs);
      await assert.rejects(c.setattr(ROOT, ram, { mode: 0o4777 }), rofs);
      await assert.rejects(c.remove(ROOT, d, 'ram'), rofs);
      await assert.rejects(c.rename(ROOT, d, 'state', d, 'ram'), rofs);
      await assert.rejects(c.rmdir(ROOT, vdir, 'demo'), rofs);
      await assert.rejects(c.create(ROOT, d, 'ram', { mode: 'unchecked', attrs: { size: 0 } }), rofs);
      await assert.rejects(c.commit(ROOT, ram, 0, 0), rofs);
    } finally {
      await c.close();
    }
  });

  test('afterwards the golden VM is unchanged byte for byte (hashes, modes, owners, times, names)', async () => {
    // The session's write-back journal took nothing to deliver later.
    assert.deepEqual(await verifyFiles(path.join(vms, 'demo'), golden), []);
    assert.deepEqual(await treeSnapshot(exp), snapshot);
  });
});
