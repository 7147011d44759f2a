import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { newSessionKey, writeKeyFile } from '../../../src/channel/session-key.js';
import { EXIT } from '../../../src/cli/exit-codes.js';
import { ALICE, startChain, type Chain } from '../../helpers/chain.js';
import { ganeshaSkip } from '../../helpers/ganesha.js';
import { errCode, fuseSkip, run, spawnMount, type MountProc } from './mount-helper.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * The whole chain: programs → FUSE mount → proxy client (in the mount
 * process) → proxy server (session key, identity map) → upstream NFS server
 * (gvfs serve, and nfs-ganesha as an independent one).
 */
for (const kind of ['gvfs', 'ganesha'] as const) {
  const skip = fuseSkip() || (kind === 'ganesha' && ganeshaSkip());
  describe(`gvfs mount through the chain to ${kind}`, { skip, timeout: 600_000 }, () => {
    let c: Chain;
    let m: MountProc;
    let keyFile: string;
    const at = (...p: string[]) => path.join(m.mnt, ...p);
    const up = (...p: string[]) => path.join(c.upstream.dir, ...p);

    before(async () => {
      c = await startChain(kind);
      await fs.mkdir(up('pub'), { mode: 0o777 });
      await fs.chmod(up('pub'), 0o777);
      await fs.mkdir(up('private'), { mode: 0o700 });
      await fs.chmod(up('private'), 0o700);
      await fs.writeFile(up('root-only.txt'), 'secret', { mode: 0o600 });
      await fs.chmod(up('root-only.txt'), 0o600);
      await fs.writeFile(up('readable.txt'), 'for everyone', { mode: 0o644 });
      keyFile = path.join(c.base, 'alice.key');
      await writeKeyFile(keyFile, c.key);
      m = await spawnMount(`127.0.0.1:${c.proxyServerPort}`, path.join(c.base, 'mnt'), ['--key', keyFile]);
    });
    after(async () => {
      await m?.stop();
      await c?.stop();
    });

    test('files copied in and out are byte-identical and belong to the mapped account', async () => {
      const data = randomBytes(8 * 1024 * 1024 + 77);
      const src = path.join(c.base, 'src.bin');
      await fs.writeFile(src, data);
      await run('cp', [src, at('pub', 'in.bin')]);
      assert.equal(sha(await fs.readFile(up('pub', 'in.bin'))), sha(data));
      const st = await fs.stat(up('pub', 'in.bin'));
      assert.deepEqual([st.uid, st.gid], [ALICE.uid, ALICE.gid]);
      assert.equal((await fs.stat(at('pub', 'in.bin'))).uid, ALICE.uid);
      await run('cp', [at('pub', 'in.bin'), path.join(c.base, 'out.bin')]);
      assert.equal(sha(await fs.readFile(path.join(c.base, 'out.bin'))), sha(data));
      assert.equal((await fs.readFile(at('readable.txt'), 'utf8')), 'for everyone');
    });

    test('namespace operations: mkdir, ls, mv over an existing file, ln -s, ln, rm -r', async () => {
      await run('mkdir', ['-p', at('pub', 'a', 'b')]);
      await fs.writeFile(at('pub', 'a', 'b', 'one'), '1');
      await fs.writeFile(at('pub', 'a', 'two'), '2');
      await run('mv', [at('pub', 'a', 'b', 'one'), at('pub', 'a', 'two')]);
      assert.equal(await fs.readFile(up('pub', 'a', 'two'), 'utf8'), '1');
      await run('ln', ['-s', 'two', at('pub', 'a', 'sym')]);
      await run('ln', [at('pub', 'a', 'two'), at('pub', 'a', 'hard')]);
      assert.equal(await fs.readFile(at('pub', 'a', 'sym'), 'utf8'), '1');
      assert.equal((await fs.stat(at('pub', 'a', 'hard'))).nlink, 2);
      const ls = (await run('ls', ['-la', at('pub', 'a')])).stdout;
      assert.match(ls, /sym -> two/);
      await fs.truncate(at('pub', 'a', 'hard'), 0);
      assert.equal((await fs.stat(up('pub', 'a', 'two'))).size, 0);
      await run('rm', ['-r', at('pub', 'a')]);
      assert.equal(await errCode(fs.stat(up('pub', 'a'))), 'ENOENT');
    });

    test('the session identity is enforced by the servers: EACCES although the caller is root', async () => {
      assert.equal(await errCode(fs.readdir(at('private'))), 'EACCES');
      assert.equal(await errCode(fs.readFile(at('root-only.txt'))), 'EACCES');
      assert.equal(await errCode(fs.writeFile(at('new-at-root.txt'), 'x')), 'EACCES');
      assert.equal(await errCode(fs.appendFile(at('readable.txt'), 'x')), 'EACCES');
      assert.equal(await fs.readFile(up('readable.txt'), 'utf8'), 'for everyone');
    });

    test('large offsets, sparse files and a qcow2 image through the chain', async () => {
      const fh = await fs.open(at('pub', 'sparse.bin'), 'w');
      await fh.write(Buffer.from('tail'), 0, 4, 5 * 1024 ** 3);
      await fh.close();
      assert.equal((await fs.stat(up('pub', 'sparse.bin'))).size, 5 * 1024 ** 3 + 4);
      assert.ok((await fs.stat(up('pub', 'sparse.bin'))).blocks < 1024);
      await fs.rm(at('pub', 'sparse.bin'));
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', at('pub', 'vm.qcow2'), '32M']);
      await run('qemu-io', ['-t', 'none', '-c', 'write -P 0x5a 1M 2M', '-c', 'read -P 0x5a 1M 2M', at('pub', 'vm.qcow2')]);
      assert.match((await run('qemu-img', ['check', at('pub', 'vm.qcow2')])).stdout, /No errors were found/);
    });

    test('a key the proxy server does not know: the mount fails with a clear error, no mount is left', async () => {
      const stranger = path.join(c.base, 'stranger.key');
      await writeKeyFile(stranger, newSessionKey('mallory'));
      const mnt = path.join(c.base, 'mnt-stranger');
      await assert.rejects(spawnMount(`127.0.0.1:${c.proxyServerPort}`, mnt, ['--key', stranger, '--timeout', '5000']), new RegExp(`exited with ${EXIT.REFUSED} [^]*session key refused`));
      const mi = await fs.readFile('/proc/self/mountinfo', 'utf8');
      assert.ok(!mi.includes(mnt));
    });
  });
}

