import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { cephPrereq, startCeph, type Ceph } from '../../helpers/ceph.js';
import { tempDir } from '../../helpers/local-server.js';
import { keyFile } from '../../helpers/key-file.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { S3Store } from '../../../src/store/s3-store.js';
import type { ObjectStore } from '../../../src/store/store.js';
import { pushImage, type PushStats } from '../../../src/image/push.js';
import { gcStore, loadImage, removeImage } from '../../../src/image/catalog.js';
import { readPublisherKey, readTrustedKeys, writePublisherKey, type PublisherKey } from '../../../src/image/signature.js';
import { DEFAULT_CHUNKING, FIXED_CHUNKING } from '../../../src/image/chunker.js';
import { CHUNKS, chunkKey, imageKey } from '../../../src/image/layout.js';
import { ChunkCache } from '../../../src/backends/store/chunk-cache.js';
import { copyGuest, GUEST, makeGuestV2, seeded } from './guest-versions.js';

const run = promisify(execFile);
const skip = cephPrereq();

async function storedBytes(s: ObjectStore): Promise<{ bytes: number; chunks: number }> {
  let bytes = 0;
  let chunks = 0;
  for await (const o of s.list(CHUNKS)) {
    bytes += o.size;
    chunks++;
  }
  return { bytes, chunks };
}

/** Every chunk of every extent of an image fetched and verified: the image is fully readable from the store. */
async function readable(s: ObjectStore, name: string, trusted: Buffer[]): Promise<void> {
  const v = await loadImage(s, name, trusted);
  const c = new ChunkCache(s, 1 << 20);
  for (const e of v.manifest.entries) if (e.type === 'file') for (const [, len, h] of e.extents) if (h) await c.get(h, len);
}

