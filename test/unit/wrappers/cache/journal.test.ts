import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { AuthFlavor } from '../../../../src/rpc/types.js';
import { Journal } from '../../../../src/wrappers/cache/journal.js';

const cred = { flavor: AuthFlavor.AUTH_SYS, uid: 7, gid: 8, gids: [9, 10] };
const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-journal-'));
const segs = async (dir: string) => (await fs.readdir(dir)).filter((n) => n.startsWith('journal-')).sort();

async function readBack(j: Journal, w: { seg: number; pos: number; length: number }): Promise<Buffer> {
  const b = Buffer.alloc(w.length);
  j.pin(w.seg);
  try {
    await j.read(w.seg, w.pos, b, 0, w.length);
  } finally {
    j.unpin(w.seg);
  }
  return b;
}

test('journal: records survive a reopen; DONE retires them; credentials and handles come back', { timeout: 60_000 }, async () => {
  const dir = await tmp();
  const fhA = Buffer.from('handle-A');
  const fhB = Buffer.from('handle-B-longer');
  {
    const { journal: j, files } = await Journal.open(dir);
    assert.equal(files.length, 0);
    const a = j.fileNoFor(fhA);
    const b = j.fileNoFor(fhB);
    await j.write(a, fhA, cred, 0, Buffer.from('aaaa'), 0, false);
    const w2 = await j.write(b, fhB, cred, 100, Buffer.from('bbbbbb'), 2, true);
    const w3 = await j.write(a, fhA, cred, 2, Buffer.from('AA'), 0, false);
    assert.equal((await readBack(j, w2)).toString(), 'bbbbbb');
    await j.mark('done', b, w2.seq, true);
    assert.equal((await readBack(j, w3)).toString(), 'AA');
    await j.close();
  }
  const { journal: j, files } = await Journal.open(dir);
  assert.equal(files.length, 1, 'only file A is still pending');
  assert.ok(files[0].fh.equals(fhA));
  assert.deepEqual({ uid: files[0].cred.uid, gid: files[0].cred.gid, gids: files[0].cred.gids }, { uid: 7, gid: 8, gids: [9, 10] });
  assert.deepEqual(files[0].writes.map((w) => [w.offset, w.length]), [[0, 4], [2, 2]]);
  assert.equal((await readBack(j, files[0].writes[1])).toString(), 'AA');
  assert.equal(j.fileNoFor(fhA), files[0].fileNo, 'a handle keeps its file number');
  await j.close();
  await fs.rm(dir, { recursive: true });
});

test('journal: a reopened journal whose segments are all finished starts a segment of a new number (never one whose unlink may still be running)', { timeout: 60_000 }, async () => {
  const dir = await tmp();
  const fh = Buffer.from('fh');
  {
    const { journal: j } = await Journal.open(dir);
    const n = j.fileNoFor(fh);
    const w = await j.write(n, fh, cred, 0, Buffer.alloc(100, 1), 0, true);
    await j.mark('done', n, w.seq, true);
    await j.close();
  }
  assert.deepEqual(await segs(dir), ['journal-00000001.log']);
  const { journal: j, files } = await Journal.open(dir);
  assert.equal(files.length, 0, 'everything was done');
  // Segment 1 is finished and being deleted: the new one is 2, whatever the unlink's progress.
  const after = await segs(dir);
  assert.ok(after.includes('journal-00000002.log'), `segments after reopening: ${after.join(', ')}`);
  await j.close();
  await fs.rm(dir, { recursive: true });
});

test('journal: a torn last record (never acknowledged) is ignored; the records before it are kept', { timeout: 60_000 }, async () => {
  const dir = await tmp();
  const fh = Buffer.from('fh');
  {
    const { journal: j } = await Journal.open(dir);
    const n = j.fileNoFor(fh);
    await j.write(n, fh, cred, 0, Buffer.alloc(1000, 1), 0, true);
    await j.write(n, fh, cred, 1000, Buffer.alloc(1000, 2), 0, true);
    await j.close();
  }
  const [seg] = await segs(dir);
  const file = path.join(dir, seg);
  const size = (await fs.stat(file)).size;
  await fs.truncate(file, size - 10);
  const { journal: j, files } = await Journal.open(dir);
  assert.equal(files.length, 1);
  assert.deepEqual(files[0].writes.map((w) => w.offset), [0]);
  await j.close();
  // A flipped byte inside the data fails the CRC the same way.
  const bytes = await fs.readFile(file);
  bytes[200] ^= 0xff; // inside the first WRITE's data
  await fs.writeFile(file, bytes);
  const again = await Journal.open(dir);
  assert.equal(again.files.length, 0);
  await again.journal.close();
  await fs.rm(dir, { recursive: true });
});

test('journal: segments go oldest first, never before the WRITEs their DONE marks cover', { timeout: 60_000 }, async () => {
  const dir = await tmp();
  const { journal: j } = await Journal.open(dir, { segmentBytes: 4096 });
  const fa = Buffer.from('A');
  const fb = Buffer.from('B');
  const a = j.fileNoFor(fa);
  const b = j.fileNoFor(fb);
  const wb = await j.write(b, fb, cred, 0, Buffer.alloc(3000, 9), 0, false); // segment 1, stays pending
  const was = [];
  for (let i = 0; i < 6; i++) was.push(await j.write(a, fa, cred, i * 3000, Buffer.alloc(3000, i), 0, false));
  await j.mark('done', a, was[was.length - 1].seq, true);
  j.release(was);
  assert.ok((await segs(dir)).length >= 3, 'segment 1 holds a pending WRITE of B, so nothing after it may go');
  j.release([wb]);
  await j.mark('done', b, wb.seq, true);
  await j.sync();
  assert.equal((await segs(dir)).length, 1, 'only the current segment is left');
  await j.close();
  const r = await Journal.open(dir);
  assert.equal(r.files.length, 0, 'nothing comes back');
  await r.journal.close();
  await fs.rm(dir, { recursive: true });
});

test('journal: a failed append (disk full) is cut off, reported, and the journal goes on', { timeout: 60_000 }, async () => {
  const dir = await tmp();
  let fail = false;
  const { journal: j } = await Journal.open(dir, {
    failAppend: () => (fail ? Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }) : undefined),
  });
  const fh = Buffer.from('f');
  const n = j.fileNoFor(fh);
  await j.write(n, fh, cred, 0, Buffer.from('one'), 0, true);
  fail = true;
  await assert.rejects(j.write(n, fh, cred, 3, Buffer.from('two'), 0, true), (e: Error & { errno?: string }) => e.errno === 'ENOSPC');
  fail = false;
  await j.write(n, fh, cred, 6, Buffer.from('three'), 0, true);
  await j.close();
  const r = await Journal.open(dir);
  assert.deepEqual(r.files[0].writes.map((w) => w.offset), [0, 6]);
  const insp = await Journal.inspect(dir);
  assert.equal(insp.records, 2);
  assert.equal(insp.bytes, 8);
  await r.journal.close();
  await fs.rm(dir, { recursive: true });
});
