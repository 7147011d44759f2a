import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { chunksOf, MANIFEST_FORMAT, ManifestError, parseManifest, type Manifest } from '../../../src/image/manifest.js';
import { readPublisherKey, readTrustedKeys, signManifest, SignatureError, verifySigned, writePublisherKey } from '../../../src/image/signature.js';
import { DEFAULT_CHUNKING } from '../../../src/image/chunker.js';
import { tempDir } from '../../helpers/local-server.js';

const H = (c: string) => c.repeat(64);
const manifest = (name = 'img'): Manifest => ({
  format: MANIFEST_FORMAT,
  name,
  created: '2026-12-04T00:00:00.000Z',
  chunking: DEFAULT_CHUNKING,
  entries: [
    { path: 'a', type: 'file', mode: 0o644, mtime: 1, size: 300, extents: [[0, 100, H('a')], [100, 100, null], [200, 100, H('b')]], hint: 'prefetch', order: [2, 0] },
    { path: 'd', type: 'dir', mode: 0o755, mtime: 1 },
    { path: 'd/l', type: 'symlink', mode: 0o777, mtime: 1, target: '../a' },
  ],
});

async function keys() {
  const dir = await tempDir();
  const a = await writePublisherKey(path.join(dir, 'a'));
  const b = await writePublisherKey(path.join(dir, 'b'));
  return { a: await readPublisherKey(path.join(dir, 'a')), aPub: await readTrustedKeys([a.pubFile]), b: await readPublisherKey(path.join(dir, 'b')), bPub: await readTrustedKeys([b.pubFile]) };
}

describe('signed manifests', { timeout: 60_000 }, () => {
  test('a signed manifest verifies with the trusted key and round-trips', async () => {
    const k = await keys();
    const v = verifySigned(signManifest(manifest(), k.a), k.aPub, 'img');
    assert.deepEqual(v.manifest, manifest());
    assert.equal(v.digest.length, 32);
    assert.deepEqual([...chunksOf(v.manifest)].sort(), [H('a'), H('b')]);
  });

  test('every single-byte change of the envelope is refused', async () => {
    const k = await keys();
    const signed = signManifest(manifest(), k.a);
    let refused = 0;
    for (let i = 0; i < signed.length; i++) {
      const t = Buffer.from(signed);
      t[i] ^= 0x01;
      try {
        verifySigned(t, k.aPub, 'img');
        // A flip may only be harmless where JSON ignores it: never in the signed text, key or signature.
        assert.fail(`byte ${i} changed (${signed.subarray(Math.max(0, i - 10), i + 10)}) and the manifest still verified`);
      } catch (e) {
        if (!(e instanceof SignatureError || e instanceof ManifestError)) throw e;
        refused++;
      }
    }
    assert.equal(refused, signed.length);
  });

  test('unsigned, untrusted and renamed manifests are refused', async () => {
    const k = await keys();
    assert.throws(() => verifySigned(Buffer.from(JSON.stringify(manifest())), k.aPub, 'img'), SignatureError);
    assert.throws(() => verifySigned(signManifest(manifest(), k.b), k.aPub, 'img'), /untrusted publisher/);
    assert.throws(() => verifySigned(signManifest(manifest('other'), k.a), k.aPub, 'img'), /for image "other"/);
    // B re-signs A's publisher field: the signature does not match A's key.
    const env = JSON.parse(signManifest(manifest(), k.b).toString());
    env.publisher = k.aPub[0].toString('base64');
    assert.throws(() => verifySigned(Buffer.from(JSON.stringify(env)), k.aPub, 'img'), /bad signature/);
  });

  test('malformed manifests are refused even when signed', async () => {
    const bad: Array<[string, (m: Manifest) => void]> = [
      ['dotdot path', (m) => (m.entries[0].path = '../a')],
      ['absolute path', (m) => (m.entries[0].path = '/a')],
      ['gap in extents', (m) => ((m.entries[0] as any).extents[1][0] = 101)],
      ['short coverage', (m) => ((m.entries[0] as any).size = 301)],
      ['bad hash', (m) => ((m.entries[0] as any).extents[0][2] = 'zz')],
      ['parent missing', (m) => (m.entries[2].path = 'e/l')],
      ['unsorted', (m) => m.entries.reverse()],
      ['order out of range', (m) => ((m.entries[0] as any).order = [3])],
    ];
    for (const [what, f] of bad) {
      const m = manifest();
      f(m);
      assert.throws(() => parseManifest(Buffer.from(JSON.stringify(m))), ManifestError, what);
    }
  });
});
