import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { tempDir } from '../../helpers/local-server.js';
import { runGvfs } from '../../helpers/gvfs-proc.js';
import { EXIT } from '../../../src/cli/exit-codes.js';

/** `gvfs image` end to end on a file:// store: keygen, push, ls, show (verified / refused), rm, gc. */
describe('gvfs image (file:// store)', { timeout: 300_000 }, () => {
  test('keygen, push, ls, show, rm, gc with --json', async () => {
    const work = await tempDir('gvfs-image-cli-');
    const src = path.join(work, 'src');
    await mkdir(path.join(src, 'd'), { recursive: true });
    await writeFile(path.join(src, 'a'), Buffer.alloc(200_000, 3));
    await writeFile(path.join(src, 'd', 'b'), 'hello');
    const store = `file://${path.join(work, 'store')}`;
    const ok = async (args: string[]) => {
      const r = await runGvfs(args);
      assert.equal(r.code, 0, `gvfs ${args.join(' ')}: ${r.stderr}`);
      return r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
    };
    await ok(['image', 'keygen', path.join(work, 'pub'), '--json']);
    await ok(['image', 'keygen', path.join(work, 'other'), '--json']);
    assert.equal(((await readFile(path.join(work, 'pub'))).toString().startsWith('-----BEGIN PRIVATE KEY')), true);
    const p = await ok(['image', 'push', src, `${store}/one`, '--key', path.join(work, 'pub'), '--json']);
    assert.equal(p.files, 2);
    assert.equal(p.plainBytes, 200_005);
    await ok(['image', 'push', src, `${store}/two`, '--key', path.join(work, 'pub'), '--chunking', 'fixed', '--json']);
    assert.deepEqual((await ok(['image', 'ls', store, '--json'])).map((i: { name: string }) => i.name), ['one', 'two']);
    const shown = await ok(['image', 'show', `${store}/one`, '--trust-publisher', path.join(work, 'pub.pub'), '--json']);
    assert.equal(shown.verified, true);
    assert.deepEqual(shown.manifest.entries.map((e: { path: string }) => e.path), ['a', 'd', 'd/b']);
    // Another publisher's key: refused.
    const refused = await runGvfs(['image', 'show', `${store}/one`, '--trust-publisher', path.join(work, 'other.pub'), '--json']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /untrusted publisher/);
    await ok(['image', 'rm', `${store}/two`, '--json']);
    const gc = await ok(['image', 'gc', store, '--grace', '0', '--json']);
    assert.equal(gc.images, 1);
    assert.equal(gc.refused, undefined);
    // A lease of a push in progress: gc refuses with its own exit status.
    await mkdir(path.join(work, 'store', 'pending'), { recursive: true });
    await writeFile(path.join(work, 'store', 'pending', 'x'), '{}');
    const blocked = await runGvfs(['image', 'gc', store, '--grace', '0', '--json']);
    assert.equal(blocked.code, EXIT.REFUSED);
    assert.match(JSON.parse(blocked.stdout).refused, /push is in progress/);
    const bad = await runGvfs(['image', 'push', src, 'http://x/y', '--key', path.join(work, 'pub')]);
    assert.notEqual(bad.code, 0);
  });
});
