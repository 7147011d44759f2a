import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fuseLl, type LlOpen, type LlRequest, type LlSession } from '../../../src/native/fuse-ll.js';
import { llTestAttr } from './ll-test-attr.js';
import { fuseSkip, forceUnmount } from '../../integration/fuse/mount-helper.js';

const E = os.constants.errno;
const MiB = 1 << 20;
const FILE = 2;

/**
 * fuse_ll.c passthrough on real mounts served by this test through the raw
 * binding: the INIT answer that asks for it (libfuse 3.14 cannot), backing
 * files registered on the connection, and opens answered with one. `how`
 * decides each open's answer; every READ and WRITE that reaches the test is
 * recorded (a passed-through read must not reach it).
 */
describe('fuse passthrough: opens answered with a backing file', { skip: fuseSkip(), timeout: 120_000 }, () => {
  let dir: string;
  const mounts: Array<{ mnt: string; session: LlSession }> = [];
  const fds: number[] = [];
  let size = 0;
  let how: (flags: number) => LlOpen = () => ({ fh: 1 });
  const seen: Array<{ op: string; off: number; len: number }> = [];
  let served = Buffer.alloc(0);

  const attr = (ino: number) => llTestAttr(ino, size);

  const mount = async (name: string, passthrough: boolean) => {
    const f = fuseLl();
    const mnt = path.join(dir, name);
    await fs.mkdir(mnt);
    const handle = (r: LlRequest) => {
      const req = r.req!;
      switch (r.op) {
        case 'lookup':
          if (r.name === 'f') return f.replyEntry(req, { nodeid: FILE, attr: attr(FILE), attrTimeout: 0, entryTimeout: 0 });
          return f.replyErr(req, E.ENOENT);
        case 'getattr':
          return f.replyAttr(req, attr(r.ino), 0);
        case 'open':
          return f.replyOpen(req, how(r.flags ?? 0));
        case 'read':
          seen.push({ op: 'read', off: r.off!, len: r.size! });
          return f.replyBuf(req, served.subarray(r.off!, r.off! + r.size!));
        case 'write':
          seen.push({ op: 'write', off: r.off!, len: r.data!.length });
          return f.replyWrite(req, r.data!.length);
        case 'flush':
        case 'release':
        case 'releasedir':
          return f.replyErr(req, 0);
        case 'opendir':
          return f.replyOpen(req, { fh: 1 });
        default:
          return f.replyErr(req, E.ENOSYS);
      }
    };
    const session = f.mount(mnt, `fsname=gvfs-pt,subtype=gvfs,max_read=${MiB}`, MiB, MiB, MiB, (r) => {
      if (r.req) handle(r);
    }, false, passthrough);
    mounts.push({ mnt, session });
    await fs.stat(path.join(mnt, 'f')).catch(() => undefined); // INIT is answered before the first request
    return { mnt, session };
  };

  let pt: { mnt: string; session: LlSession };
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-passthrough-'));
    pt = await mount('pt', true);
    if (!fuseLl().passthrough(pt.session)) {
      const why = 'this kernel did not agree to FUSE passthrough (Linux 6.9+ with CONFIG_FUSE_PASSTHROUGH)';
      if (process.env.CI) throw new Error(why);
      console.warn(`skipping: ${why}`);
    }
  });

  after(async () => {
    const f = fuseLl();
    for (const m of mounts) {
      await f.unmount(m.session);
      f.destroy(m.session);
      await forceUnmount(m.mnt).catch(() => undefined);
    }
    for (const fd of fds.splice(0)) closeSync(fd);
    await fs.rm(dir, { recursive: true, force: true });
  });

  const backing = async (bytes: Buffer) => {
    const p = path.join(dir, `b${fds.length}`);
    await fs.writeFile(p, bytes);
    const fd = openSync(p, 'r');
    fds.push(fd);
    return { p, fd };
  };

  test('reads of a passed-through open are the backing file\'s, and none reaches the server', async (t) => {
    const f = fuseLl();
    if (!f.passthrough(pt.session)) return t.skip('no passthrough');
    const bytes = randomBytes(3 * MiB + 12345);
    size = bytes.length;
    served = Buffer.alloc(size, 0x55); // what a READ that did reach us would show
    const b = await backing(bytes);
    const id = f.backingOpen(pt.session, b.fd);
    assert.ok(id > 0, `backing id ${id}`);
    how = () => ({ fh: 7, backingId: id });
    seen.length = 0;
    const got = await fs.readFile(path.join(pt.mnt, 'f'));
    assert.ok(got.equals(bytes), 'the backing file, byte for byte');
    // Two opens at once (one inode, one backing): both read it; unaligned reads too.
    const [h1, h2] = await Promise.all([fs.open(path.join(pt.mnt, 'f'), 'r'), fs.open(path.join(pt.mnt, 'f'), 'r')]);
    try {
      const x = Buffer.alloc(100_001);
      await h1.read(x, 0, x.length, 2 * MiB + 7);
      assert.ok(x.equals(bytes.subarray(2 * MiB + 7, 2 * MiB + 7 + x.length)));
      const y = Buffer.alloc(10);
      const { bytesRead } = await h2.read(y, 0, 10, size - 4);
      assert.equal(bytesRead, 4, 'the end of the file is the backing file\'s');
    } finally {
      await h1.close();
      await h2.close();
    }
    assert.deepEqual(seen, [], 'no READ reached the server');
    assert.equal(f.backingClose(pt.session, id), 0);
    assert.ok(f.backingClose(pt.session, id) < 0, 'an id closed already: an error, not a crash');
  });

  test('the descriptor given to backingOpen may be closed at once: the kernel holds the file', async (t) => {
    const f = fuseLl();
    if (!f.passthrough(pt.session)) return t.skip('no passthrough');
    const bytes = randomBytes(MiB);
    size = bytes.length;
    const p = path.join(dir, 'closed-at-once');
    await fs.writeFile(p, bytes);
    const fd = openSync(p, 'r');
    const id = f.backingOpen(pt.session, fd);
    closeSync(fd);
    await fs.rm(p); // and its name gone
    how = () => ({ fh: 8, backingId: id });
    seen.length = 0;
    assert.ok((await fs.readFile(path.join(pt.mnt, 'f'))).equals(bytes));
    assert.deepEqual(seen, []);
    assert.equal(f.backingClose(pt.session, id), 0);
  });

  test('with directIo too, reads and writes come here while another open passes through', async (t) => {
    const f = fuseLl();
    if (!f.passthrough(pt.session)) return t.skip('no passthrough');
    const bytes = randomBytes(MiB);
    size = bytes.length;
    served = Buffer.alloc(size, 0x66);
    const b = await backing(bytes);
    const id = f.backingOpen(pt.session, b.fd);
    const O_ACCMODE = 3;
    how = (flags) => ((flags & O_ACCMODE) === 0 ? { fh: 9, backingId: id } : { fh: 10, backingId: id, directIo: true });
    seen.length = 0;
    const reader = await fs.open(path.join(pt.mnt, 'f'), 'r');
    const writer = await fs.open(path.join(pt.mnt, 'f'), 'r+');
    try {
      await writer.write(Buffer.from('hello'), 0, 5, 4096);
      const w = Buffer.alloc(64);
      await writer.read(w, 0, 64, 0);
      assert.ok(w.equals(served.subarray(0, 64)), 'the writer\'s read came here');
      const r = Buffer.alloc(64);
      await reader.read(r, 0, 64, 0);
      assert.ok(r.equals(bytes.subarray(0, 64)), 'the reader\'s read is the backing file\'s');
    } finally {
      await reader.close();
      await writer.close();
    }
    assert.deepEqual(seen, [{ op: 'write', off: 4096, len: 5 }, { op: 'read', off: 0, len: 64 }]);
    assert.equal(f.backingClose(pt.session, id), 0);
  });

  test('the kernel\'s rule: while an open passes through, an open that does not fails (EIO)', async (t) => {
    const f = fuseLl();
    if (!f.passthrough(pt.session)) return t.skip('no passthrough');
    const bytes = randomBytes(64 * 1024);
    size = bytes.length;
    const b = await backing(bytes);
    const id = f.backingOpen(pt.session, b.fd);
    how = () => ({ fh: 11, backingId: id });
    const first = await fs.open(path.join(pt.mnt, 'f'), 'r');
    try {
      how = () => ({ fh: 12 });
      await assert.rejects(fs.open(path.join(pt.mnt, 'f'), 'r'), { code: 'EIO' });
    } finally {
      await first.close();
    }
    // Released: a plain open is fine again (reads come here).
    served = Buffer.alloc(size, 0x77);
    seen.length = 0;
    assert.ok((await fs.readFile(path.join(pt.mnt, 'f'))).equals(served));
    assert.ok(seen.length > 0);
    assert.equal(f.backingClose(pt.session, id), 0);
  });

  test('bad arguments are errors, not crashes', async (t) => {
    const f = fuseLl();
    if (!f.passthrough(pt.session)) return t.skip('no passthrough');
    assert.equal(f.backingOpen(pt.session, -1), -E.EBADF);
    assert.ok(f.backingClose(pt.session, 999_999) < 0);
  });

  test('a mount that did not ask: no passthrough, backing files refused', async () => {
    const f = fuseLl();
    const plain = await mount('plain', false);
    assert.equal(f.passthrough(plain.session), false);
    const b = await backing(Buffer.from('x'));
    assert.equal(f.backingOpen(plain.session, b.fd), -E.EPERM);
    // Its opens and reads work as before (through the same custom io).
    size = 4096;
    served = randomBytes(4096);
    how = () => ({ fh: 13 });
    assert.ok((await fs.readFile(path.join(plain.mnt, 'f'))).equals(served));
  });
});
