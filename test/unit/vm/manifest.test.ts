import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { qemuArgs, shQuote } from '../../../src/vm/machine.js';
import { describeFile, readManifest, verifyFiles, writeManifest, type VmManifest } from '../../../src/vm/manifest.js';

const manifest = (): VmManifest => ({
  format: 'gvfs-vm',
  version: 1,
  kind: 'golden',
  name: 'demo',
  created: new Date(0).toISOString(),
  qemu: { version: '7.2.22' },
  machine: { type: 'pc-i440fx-7.2', accel: 'tcg', cpus: 1, cpu: 'qemu64' },
  memory: { bytes: 128 * 2 ** 20, backendId: 'ram0', file: 'ram' },
  boot: { kernel: 'kernel', initrd: 'initrd', append: 'console=ttyS0' },
  disks: [{ id: 'disk0', file: 'disk.qcow2', format: 'qcow2', device: 'virtio-blk-pci' }],
  serial: { device: 'isa-serial', id: 'console' },
  deviceState: { file: 'state', capabilities: ['x-ignore-shared'], includesMemory: false },
  files: [],
});

test('manifest: written atomically, read back; unknown format or version refused; hashes verified', { timeout: 60_000 }, async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-manifest-'));
  try {
    await fs.writeFile(path.join(dir, 'ram'), Buffer.alloc(8192, 1));
    const m = manifest();
    m.files.push(await describeFile(dir, 'ram', 'memory'));
    await writeManifest(dir, m);
    assert.deepEqual(await readManifest(dir), m);
    assert.deepEqual(await verifyFiles(dir, m), []);
    await fs.appendFile(path.join(dir, 'ram'), 'x');
    assert.deepEqual(await verifyFiles(dir, m), ['ram']);
    await writeManifest(dir, { ...m, version: 2 as 1 });
    await assert.rejects(readManifest(dir), /manifest version 2; this gvfs reads version 1/);
    await writeManifest(dir, { ...m, format: 'other' as 'gvfs-vm' });
    await assert.rejects(readManifest(dir), /not a GVFS VM manifest/);
    await assert.rejects(readManifest(path.join(dir, 'nope')), /no such VM/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('qemuArgs: one machine for publish (share=on) and clone (share=off, -incoming defer); commas in paths doubled', { timeout: 60_000 }, () => {
  const m = manifest();
  const place = { name: 'c', kernel: '/k', initrd: '/i', disks: { disk0: '/x,y/disk.qcow2' }, consoleLog: '/c.log', qmpSocket: '/q.sock' };
  const pub = qemuArgs(m, { ...place, ramFile: '/g/ram', share: true });
  const clone = qemuArgs(m, { ...place, ramFile: '/mnt/g/ram', share: false, incoming: true });
  assert.ok(pub.includes('memory-backend-file,id=ram0,size=134217728,mem-path=/g/ram,share=on'));
  assert.ok(clone.includes('memory-backend-file,id=ram0,size=134217728,mem-path=/mnt/g/ram,share=off'));
  assert.ok(!pub.includes('-incoming'));
  assert.deepEqual(clone.slice(-2), ['-incoming', 'defer']);
  assert.ok(clone.includes('file=/x,,y/disk.qcow2,if=none,id=disk0,format=qcow2,cache=writeback'));
  assert.ok(pub.includes('pc-i440fx-7.2,memory-backend=ram0'));
  assert.ok(!qemuArgs(m, { ...place, initrd: undefined, ramFile: '/r', share: false }).includes('-initrd'));
  assert.equal(shQuote("a b'c"), `'a b'\\''c'`);
});
