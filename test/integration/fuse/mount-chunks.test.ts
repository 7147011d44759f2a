import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir } from '../../helpers/local-server.js';
import { keyFile } from '../../helpers/key-file.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { seeded } from '../store/guest-versions.js';
import { FileStore } from '../../../src/store/file-store.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, writePublisherKey } from '../../../src/image/signature.js';
import { fuseSkip, spawnMount, type MountProc } from './mount-helper.js';

/**
 * `gvfs mount --trust-publisher --cache-dir` on a store-backed proxy
 * server: programs read the image's files through the kernel, the mount
 * reads them by chunk hash (kept under the cache directory's chunks/).
 */
describe('gvfs mount --trust-publisher (store images by chunk hash)', { skip: fuseSkip(), timeout: 300_000 }, () => {
  const procs: GvfsProcess[] = [];
  let m: MountProc | undefined;
  after(async () => {
    await m?.stop();
    for (const p of procs) await p.stop().catch(() => {});
  });

  test('files read through FUSE are right; the chunks are in the cache by hash', async () => {
    const work = await tempDir('gvfs-mount-chunks-');
    const files: Record<string, Buffer> = { 'disk.img': Buffer.concat([seeded(1 << 20, 'm-disk'), Buffer.alloc(512 << 10), seeded(200_000, 'm-tail')]), 'conf': Buffer.from('y=2\n') };
    const src = path.join(work, 'src');
    await mkdir(src);
    for (const [n, b] of Object.entries(files)) await writeFile(path.join(src, n), b);
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    const storeDir = path.join(work, 'store');
    await pushImage(new FileStore(storeDir), src, 'img', await readPublisherKey(path.join(work, 'pub')));
    const stored = (await readdir(path.join(storeDir, 'chunks'))).length;
    const { file: key } = await keyFile(work, 'session.key');
    const server = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--store', `file://${storeDir}`, '--trust-publisher', pubFile, '--key', key, '--state-dir', path.join(work, 'ps')]);
    procs.push(server);
    const cacheDir = path.join(work, 'cache');
    m = await spawnMount(`127.0.0.1:${server.port}`, path.join(work, 'mnt'), ['--key', key, '--export', '/', '--no-meta', '--cache-dir', cacheDir, '--trust-publisher', pubFile]);
    for (const [n, want] of Object.entries(files)) assert.ok((await readFile(path.join(m.mnt, 'img', n))).equals(want), `${n} differs`);
    const kept = (await readdir(path.join(cacheDir, 'chunks'))).filter((n) => /^[0-9a-f]{64}$/.test(n));
    assert.equal(kept.length, stored, 'every chunk of the image kept by hash');
  });
});
