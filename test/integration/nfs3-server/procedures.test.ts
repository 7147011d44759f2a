import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FType, StableHow, ACCESS3_READ, ACCESS3_MODIFY, ACCESS3_LOOKUP } from '../../../src/nfs3/constants.js';
import { ROOT, startLocalServer, type LocalServer } from '../../helpers/local-server.js';

/** Every NFSv3 procedure through our own client against `gvfs serve`, checked on disk too. */
describe('NFSv3 procedures over a local export', { timeout: 300_000 }, () => {
  let s: LocalServer;
  before(async () => {
    s = await startLocalServer();
  });
  after(() => s.stop());

  test('NULL and GETATTR of the root', async () => {
    await s.client.clients[0].null();
    const a = await s.client.getattr(ROOT, s.root);
    assert.equal(a.type, FType.DIR);
    const st = await fs.stat(s.exportDir, { bigint: true });
    assert.equal(a.fileid, st.ino);
  });

  test('CREATE, WRITE (all stabilities), READ, COMMIT', async () => {
    const c = await s.client.create(ROOT, s.root, 'f.bin', { mode: 'guarded', attrs: { mode: 0o640 } });
    assert.ok(c.fh && c.attr);
    assert.equal(c.attr!.mode, 0o640);
    assert.ok(c.dirWcc.before && c.dirWcc.after, 'wcc data for the directory');
    const data = Buffer.alloc(300_000, 7);
    const w1 = await s.client.write(ROOT, c.fh!, 0, data.subarray(0, 100_000), StableHow.UNSTABLE);
    const w2 = await s.client.write(ROOT, c.fh!, 100_000, data.subarray(100_000, 200_000), StableHow.DATA_SYNC);
    const w3 = await s.client.write(ROOT, c.fh!, 200_000, data.subarray(200_000), StableHow.FILE_SYNC);
    assert.equal(w1.count + w2.count + w3.count, data.length);
    assert.equal(w1.committed, StableHow.UNSTABLE);
    assert.equal(w3.committed, StableHow.FILE_SYNC);
    assert.ok(w1.verf.equals(w3.verf), 'one write verifier per server instance');
    assert.equal(w3.wcc.after?.size, 300_000);
    const cm = await s.client.commit(ROOT, c.fh!, 0, 0);
    assert.ok(cm.verf.equals(w1.verf));
    const r = await s.client.read(ROOT, c.fh!, 250_000, 100_000);
    assert.equal(r.count, 50_000);
    assert.equal(r.eof, true);
    assert.ok(r.data.equals(data.subarray(250_000)));
    assert.ok((await fs.readFile(path.join(s.exportDir, 'f.bin'))).equals(data));
  });

  test('SETATTR: mode, size, times, guard', async () => {
    const { fh } = await s.client.lookup(ROOT, s.root, 'f.bin');
    const a0 = await s.client.getattr(ROOT, fh);
    const wcc = await s.client.setattr(ROOT, fh, { mode: 0o600, size: 1000, mtime: { sec: 1_000_000, nsec: 0 } }, a0.ctime);
    assert.equal(wcc.after?.mode, 0o600);
    assert.equal(wcc.after?.size, 1000);
    assert.equal(wcc.after?.mtime.sec, 1_000_000);
    await assert.rejects(s.client.setattr(ROOT, fh, { mode: 0o644 }, a0.ctime), { code: 'NOT_SYNC' });
  });

  test('SETATTR times: nanoseconds kept; a time the client did not set is left alone', async () => {
    const { fh } = await s.client.lookup(ROOT, s.root, 'f.bin');
    await s.client.setattr(ROOT, fh, { atime: { sec: 1_500_000_000, nsec: 111_222_333 }, mtime: { sec: 1_600_000_000, nsec: 444_555_666 } });
    const onDisk = () => fs.lstat(path.join(s.exportDir, 'f.bin'), { bigint: true });
    let st = await onDisk();
    assert.equal(st.atimeNs, 1_500_000_000_111_222_333n);
    assert.equal(st.mtimeNs, 1_600_000_000_444_555_666n);
    // mtime only: atime stays exactly as it was (not re-set from a rounded copy).
    const w = await s.client.setattr(ROOT, fh, { mtime: { sec: 1_700_000_000, nsec: 999_999_999 } });
    assert.deepEqual(w.after?.mtime, { sec: 1_700_000_000, nsec: 999_999_999 });
    st = await onDisk();
    assert.equal(st.atimeNs, 1_500_000_000_111_222_333n);
    assert.equal(st.mtimeNs, 1_700_000_000_999_999_999n);
    // atime "now" only: mtime untouched.
    await s.client.setattr(ROOT, fh, { atime: 'server' });
    st = await onDisk();
    assert.ok(st.atimeNs > 1_700_000_000_000_000_000n);
    assert.equal(st.mtimeNs, 1_700_000_000_999_999_999n);
  });

  test('LOOKUP, ACCESS, "." and ".." at the root', async () => {
    const dot = await s.client.lookup(ROOT, s.root, '.');
    assert.equal(dot.attr?.fileid, (await s.client.getattr(ROOT, s.root)).fileid);
    const up = await s.client.lookup(ROOT, s.root, '..');
    assert.equal(up.attr?.fileid, dot.attr?.fileid, '.. of the export root is the root');
    const acc = await s.client.access(ROOT, s.root, ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_MODIFY);
    assert.equal(acc.access, ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_MODIFY);
  });

  test('MKDIR, SYMLINK, READLINK, LINK, RENAME, REMOVE, RMDIR', async () => {
    const d = await s.client.mkdir(ROOT, s.root, 'dir', { mode: 0o750 });
    assert.equal(d.attr?.type, FType.DIR);
    assert.equal(d.attr?.mode, 0o750);
    const l = await s.client.symlink(ROOT, d.fh!, 'ln', '../f.bin', {});
    assert.equal(l.attr?.type, FType.LNK);
    assert.equal((await s.client.readlink(ROOT, l.fh!)).path, '../f.bin');
    const f = await s.client.lookup(ROOT, s.root, 'f.bin');
    const k = await s.client.link(ROOT, f.fh, d.fh!, 'hard');
    assert.equal(k.attr?.nlink, 2);
    const rn = await s.client.rename(ROOT, d.fh!, 'hard', s.root, 'moved');
    assert.ok(rn.fromWcc.after && rn.toWcc.after);
    assert.equal((await fs.stat(path.join(s.exportDir, 'moved'))).nlink, 2);
    await s.client.remove(ROOT, s.root, 'moved');
    await s.client.remove(ROOT, d.fh!, 'ln');
    await s.client.rmdir(ROOT, s.root, 'dir');
    await assert.rejects(fs.stat(path.join(s.exportDir, 'dir')), { code: 'ENOENT' });
  });

  test('MKNOD makes a FIFO and a socket; regular files BADTYPE', async () => {
    const n = await s.client.mknod(ROOT, s.root, 'fifo', { type: FType.FIFO, attrs: { mode: 0o600 } });
    assert.equal(n.attr?.type, FType.FIFO);
    assert.ok((await fs.lstat(path.join(s.exportDir, 'fifo'))).isFIFO());
    const k = await s.client.mknod(ROOT, s.root, 'sock', { type: FType.SOCK, attrs: {} });
    assert.equal(k.attr?.type, FType.SOCK);
    assert.ok((await fs.lstat(path.join(s.exportDir, 'sock'))).isSocket());
    await assert.rejects(s.client.mknod(ROOT, s.root, 'reg', { type: FType.REG }), { code: 'BADTYPE' });
    await s.client.remove(ROOT, s.root, 'fifo');
    await s.client.remove(ROOT, s.root, 'sock');
  });

  test('FSSTAT, FSINFO, PATHCONF', async () => {
    const st = await s.client.fsstat(ROOT, s.root);
    assert.ok(st.tbytes > 0 && st.abytes <= st.fbytes);
    const fi = await s.client.fsinfo(ROOT, s.root);
    assert.equal(fi.rtmax, 1 << 20);
    assert.ok(fi.maxfilesize > 2 ** 40);
    const pc = await s.client.pathconf(ROOT, s.root);
    assert.equal(pc.nameMax, 255);
    assert.equal(pc.noTrunc, true);
  });

  test('EXCLUSIVE create: a retransmission with the same verifier succeeds, another verifier gets EXIST', async () => {
    const verf = Buffer.from('verifier');
    const a = await s.client.create(ROOT, s.root, 'excl', { mode: 'exclusive', verf });
    const b = await s.client.create(ROOT, s.root, 'excl', { mode: 'exclusive', verf });
    assert.ok(a.fh!.equals(b.fh!));
    await assert.rejects(s.client.create(ROOT, s.root, 'excl', { mode: 'exclusive', verf: Buffer.from('otherver') }), { code: 'EXIST' });
    await assert.rejects(s.client.create(ROOT, s.root, 'excl', { mode: 'guarded', attrs: {} }), { code: 'EXIST' });
    const u = await s.client.create(ROOT, s.root, 'excl', { mode: 'unchecked', attrs: {} });
    assert.ok(u.fh!.equals(a.fh!), 'UNCHECKED on an existing file returns it');
  });

  test('files beyond 4 GiB stay sparse', async () => {
    const c = await s.client.create(ROOT, s.root, 'big.img', { mode: 'guarded', attrs: {} });
    const off = 5 * 2 ** 30 + 123;
    await s.client.write(ROOT, c.fh!, off, Buffer.from('tail'), StableHow.FILE_SYNC);
    const a = await s.client.getattr(ROOT, c.fh!);
    assert.equal(a.size, off + 4);
    assert.ok(a.used < 1 << 20, `sparse: ${a.used} bytes used`);
    const r = await s.client.read(ROOT, c.fh!, off - 2, 100);
    assert.deepEqual([...r.data], [0, 0, ...Buffer.from('tail')]);
    assert.equal(r.eof, true);
    const hole = await s.client.read(ROOT, c.fh!, 2 ** 32, 16);
    assert.ok(hole.data.equals(Buffer.alloc(16)));
    await s.client.remove(ROOT, s.root, 'big.img');
  });
});
