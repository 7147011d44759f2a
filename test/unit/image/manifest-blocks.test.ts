import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CHUNKING } from '../../../src/image/chunker.js';
import { chunksOf, MANIFEST_FORMAT, manifestBytes, parseManifest, type Manifest } from '../../../src/image/manifest.js';

/** The manifest's block-hash field (meta-data served by a store export): checked before any server relies on it. */
describe('manifest: block hashes of a file', { timeout: 30_000 }, () => {
  const H = 'a'.repeat(64);
  const K = 'b'.repeat(64);
  const m = (blocks: unknown, size = 1 << 20): Manifest =>
    ({
      format: MANIFEST_FORMAT,
      name: 'img',
      created: new Date(0).toISOString(),
      chunking: DEFAULT_CHUNKING,
      entries: [{ path: 'f', type: 'file', mode: 0o644, mtime: 0, size, extents: [[0, size, size > 1 << 20 ? null : H]], hint: 'prefetch', order: [0], blocks }],
    }) as Manifest;

  test('a well-formed entry parses, and its hash chunk is one of the manifest\'s chunks (gc keeps it)', () => {
    const p = parseManifest(manifestBytes(m({ size: 65536, hashes: K })));
    assert.deepEqual([...chunksOf(p)].sort(), [H, K]);
  });

  test('bad block sizes, hashes and oversized hash lists are refused', () => {
    for (const bad of [{ size: 1000, hashes: K }, { size: 0, hashes: K }, { size: 32 << 20, hashes: K }, { size: 65536, hashes: 'zz' }, { size: 65536 }, null, 'x']) {
      assert.throws(() => parseManifest(manifestBytes(m(bad))), /block/, JSON.stringify(bad));
    }
    // 4 GiB file at 4 KiB blocks: 16 MiB of hashes, over a chunk's bound.
    assert.throws(() => parseManifest(manifestBytes(m({ size: 4096, hashes: K }, 4 * 1024 ** 3))), /block hashes/);
  });
});
