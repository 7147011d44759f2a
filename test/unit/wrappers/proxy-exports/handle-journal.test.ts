import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HandleJournal } from '../../../../src/wrappers/proxy-exports/handle-journal.js';

/**
 * The proxy server's table of long upstream handles: a handle wrapped by id
 * goes to a client only once its entry is on disk, so a restart or crash
 * never turns it STALE — for the first caller to ask and for every later one.
 */
describe('HandleJournal: an entry is durable before any put of it resolves', { timeout: 30_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-hjournal-'));
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  test('a second put of an entry still being written waits for that write', async () => {
    const file = path.join(dir, 'a.journal');
    const j = new HandleJournal(file);
    await j.load();
    const id = '0123456789abcdef';
    const order: string[] = [];
    const p1 = j.put(id, Buffer.from('aa', 'hex')).then(() => order.push('first'));
    const p2 = j.put(id, Buffer.from('aa', 'hex')).then(() => order.push('second'));
    await Promise.all([p1, p2]);
    assert.deepEqual(order, ['first', 'second'], 'the second put resolved only with the first one\'s flush');
    assert.match(await fs.readFile(file, 'utf8'), /^0123456789abcdef aa\n$/, 'written once');
    await j.put(id, Buffer.from('aa', 'hex')); // known and durable: at once
    await j.close();
    const again = new HandleJournal(file);
    await again.load();
    assert.deepEqual(again.get(id), Buffer.from('aa', 'hex'), 'found after a restart');
    await again.close();
  });

  test('a write that fails: every put of it fails, and the next put writes it again', async () => {
    const file = path.join(dir, 'b.journal');
    const j = new HandleJournal(file);
    await j.load();
    const id = 'fedcba9876543210';
    // The journal's descriptor goes bad under it (as a disk that fails would make every write fail).
    await (j as unknown as { fh: fs.FileHandle }).fh.close();
    const p1 = j.put(id, Buffer.from('bb', 'hex'));
    const p2 = j.put(id, Buffer.from('bb', 'hex'));
    await assert.rejects(p1);
    await assert.rejects(p2, 'the second put of the same entry fails too: it was never durable');
    assert.equal(j.get(id), undefined, 'not kept: no handle may be made of it');
    await assert.rejects(j.put(id, Buffer.from('bb', 'hex')), 'asked again: written again (and fails again here)');
  });
});