describe('images on Ceph (radosgw S3)', { skip, timeout: 900_000 }, () => {
  let ceph: Ceph;
  let work: string;
  let key: PublisherKey;
  let pubFile: string;
  let trusted: Buffer[];
  let v2: string;
  const stores: S3Store[] = [];
  const procs: GvfsProcess[] = [];
  const figures: Record<string, unknown> = {};
  const s3 = async (prefix: string) => {
    const s = new S3Store({ bucket: 'gvfs-images', prefix, endpoint: ceph.endpoint, accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey });
    await s.ensureBucket();
    stores.push(s);
    return s;
  };

  before(async () => {
    ceph = await startCeph();
    figures.cephStartSeconds = Number(ceph.startSeconds.toFixed(1));
    work = await tempDir('gvfs-ceph-images-');
    const k = await writePublisherKey(path.join(work, 'publisher'));
    pubFile = k.pubFile;
    key = await readPublisherKey(path.join(work, 'publisher'));
    trusted = await readTrustedKeys([pubFile]);
    v2 = path.join(work, 'guest-v2');
    await makeGuestV2(v2);
  });

  after(async () => {
    for (const p of procs) await p.stop().catch(() => {});
    for (const s of stores) await s.close().catch(() => {});
    if (ceph) {
      figures.cephRssMiB = Math.round((await ceph.rssBytes()) / 2 ** 20);
      console.log(`# store figures ${JSON.stringify(figures)}`);
      await ceph.stop();
    }
  });

  test('two guest versions: fastcdc vs fixed, bytes stored against plain size', async () => {
    const result: Record<string, { v1: PushStats; v2: PushStats; stored: number }> = {};
    for (const [kind, chunking] of [['fastcdc', DEFAULT_CHUNKING], ['fixed', FIXED_CHUNKING]] as const) {
      const s = await s3(`measure-${kind}`);
      const a = await pushImage(s, GUEST, 'guest-v1', key, { chunking });
      const b = await pushImage(s, v2, 'guest-v2', key, { chunking });
      result[kind] = { v1: a, v2: b, stored: (await storedBytes(s)).bytes };
      await readable(s, 'guest-v1', trusted);
      await readable(s, 'guest-v2', trusted);
    }
    const plain = result.fastcdc.v1.plainBytes + result.fastcdc.v2.plainBytes;
    figures.twoVersions = {
      plainBytes: plain,
      fastcdc: { stored: result.fastcdc.stored, v2NewChunks: result.fastcdc.v2.newChunks, v2NewBytes: result.fastcdc.v2.storedBytes },
      fixed: { stored: result.fixed.stored, v2NewChunks: result.fixed.v2.newChunks, v2NewBytes: result.fixed.v2.storedBytes },
    };
    // The second version is a different image (it adds chunks), far less than a full copy, and less with content-defined chunks.
    assert.ok(result.fastcdc.v2.newChunks > 0 && result.fixed.v2.newChunks > 0, 'v2 added nothing: is it v1?');
    assert.ok(result.fastcdc.v2.storedBytes < result.fastcdc.v1.storedBytes / 4, JSON.stringify(figures.twoVersions));
    assert.ok(result.fastcdc.v2.storedBytes < result.fixed.v2.storedBytes, JSON.stringify(figures.twoVersions));
    assert.ok(result.fastcdc.stored < plain * 0.6);
  });

  test('ten images sharing a base', async () => {
    const s = await s3('ten');
    let plain = 0;
    for (let i = 0; i < 10; i++) {
      const d = path.join(work, `img${i}`);
      await copyGuest(d);
      // Each image adds its own 256 KiB file (its "application") to the shared base.
      await writeFile(path.join(d, 'app.bin'), seeded(256 << 10, `app-${i}`));
      const r = await pushImage(s, d, `app${i}`, key);
      plain += r.plainBytes;
    }
    const { bytes } = await storedBytes(s);
    figures.tenImages = { plainBytes: plain, storedBytes: bytes, ratio: Number((plain / bytes).toFixed(1)) };
    assert.ok(bytes < plain / 5, JSON.stringify(figures.tenImages));
  });

  test('a store-backed proxy server serves every file byte-identical through a proxy client (nfs-cat)', async () => {
    const s = await s3('serve');
    await pushImage(s, GUEST, 'guest1', key);
    await pushImage(s, v2, 'guest2', key);
    const { file: sessionKey } = await keyFile(work, 'session.key');
    const env = { AWS_ACCESS_KEY_ID: ceph.accessKeyId, AWS_SECRET_ACCESS_KEY: ceph.secretAccessKey };
    const server = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--store', 's3://gvfs-images/serve', '--store-endpoint', ceph.endpoint, '--trust-publisher', pubFile, '--key', sessionKey, '--state-dir', path.join(work, 'ps-state')], env);
    procs.push(server);
    const client = await spawnGvfs(['proxy-client', '--listen', '127.0.0.1:0', '--server', `127.0.0.1:${server.port}`, '--key', sessionKey]);
    procs.push(client);
    const url = (p: string) => `nfs://127.0.0.1${p}?version=3&nfsport=${client.port}&mountport=${client.port}`;
    const ls = await run('nfs-ls', [url('/')]);
    assert.match(ls.stdout, /guest1/);
    assert.match(ls.stdout, /guest2/);
    for (const [img, dir] of [['guest1', GUEST], ['guest2', v2]]) {
      for (const name of (await readdir(dir)).sort()) {
        const got = await run('nfs-cat', [url(`/${img}/${name}`)], { encoding: 'buffer', maxBuffer: 64 << 20 });
        assert.ok(Buffer.from(got.stdout).equals(await readFile(path.join(dir, name))), `${img}/${name} differs`);
      }
    }

    // A chunk altered in the store is refused (EIO), never served; restored, the file reads again.
    const v = await loadImage(s, 'guest2', trusted);
    const data = v.manifest.entries.find((e) => e.path === 'data.bin');
    assert.ok(data && data.type === 'file');
    // A chunk of data.bin that guest1 does not have (after the insertion), not yet cached: pick the last stored one.
    const victim = data.extents.filter((x) => x[2]).at(-1)![2]!;
    const good = await s.get(chunkKey(victim));
    // Restart the server so its memory holds no chunk, then tamper.
    await server.stop();
    const bad = Buffer.from(good);
    bad[bad.length - 1] ^= 0xff;
    await s.put(chunkKey(victim), bad);
    const server2 = await spawnGvfs(['proxy-server', '--listen', `127.0.0.1:${server.port}`, '--store', 's3://gvfs-images/serve', '--store-endpoint', ceph.endpoint, '--trust-publisher', pubFile, '--key', sessionKey, '--state-dir', path.join(work, 'ps-state')], env);
    procs.push(server2);
    await assert.rejects(run('nfs-cat', [url('/guest2/data.bin')], { encoding: 'buffer', maxBuffer: 64 << 20, timeout: 120_000 }));
    await server2.waitLog(/chunk unusable/);
    await s.put(chunkKey(victim), good);
    const again = await run('nfs-cat', [url('/guest2/data.bin')], { encoding: 'buffer', maxBuffer: 64 << 20 });
    assert.ok(Buffer.from(again.stdout).equals(await readFile(path.join(v2, 'data.bin'))));

    // A manifest altered in the store (one byte of its text) and one signed by an unknown key are not served.
    const env1 = await s.get(imageKey('guest1'));
    const altered = Buffer.from(env1.toString().replace('\\"size\\":620,', '\\"size\\":621,'));
    assert.notDeepEqual(altered, env1);
    await s.put(imageKey('evil'), Buffer.from(altered.toString().replace('\\"name\\":\\"guest1\\"', '\\"name\\":\\"evil\\"')));
    await s.put(imageKey('guest1'), altered);
    await writePublisherKey(path.join(work, 'stranger'));
    await pushImage(s, GUEST, 'unsigned-by-us', await readPublisherKey(path.join(work, 'stranger')));
    await server2.waitLog(/image refused/, 60_000).catch(() => undefined);
    // The server re-lists at most every 2 s; poll the listing until guest1 is gone from it.
    let listing = '';
    for (let i = 0; i < 60; i++) {
      listing = (await run('nfs-ls', [url('/')])).stdout;
      if (!/guest1/.test(listing)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.doesNotMatch(listing, /guest1/);
    assert.doesNotMatch(listing, /evil/);
    assert.doesNotMatch(listing, /unsigned-by-us/);
    assert.match(listing, /guest2/);
    await assert.rejects(run('nfs-cat', [url('/guest1/guest.json')], { timeout: 60_000 }));
    await s.put(imageKey('guest1'), env1);
  });

  test('gc deletes unused chunks, leaves every manifest readable, and deletes nothing during a push', async () => {
    const s = await s3('gc');
    await pushImage(s, GUEST, 'keep', key);
    await pushImage(s, v2, 'drop', key);
    const before = await storedBytes(s);
    await removeImage(s, 'drop');
    const r = await gcStore(s, { graceMs: 0 });
    assert.equal(r.refused, undefined);
    assert.ok(r.deleted > 0, JSON.stringify(r));
    const afterGc = await storedBytes(s);
    assert.equal(afterGc.chunks, before.chunks - r.deleted);
    await readable(s, 'keep', trusted);
    figures.gc = { before: before.bytes, after: afterGc.bytes, deleted: r.deleted };

    // A push in progress: its chunks are stored, its manifest not yet. gc must not take them.
    let during: Awaited<ReturnType<typeof gcStore>> | undefined;
    await pushImage(s, v2, 'drop', key, { beforeManifest: async () => {
      during = await gcStore(s, { graceMs: 0 });
    } });
    assert.ok(during?.refused, 'gc ran during a push and did not refuse');
    assert.equal(during.deleted, 0);
    await readable(s, 'drop', trusted);
    await readable(s, 'keep', trusted);
  });
});
