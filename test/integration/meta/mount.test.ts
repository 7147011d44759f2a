import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { memoryStateFile } from '../../../bench/lib/files.js';
import { newSessionKey, writeKeyFile } from '../../../src/channel/session-key.js';
import { META_DIR } from '../../../src/meta/format.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { dropPages, run, spawnMount } from '../fuse/mount-helper.js';
import { fusePrereqs, hasFile, requirePrereq } from '../../helpers/prereq.js';
import { gvfsArgv } from '../../../src/cli/self.js';

const skip = () => requirePrereq(...fusePrereqs(), hasFile('/usr/bin/qemu-img', 'qemu-utils'), hasFile('/usr/bin/qemu-io', 'qemu-utils'));
const gvfs = async (args: string[]) => (await run(process.execPath, gvfsArgv(args), { maxBuffer: 16 << 20 })).stdout;

/**
 * Meta-data end to end with the real commands: `gvfs meta gen/show/record/stats`,
 * `gvfs proxy-server --export`, and `gvfs mount` with a disk cache, read by
 * unmodified programs (cmp, qemu-img, qemu-io, cat) with meta-data on and off.
 */
describe('meta-data through gvfs mount (QEMU image, memory state)', { skip: skip(), timeout: 600_000 }, () => {
  let dir: string;
  let exp: string;
  let keyFile: string;
  let ps: GvfsProcess;
  const patterns = ['write -P 0x11 0 1M', 'write -P 0x22 10M 512k', 'write -P 0x33 40M 64k', 'write -P 0x44 60M 3M'];
  const checks = ['read -P 0x11 0 1M', 'read -P 0x22 10M 512k', 'read -P 0x33 40M 64k', 'read -P 0 20M 4M', 'read -P 0x44 60M 3M'];

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-meta-mount-'));
    exp = path.join(dir, 'export');
    await fs.mkdir(path.join(exp, 'vm1'), { recursive: true });
    // The state server's side: a golden raw disk and qcow2 image written by qemu-io, a memory-state-like file.
    await run('qemu-img', ['create', '-q', '-f', 'raw', path.join(exp, 'vm1', 'disk.raw'), '64M']);
    await run('qemu-io', ['-f', 'raw', ...patterns.flatMap((c) => ['-c', c]), path.join(exp, 'vm1', 'disk.raw')]);
    await run('qemu-img', ['convert', '-O', 'qcow2', path.join(exp, 'vm1', 'disk.raw'), path.join(exp, 'vm1', 'disk.qcow2')]);
    await memoryStateFile(path.join(exp, 'vm1', 'ram.img'), 24 << 20, 0.5, 77);
    // --json prints progress event lines; the last is the done event with the result.
    const gen = JSON.parse((await gvfs(['meta', 'gen', '--root', exp, '--hint', 'whole', '--json', ...['disk.raw', 'disk.qcow2', 'ram.img'].map((f) => path.join(exp, 'vm1', f))])).trim().split('\n').pop()!).files;
    assert.equal(gen.length, 3);
    keyFile = path.join(dir, 'session.key');
    await writeKeyFile(keyFile, newSessionKey('alice', undefined, { uid: 0, gid: 0, gids: [] }));
    ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', exp, '--key', keyFile, '--state-dir', path.join(dir, 'ps')]);
  });
  after(async () => {
    await ps?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  test('gvfs meta show: zero map, hint and state of each file', async () => {
    const ram = JSON.parse(await gvfs(['meta', 'show', '--json', path.join(exp, 'vm1', 'ram.img')]));
    assert.equal(ram.current, true);
    assert.equal(ram.hint, 'whole');
    assert.ok(ram.zeroPercent > 40 && ram.zeroPercent < 60, `zero ${ram.zeroPercent}%`);
    const raw = JSON.parse(await gvfs(['meta', 'show', '--json', path.join(exp, 'vm1', 'disk.raw')]));
    // 64 MiB written in 5.5 MiB: the rest are zero blocks.
    assert.ok(raw.zeroBlocks >= raw.blocks - 90, `${raw.zeroBlocks} of ${raw.blocks}`);
    assert.match(await gvfs(['meta', 'show', path.join(exp, 'vm1', 'ram.img')]), /state\s+current/);
  });

  for (const meta of [true, false]) {
    test(`byte-identical reads with meta-data ${meta ? 'on' : 'off'}; the meta-data directory never shows`, async () => {
      const cacheDir = path.join(dir, `cache-${meta}`);
      const m = await spawnMount(`127.0.0.1:${ps.port}`, path.join(dir, `mnt-${meta}`), ['--key', keyFile, '--cache-dir', cacheDir, ...(meta ? [] : ['--no-meta'])]);
      try {
        const M = path.join(m.mnt, 'vm1');
        assert.deepEqual((await fs.readdir(m.mnt)).sort(), ['vm1']);
        assert.ok(!(await fs.readdir(M)).includes(META_DIR));
        await assert.rejects(fs.stat(path.join(m.mnt, META_DIR)), { code: 'ENOENT' });
        await assert.rejects(fs.mkdir(path.join(m.mnt, META_DIR)), { code: 'EACCES' });
        await run('cmp', [path.join(M, 'ram.img'), path.join(exp, 'vm1', 'ram.img')]);
        await run('cmp', [path.join(M, 'disk.raw'), path.join(exp, 'vm1', 'disk.raw')]);
        await run('qemu-img', ['compare', '-q', path.join(M, 'disk.qcow2'), path.join(exp, 'vm1', 'disk.qcow2')]);
        assert.match((await run('qemu-img', ['check', '-U', path.join(M, 'disk.qcow2')])).stdout, /No errors were found/);
        const r = await run('qemu-io', ['-r', '-U', '-f', 'qcow2', ...checks.flatMap((c) => ['-c', c]), path.join(M, 'disk.qcow2')]);
        assert.doesNotMatch(r.stdout + r.stderr, /Pattern verification failed|failed|error/i, r.stdout + r.stderr);
        if (meta) {
          const st = JSON.parse(await gvfs(['meta', 'stats', '--cache-dir', cacheDir, '--json']));
          assert.equal(st.hashMismatches, 0);
          assert.ok(st.zeroBytes > 8 << 20, `zero bytes answered locally: ${st.zeroBytes}`);
          assert.ok(st.bulkRawBytes > 0 && st.bulkWireBytes < st.bulkRawBytes, JSON.stringify(st));
          assert.equal(st.plainBytes, 0, 'files with meta-data were read the plain way');
        } else {
          await assert.rejects(gvfs(['meta', 'stats', '--cache-dir', cacheDir, '--json']), /without the meta-data layer/);
        }
      } finally {
        assert.equal(await m.stop(), 0);
      }
    });
  }

  test('read again from the disk cache: answered from its files (local reads), byte-identical, zero blocks counted as zero', async () => {
    const cacheDir = path.join(dir, 'cache-local');
    const m = await spawnMount(`127.0.0.1:${ps.port}`, path.join(dir, 'mnt-local'), ['--key', keyFile, '--cache-dir', cacheDir]);
    const ram = path.join(m.mnt, 'vm1', 'ram.img');
    try {
      await run('cmp', [ram, path.join(exp, 'vm1', 'ram.img')]);
      const first = JSON.parse(await gvfs(['meta', 'stats', '--cache-dir', cacheDir, '--json']));
      await dropPages(ram);
      await run('cmp', [ram, path.join(exp, 'vm1', 'ram.img')]);
      const second = JSON.parse(await gvfs(['meta', 'stats', '--cache-dir', cacheDir, '--json']));
      // The second pass answers every zero block of the file again, locally, and counts it as such. (Not "as
      // many as the first pass": a cold pass reads some ranges twice, the front end's read-ahead and the
      // kernel's own read of them, and counts what each read answered: 24 to 28 MiB read for the 24 MiB file.)
      const shown = JSON.parse(await gvfs(['meta', 'show', '--json', path.join(exp, 'vm1', 'ram.img')]));
      const fileZero = shown.zeroBlocks * shown.blockSize;
      assert.ok(fileZero > 8 << 20, `the file has ${fileZero} zero bytes`);
      assert.ok(second.zeroBytes - first.zeroBytes >= fileZero - (1 << 20), `zero bytes ${first.zeroBytes} then ${second.zeroBytes}, of ${fileZero} in the file`);
      assert.equal(second.hashMismatches, 0);
    } finally {
      assert.equal(await m.stop(), 0);
    }
    const st = m.stats();
    assert.ok(st && st.localReads > 8, `the second pass came from the cache's files: ${st?.localReads} local reads`);
  });

  test('local reads of a file with meta-data make the cache read nothing ahead: zero blocks never cross, not even as plain READs', async () => {
    const cacheDir = path.join(dir, 'cache-local-zero');
    const m = await spawnMount(`127.0.0.1:${ps.port}`, path.join(dir, 'mnt-local-zero'), ['--key', keyFile, '--cache-dir', cacheDir]);
    const raw = path.join(m.mnt, 'vm1', 'disk.raw');
    const dd = () => run('dd', [`if=${raw}`, 'of=/dev/null', 'bs=1M', 'count=16', 'status=none']);
    try {
      // 16 MiB of the disk: data at 0 (1 MiB) and 10 MiB (512 KiB), zero blocks elsewhere, never fetched.
      await dd();
      for (let i = 0; i < 2; i++) {
        await dropPages(raw);
        await dd();
      }
    } finally {
      assert.equal(await m.stop(), 0);
    }
    const st = m.stats();
    assert.ok(st && st.localReads >= 2, `the cached data blocks were read locally: ${st?.localReads}`);
    const c = JSON.parse(await gvfs(['cache', 'stats', '--cache-dir', cacheDir, '--json']));
    const plain = JSON.stringify(c).match(/"channelReadBytes":(\d+)/g)?.map((x) => Number(x.split(':')[1])) ?? [];
    assert.ok(plain.length > 0, JSON.stringify(c).slice(0, 300));
    assert.ok(plain.every((n) => n === 0), `plain READ payload over the channel: ${plain}`);
  });

  test('gvfs meta record stores the order a workload read, as the prefetch list', async () => {
    const cacheDir = path.join(dir, 'cache-rec');
    const m = await spawnMount(`127.0.0.1:${ps.port}`, path.join(dir, 'mnt-rec'), ['--key', keyFile, '--cache-dir', cacheDir]);
    try {
      const img = path.join(m.mnt, 'vm1', 'disk.qcow2');
      const out = JSON.parse(await gvfs(['meta', 'record', '--cache-dir', cacheDir, '--json', '--', 'qemu-io', '-r', '-U', '-f', 'qcow2', '-c', 'read 40M 64k', '-c', 'read 0 64k', img]));
      assert.equal(out.files.length, 1);
      assert.equal(out.files[0].stored, true, out.files[0].error);
      assert.ok(out.files[0].blocks >= 2);
    } finally {
      await m.stop();
    }
    const shown = JSON.parse(await gvfs(['meta', 'show', '--json', path.join(exp, 'vm1', 'disk.qcow2')]));
    assert.equal(shown.hint, 'prefetch');
    assert.ok(shown.orderLength >= 2);
    assert.equal(shown.current, true, 'storing the order changed the file itself');
  });
});
