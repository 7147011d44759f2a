import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { newSessionKey, writeKeyFile } from '../../../src/channel/session-key.js';
import { demoGuest, type DemoGuest } from '../../../src/vm/demo-guest.js';
import { readManifest, verifyFiles, type VmManifest } from '../../../src/vm/manifest.js';
import { publishVm } from '../../../src/vm/publish.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { tempDir } from '../../helpers/local-server.js';
import { counters, gvfs, gvfsVm, run, stopAllVms, vmSkip, waitCounters } from '../../helpers/vm.js';
import { spawnMount, type MountProc } from '../fuse/mount-helper.js';

const MEMORY = 128 * 2 ** 20;

/**
 * The whole point of GVFS: a golden VM published on the state server
 * (`gvfs proxy-server --export`, session key), cloned on the compute server
 * through the proxy client (`gvfs mount` with its disk cache and the
 * meta-data layer). Unmodified QEMU on both sides.
 */
describe('gvfs vm: publish, clone through a GVFS session, suspend and resume', { skip: vmSkip(), timeout: 1_200_000 }, () => {
  let dir: string;
  let ps: GvfsProcess | undefined;
  let g: DemoGuest;
  let m: MountProc | undefined;
  let golden: VmManifest;
  let vms: string;
  let keyFile: string;
  let cacheDir: string;
  let stateRoot: string;
  let goldenLast: number;

  const mount = async (name: string) => spawnMount(`127.0.0.1:${ps!.port}`, path.join(dir, name), ['--key', keyFile, '--cache-dir', cacheDir, '--write-back']);

  before(async () => {
    g = await demoGuest();
    dir = await tempDir('gvfs-vm-');
    const exp = path.join(dir, 'export');
    vms = path.join(exp, 'vms');
    await fs.mkdir(vms, { recursive: true });
    stateRoot = path.join(dir, 'vm-state');
    cacheDir = path.join(dir, 'cache');
    const r = await publishVm({ dir: vms, metaRoot: exp, name: 'demo', kernel: g.kernel, initrd: g.initrd, append: g.append, disk: g.disk, memoryBytes: MEMORY, ready: /gvfs-guest: counter \d+ /, readyTimeoutMs: 120_000 });
    golden = r.manifest;
    assert.equal(r.meta.status, 'generated', r.meta.note);
    goldenLast = counters(golden.lastConsoleLine ?? '')[0]?.n ?? NaN;
    // The session's account on the state server owns the VMs (here root, who published them).
    keyFile = path.join(dir, 'alice.key');
    await writeKeyFile(keyFile, newSessionKey('alice', undefined, { uid: 0, gid: 0, gids: [] }));
    ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, 'ps')]);
    m = await mount('mnt');
  });

  after(async () => {
    if (stateRoot) await stopAllVms(stateRoot);
    await m?.stop();
    await ps?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  test('publish wrote a versioned manifest naming the machine, devices, and every file with its hash', async () => {
    const mf = await readManifest(path.join(vms, 'demo'));
    assert.equal(mf.format, 'gvfs-vm');
    assert.equal(mf.version, 1);
    assert.match(mf.machine.type, /^pc-i440fx-\d+\.\d+$/);
    assert.equal(mf.memory.bytes, MEMORY);
    assert.deepEqual(mf.files.map((f) => f.role).sort(), ['device-state', 'disk', 'initrd', 'kernel', 'memory', 'resume-kernel']);
    // Clones read the kernel's boot header and setup code only: a few KiB of the kernel.
    assert.ok(mf.files.find((f) => f.role === 'resume-kernel')!.size < 128 * 1024);
    assert.equal(mf.files.find((f) => f.role === 'memory')!.size, MEMORY);
    // The device state is small: the memory stayed in the RAM file.
    assert.ok(mf.files.find((f) => f.role === 'device-state')!.size < 4 * 2 ** 20);
    assert.ok(Number.isInteger(goldenLast), `the golden VM's console ended with a counter line: ${golden.lastConsoleLine}`);
  });

  test('two clones at once through the chain: counters continue from the golden VM, disk checksums match, only part of the RAM crossed the wire', async () => {
    const [a, b] = await Promise.all(
      ['a', 'b'].map((n) => gvfsVm(['clone', 'demo', '--mount', m!.mnt, '--vm-path', 'vms', '--as', n, '--state-dir', stateRoot])),
    );
    assert.notEqual(a.pid, b.pid);
    for (const v of [a, b]) {
      const lines = await waitCounters(v.console, 2);
      // The memory came along: the counter goes on from where the golden VM stopped (N → N+1 ...), no reboot.
      assert.ok(lines[0].n > goldenLast, `${v.clone}: first counter ${lines[0].n} after the golden ${goldenLast}`);
      assert.equal(lines[1].n, lines[0].n + 1);
      // The disk came along: the guest read its data file through the overlay → golden disk on the mount.
      for (const l of lines) assert.equal(l.md5, g.dataMd5);
      assert.doesNotMatch(await fs.readFile(v.console, 'utf8'), /gvfs-guest: ready/, 'a clone resumes, it does not boot');
    }
    const list = await gvfsVm(['list', '--state-dir', stateRoot]);
    assert.deepEqual(list.map((x: { clone: string; status: string }) => [x.clone, x.status]).sort(), [['a', 'running'], ['b', 'running']]);

    const stats = await gvfs(['cache', 'stats', '--cache-dir', cacheDir]);
    const meta = await gvfs(['meta', 'stats', '--cache-dir', cacheDir]);
    const fetched = stats.sessions.reduce((s: number, x: { stats: { channelReadBytes?: number } }) => s + (x.stats.channelReadBytes ?? 0), 0);
    // What crossed the wire: blocks the cache fetched plus the meta-data layer's (compressed) bulk transfers.
    const crossed = fetched + meta.bulkWireBytes;
    const ram = golden.files.find((f) => f.role === 'memory')!;
    const all = golden.files.reduce((s, f) => s + f.size, 0);
    console.log(`# two clones: ${(crossed / 2 ** 20).toFixed(1)} MiB crossed the wire (cache ${(fetched / 2 ** 20).toFixed(1)}, bulk ${(meta.bulkWireBytes / 2 ** 20).toFixed(1)} for ${(meta.bulkRawBytes / 2 ** 20).toFixed(1)} raw), ${(meta.zeroBytes / 2 ** 20).toFixed(1)} MiB of zero blocks answered locally; golden files ${(all / 2 ** 20).toFixed(1)} MiB, RAM file ${ram.size >> 20} MiB`);
    assert.ok(crossed > 0, 'the clones read through the session');
    // Only part of the RAM file crossed: less than the RAM file alone, for both clones and every other file together.
    assert.ok(crossed < ram.size, `crossed ${crossed} bytes, RAM file ${ram.size}`);
    assert.ok(meta.zeroBytes > 0, 'zero blocks were answered locally');
    assert.equal(meta.hashMismatches, 0);

    await gvfsVm(['stop', 'a', 'b', '--state-dir', stateRoot]);
    assert.deepEqual(await gvfsVm(['list', '--state-dir', stateRoot]), []);
    // The golden VM was only read: every file still has its published hash, and its meta-data is
    // still current (QEMU opened the RAM file read-write, but nothing wrote it or changed its attributes).
    assert.deepEqual(await verifyFiles(path.join(vms, 'demo'), golden), []);
    for (const f of golden.files) {
      const show = await gvfs(['meta', 'show', path.join(vms, 'demo', f.name)]);
      assert.equal(show.current, true, `${f.name}: meta-data ${JSON.stringify(show)}`);
    }
  });

  test('suspend with write-back, restart the proxy client, resume: the state survives and the counter goes on', async () => {
    const v = await gvfsVm(['clone', 'demo', '--mount', m!.mnt, '--vm-path', 'vms', '--as', 's', '--state-dir', stateRoot]);
    await waitCounters(v.console, 2);
    const s = await gvfsVm(['suspend', 's', '--state-dir', stateRoot]);
    const before = counters(await fs.readFile(v.console, 'utf8'));
    const last = before[before.length - 1].n;
    assert.ok(s.stateBytes > 0 && s.overlayBytes > 0);
    const list = await gvfsVm(['list', '--state-dir', stateRoot]);
    assert.deepEqual(list.map((x: { clone: string; status: string }) => [x.clone, x.status]), [['s', 'suspended']]);

    // What suspend saved reached the state server itself while the proxy client still runs
    // (suspend flushed the write-back cache: not only journalled on the compute server).
    const sm = await readManifest(path.join(vms, 's'));
    assert.equal(sm.kind, 'suspended');
    assert.equal(sm.base, 'demo');
    assert.deepEqual(await verifyFiles(path.join(vms, 's'), sm), []);
    const stats = await gvfs(['cache', 'stats', '--cache-dir', cacheDir]);
    assert.equal(stats.sessions[0].stats.flushBacklog.bytes, 0);
    // The proxy client goes away and comes back (a new mount on the same cache directory).
    assert.equal(await m!.stop(), 0, m!.stderr());
    m = await mount('mnt2');

    const r = await gvfsVm(['resume', 's', '--mount', m.mnt, '--vm-path', 'vms', '--state-dir', stateRoot]);
    const text = async () => fs.readFile(r.console, 'utf8');
    const after = await waitCounters(r.console, 2);
    assert.ok(after[0].n > last, `resumed counter ${after[0].n} after ${last}`);
    assert.ok(after[0].n <= last + 3, `resumed counter ${after[0].n} continues from ${last}, not from the golden VM`);
    for (const l of after) assert.equal(l.md5, g.dataMd5);
    assert.doesNotMatch(await text(), /gvfs-guest: ready/);
    await gvfsVm(['stop', 's', '--state-dir', stateRoot]);
    assert.deepEqual(await verifyFiles(path.join(vms, 'demo'), golden), []);
  });

  test('gvfs vm clone --server starts the session mount itself, shares it, and ends it with its last clone', async () => {
    const link = ['--server', `127.0.0.1:${ps!.port}`, '--key', keyFile, '--cache-dir', path.join(dir, 'cache-srv'), '--vm-path', 'vms', '--state-dir', stateRoot];
    const [x, y] = await Promise.all(['x', 'y'].map((n) => gvfsVm(['clone', 'demo', '--as', n, ...link])));
    assert.equal(x.mount.mnt, y.mount.mnt, 'one mount for both');
    assert.equal(x.mount.pid, y.mount.pid);
    for (const v of [x, y]) assert.equal((await waitCounters(v.console, 1))[0].md5, g.dataMd5);
    const mounted = async () => (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === x.mount.mnt);
    assert.ok(await mounted());
    const stopped = await gvfsVm(['stop', 'x', 'y', '--state-dir', stateRoot]);
    assert.deepEqual(stopped.map((s: { unmounted: string | null }) => s.unmounted), [null, x.mount.mnt]);
    assert.equal(await mounted(), false);
  });

  test('errors are clear: an unknown VM, a clone name in use', async () => {
    await assert.rejects(gvfsVm(['clone', 'nosuch', '--mount', m!.mnt, '--vm-path', 'vms', '--state-dir', stateRoot]), /nosuch.*no such VM/s);
    const v = await gvfsVm(['clone', 'demo', '--mount', m!.mnt, '--vm-path', 'vms', '--as', 'dup', '--state-dir', stateRoot]);
    await assert.rejects(gvfsVm(['clone', 'demo', '--mount', m!.mnt, '--vm-path', 'vms', '--as', 'dup', '--state-dir', stateRoot]), /dup is running/);
    await gvfsVm(['stop', 'dup', '--state-dir', stateRoot]);
    assert.equal((await fs.stat(v.overlay).catch(() => undefined)), undefined);
    // QEMU's own complaint reaches the user: a VM whose manifest names a machine this QEMU lacks.
    await fs.cp(path.join(vms, 'demo'), path.join(vms, 'bad'), { recursive: true });
    const bad = await readManifest(path.join(vms, 'bad'));
    await fs.writeFile(path.join(vms, 'bad', 'manifest.json'), JSON.stringify({ ...bad, machine: { ...bad.machine, type: 'pc-i440fx-0.0' } }));
    await assert.rejects(gvfsVm(['clone', 'bad', '--mount', m!.mnt, '--vm-path', 'vms', '--state-dir', stateRoot]), /QEMU exited \(1\) while starting:[^]*unsupported machine type/);
    assert.deepEqual(await gvfsVm(['list', '--state-dir', stateRoot]), []);
    assert.ok(!(await fs.readdir(stateRoot)).some((n) => n.startsWith('bad')), 'a clone that never ran leaves nothing behind');
  });
});
