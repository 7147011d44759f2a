import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { JOURNAL_GROUP_MS, NameTable } from '../../../../src/backends/local-export/name-table.js';

/** The journal's lines as {i, p?, n?}. */
async function lines(file: string): Promise<Array<{ i: string; p?: string; n?: string }>> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function reload(file: string): Promise<NameTable> {
  const t = new NameTable(file);
  await t.load();
  return t;
}

/**
 * The name journal's group commit (issue 17): one write per group of
 * changes, only each inode's latest state, nothing for an inode made and
 * removed within a group; what a restart replays is what the table held.
 */
describe('name table: group-committed journal', { timeout: 60_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-names-'));
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  test('a burst of changes is one write; a restart replays the same table', async () => {
    const file = path.join(dir, 'burst');
    const t = await reload(file);
    for (let i = 10n; i < 110n; i++) t.set(i, 1n, `f${i}`);
    t.set(10n, 2n, 'moved'); // a rename within the group: only the latest state is written
    assert.equal(t.groupWrites, 0, 'nothing written synchronously');
    await t.close();
    assert.equal(t.groupWrites, 1);
    const ls = await lines(file);
    assert.equal(ls.length, 100);
    const r = await reload(file);
    assert.equal(r.size, 100);
    assert.deepEqual(r.get(10n), { parent: 2n, name: 'moved' });
    assert.deepEqual(r.get(109n), { parent: 1n, name: 'f109' });
    await r.close();
  });

  test('made and removed within one group: never written; removed in a later group: a delete line that replays', async () => {
    const file = path.join(dir, 'tmpfiles');
    const t = await reload(file);
    t.set(7n, 1n, 'tmp');
    t.delete(7n);
    t.set(8n, 1n, 'kept');
    await t.close();
    assert.deepEqual((await lines(file)).map((l) => l.i), ['8']);
    const t2 = await reload(file);
    assert.equal(t2.size, 1);
    t2.delete(8n);
    t2.set(8n, 1n, 'again'); // inode numbers are reused: the latest state wins
    t2.delete(8n);
    await t2.close();
    assert.deepEqual((await lines(file)).slice(-1), [{ i: '8' }], 'the delete of what the journal held is written');
    const t3 = await reload(file);
    assert.equal(t3.size, 0);
    assert.equal(t3.get(8n), undefined);
    await t3.close();
  });

  test('written within the group time without a close (a crash loses at most the last group)', async () => {
    const file = path.join(dir, 'timer');
    const t = await reload(file);
    t.set(5n, 1n, 'five');
    const t0 = Date.now();
    while ((await lines(file)).length === 0) {
      assert.ok(Date.now() - t0 < 20_000, 'the group was never written');
      await new Promise((r) => setTimeout(r, JOURNAL_GROUP_MS));
    }
    assert.deepEqual(await lines(file), [{ i: '5', p: '1', n: 'five' }]);
    assert.equal(t.groupWrites, 1);
    await t.close();
  });

  test('changes made while the journal is compacted are kept', async () => {
    const file = path.join(dir, 'compact');
    const t = await reload(file);
    // Enough entries that the rewrite outlasts a group's timer (which then finds the journal busy).
    for (let i = 100n; i < 200n; i++) t.set(i, 1n, `a${i}`);
    for (let i = 10_000n; i < 210_000n; i++) t.set(i, 1n, `bulk-entry-with-a-longish-name-${i}`);
    await t.close();
    const t2 = await reload(file);
    const done = t2.compact();
    t2.set(300n, 1n, 'during');
    t2.delete(100n);
    t2.set(150n, 3n, 'renamed');
    await done;
    // Written soon after the compaction, by itself (no further change, no close, as before a crash).
    const t0 = Date.now();
    while (!(await lines(file)).some((l) => l.i === '300')) {
      assert.ok(Date.now() - t0 < 10_000, 'changes made during the compaction were not written');
      await new Promise((r) => setTimeout(r, JOURNAL_GROUP_MS));
    }
    t2.set(301n, 1n, 'after');
    await t2.close();
    const r = await reload(file);
    assert.equal(r.size, 200_101);
    assert.equal(r.get(100n), undefined);
    assert.deepEqual([r.get(150n), r.get(300n), r.get(301n)], [
      { parent: 3n, name: 'renamed' },
      { parent: 1n, name: 'during' },
      { parent: 1n, name: 'after' },
    ]);
    await r.close();
  });

  test('a very large burst is written at once, not held', async () => {
    const file = path.join(dir, 'big');
    const t = await reload(file);
    for (let i = 1000n; i < 6000n; i++) t.set(i, 1n, `b${i}`);
    assert.ok(t.groupWrites >= 1, 'a group of thousands of changes does not wait for the timer');
    await t.close();
    const r = await reload(file);
    assert.equal(r.size, 5000);
    await r.close();
  });
});
