import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { FileStore } from '../../../src/store/file-store.js';
import { openStore, parseImageUrl } from '../../../src/store/open-store.js';
import { isStoreError } from '../../../src/store/store.js';
import { tempDir } from '../../helpers/local-server.js';

describe('file:// object store', { timeout: 60_000 }, () => {
  test('put/get/head/list/delete, conditional put, atomic replace', async () => {
    const root = path.join(await tempDir(), 'store');
    const s = openStore(`file://${root}`);
    assert.ok(s instanceof FileStore);
    await s.put('chunks/ab', Buffer.from('one'));
    await s.put('images/x', Buffer.from('manifest'));
    assert.equal((await s.get('chunks/ab')).toString(), 'one');
    assert.equal((await s.head('chunks/ab')).size, 3);
    await assert.rejects(s.put('chunks/ab', Buffer.from('two'), { ifAbsent: true }), (e) => isStoreError(e, 'EXISTS'));
    assert.equal((await s.get('chunks/ab')).toString(), 'one');
    await s.put('chunks/ab', Buffer.from('three'));
    assert.equal((await s.get('chunks/ab')).toString(), 'three');
    await s.put('chunks/cd', Buffer.from('x'), { ifAbsent: true });
    const keys = [];
    for await (const o of s.list('chunks/')) keys.push(o.key);
    assert.deepEqual(keys, ['chunks/ab', 'chunks/cd']);
    const all = [];
    for await (const o of s.list('')) all.push(o.key);
    assert.deepEqual(all, ['chunks/ab', 'chunks/cd', 'images/x']);
    await s.delete('chunks/ab');
    await s.delete('chunks/ab');
    await assert.rejects(s.get('chunks/ab'), (e) => isStoreError(e, 'NOT_FOUND'));
    await assert.rejects(s.head('nothing'), (e) => isStoreError(e, 'NOT_FOUND'));
    // No temporary files left behind.
    assert.deepEqual((await readdir(path.join(root, 'chunks'))).filter((n) => n.startsWith('.tmp')), []);
  });

  test('keys cannot leave the root', async () => {
    const s = openStore(`file://${path.join(await tempDir(), 's')}`);
    for (const k of ['../x', 'a/../../x', '/etc/passwd', 'a//b', '', 'a/./b']) {
      await assert.rejects(s.put(k, Buffer.from('x')), /bad object key/, k);
      await assert.rejects(s.get(k), /bad object key/, k);
    }
  });

  test('image URLs split into store root and name', () => {
    assert.deepEqual(parseImageUrl('s3://bucket/pre/fix/name', true), { root: 's3://bucket/pre/fix', name: 'name' });
    assert.deepEqual(parseImageUrl('s3://bucket/name', true), { root: 's3://bucket', name: 'name' });
    assert.deepEqual(parseImageUrl('file:///srv/store/name', true), { root: 'file:///srv/store', name: 'name' });
    assert.throws(() => parseImageUrl('s3://bucket', true));
    assert.throws(() => parseImageUrl('http://x/y', true));
    assert.throws(() => openStore('s3://AB'));
  });
});