describe('gvfs mount with the disk cache of the proxy client (--cache-dir)', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let c: Chain;
  let m: MountProc | undefined;
  before(async () => {
    c = await startChain('gvfs');
    await fs.mkdir(path.join(c.upstream.dir, 'pub'), { mode: 0o777 });
    await fs.chmod(path.join(c.upstream.dir, 'pub'), 0o777);
  });
  after(async () => {
    await m?.stop();
    await c?.stop();
  });

  test('files written through a write-back cache reach the upstream when the mount ends, byte-identical', async () => {
    const keyFile = path.join(c.base, 'alice.key');
    await writeKeyFile(keyFile, c.key);
    m = await spawnMount(`127.0.0.1:${c.proxyServerPort}`, path.join(c.base, 'mnt'), ['--key', keyFile, '--cache-dir', path.join(c.base, 'cache')]);
    assert.equal(m.info.cacheDir, path.join(c.base, 'cache'));
    const data = randomBytes(3 * 1024 * 1024 + 5);
    await fs.writeFile(path.join(c.base, 'src.bin'), data);
    await run('cp', [path.join(c.base, 'src.bin'), path.join(m.mnt, 'pub', 'cached.bin')]);
    assert.equal(sha(await fs.readFile(path.join(m.mnt, 'pub', 'cached.bin'))), sha(data));
    assert.equal(await m.stop(), 0, m.stderr());
    m = undefined;
    assert.equal(sha(await fs.readFile(path.join(c.upstream.dir, 'pub', 'cached.bin'))), sha(data));
  });
});
