import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { openSync, closeSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fuseLl, type LlRequest, type LlSession } from '../../../src/native/fuse-ll.js';
import { llTestAttr } from './ll-test-attr.js';
import { fuseSkip, forceUnmount } from '../../integration/fuse/mount-helper.js';

const E = os.constants.errno;
const MiB = 1 << 20;
const FILE = 2;
type Extent = { fd: number; pos: number; len: number };

/**
 * fuse_ll.c replyFds on a real mount served by this test through the raw
 * binding (no front end): one file opened with direct_io, so every read()
 * here is one FUSE READ of exactly its size, answered by `plan` — from the
 * extents it returns, or by replyBuf when replyFds sent nothing.
 */
describe('fuse replyFds: READ answered from local files by the native layer', { skip: fuseSkip(), timeout: 120_000 }, () => {
  let dir: string;
  let mnt: string;
  let session: LlSession;
  let size = 0;
  const fds: number[] = [];
  /** The READ's answer: extents, and what to send instead if replyFds sends nothing. */
  let plan: (off: number, len: number) => { extents: Extent[]; instead?: Buffer } = () => ({ extents: [] });
  const results: number[] = [];
  let fdsBefore = 0;

  const openFds = () => readdirSync('/proc/self/fd').length;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-replyfds-'));
    mnt = path.join(dir, 'mnt');
    await fs.mkdir(mnt);
    fdsBefore = openFds();
    const f = fuseLl();
    const attr = (ino: number) => llTestAttr(ino, size);
    const handle = async (r: LlRequest) => {
      const req = r.req!;
      switch (r.op) {
        case 'lookup':
          if (r.name === 'f') return f.replyEntry(req, { nodeid: FILE, attr: attr(FILE), attrTimeout: 0, entryTimeout: 0 });
          return f.replyErr(req, E.ENOENT);
        case 'getattr':
          return f.replyAttr(req, attr(r.ino), 0);
        case 'open':
          return f.replyOpen(req, { fh: 1, directIo: true });
        case 'read': {
          const p = plan(r.off!, r.size!);
          const res = await f.replyFds(req, p.extents);
          results.push(res);
          if (res > 0) f.replyBuf(req, p.instead ?? Buffer.alloc(0));
          return;
        }
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
    session = f.mount(mnt, `fsname=gvfs-replyfds,subtype=gvfs,max_read=${MiB}`, MiB, MiB, MiB, (r) => {
      if (!r.req) return;
      handle(r).catch((e) => {
        console.error(e);
        f.replyErr(r.req!, E.EIO);
      });
    }, false);
  });

  after(async () => {
    const f = fuseLl();
    if (session) {
      await f.unmount(session);
      f.destroy(session);
    }
    for (const fd of fds.splice(0)) closeSync(fd);
    await forceUnmount(mnt).catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  });

  const source = async (name: string, bytes: Buffer) => {
    await fs.writeFile(path.join(dir, name), bytes);
    const fd = openSync(path.join(dir, name), 'r');
    fds.push(fd);
    return fd;
  };

  const readAt = async (pos: number, len: number) => {
    const fh = await fs.open(path.join(mnt, 'f'), 'r');
    try {
      const b = Buffer.alloc(len);
      const { bytesRead } = await fh.read(b, 0, len, pos);
      return b.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  };

  test('the bytes of several extents of two files, unaligned, large (spliced) and small (copied), in order', async () => {
    const a = randomBytes(3 * MiB + 5);
    const b = randomBytes(200_000);
    const fa = await source('a', a);
    const fb = await source('b', b);
    size = 4 * MiB;
    // Every READ: its first 4097 bytes from a at off+3, the next 12345 from b at 777, the rest from a again.
    plan = (off, len) => {
      const x1 = Math.min(len, 4097);
      const x2 = Math.min(len - x1, 12345);
      const ex: Extent[] = [{ fd: fa, pos: off + 3, len: x1 }];
      if (x2) ex.push({ fd: fb, pos: 777, len: x2 });
      if (len - x1 - x2) ex.push({ fd: fa, pos: off + 3 + x1 + x2, len: len - x1 - x2 });
      return { extents: ex };
    };
    const want = (off: number, len: number) => {
      const x1 = Math.min(len, 4097);
      const x2 = Math.min(len - x1, 12345);
      return Buffer.concat([a.subarray(off + 3, off + 3 + x1), b.subarray(777, 777 + x2), a.subarray(off + 3 + x1 + x2, off + 3 + len)]);
    };
    for (const [off, len] of [[0, MiB], [123_457, MiB], [5, 100], [4096, 3 * 4096 + 17], [2 * MiB, 700_001]]) {
      results.length = 0;
      const got = await readAt(off, len);
      assert.equal(got.length, len, `READ ${off}+${len}: whole`);
      assert.ok(got.equals(want(off, len)), `READ ${off}+${len}: the extents' bytes, in order`);
      // (An unaligned buffer of 1 MiB spans 257 pages: the kernel may split it into two READs.)
      assert.ok(results.length >= 1 && results.every((r) => r === 0), `answered by replyFds: ${results}`);
    }
  });

  test('reads in parallel from many callers: every answer its own bytes', async () => {
    const a = randomBytes(8 * MiB);
    const fa = await source('c', a);
    size = 8 * MiB;
    plan = (off, len) => ({ extents: [{ fd: fa, pos: off, len }] });
    const offs = Array.from({ length: 24 }, (_, i) => (i * 333_331) % (7 * MiB));
    const got = await Promise.all(offs.map((o) => readAt(o, 512 * 1024)));
    offs.forEach((o, i) => assert.ok(got[i].equals(a.subarray(o, o + 512 * 1024)), `read at ${o}`));
  });

  test('a file that cannot be read: nothing is sent, the errno comes back, and the request still takes an answer', async () => {
    const d = openSync(dir, 'r'); // a directory: neither splice nor pread reads it
    fds.push(d);
    const a = randomBytes(64 * 1024);
    const fa = await source('d', a);
    size = MiB;
    const instead = Buffer.from('the other way');
    plan = () => ({ extents: [{ fd: d, pos: 0, len: 64 * 1024 }], instead });
    results.length = 0;
    assert.ok((await readAt(0, 64 * 1024)).equals(instead), 'large (pipe): the fallback answer');
    plan = () => ({ extents: [{ fd: d, pos: 0, len: 100 }], instead });
    assert.ok((await readAt(0, 100)).equals(instead), 'small (memory): the fallback answer');
    // A file shorter than the extent says: splice meets its end, nothing is sent.
    plan = () => ({ extents: [{ fd: fa, pos: 60 * 1024, len: 16 * 1024 }], instead });
    assert.ok((await readAt(0, 16 * 1024)).equals(instead), 'short file: the fallback answer');
    assert.equal(results.length, 3);
    assert.ok(results.every((r) => r > 0), `positive errnos: ${results}`);
    assert.ok(results.includes(E.EINVAL) || results.includes(E.EISDIR), `a directory: ${results}`);
    assert.equal(results[2], E.EIO, 'a short file: EIO');
    // Every thread's pipe holds nothing of a failed answer afterwards (which thread takes a READ is not ours to
    // choose: enough READs, one at a time, that each thread answers some).
    plan = (off, len) => ({ extents: [{ fd: fa, pos: off, len }] });
    results.length = 0;
    for (let i = 0; i < 24; i++) assert.ok((await readAt(4096 + i, 32 * 1024)).equals(a.subarray(4096 + i, 4096 + i + 32 * 1024)), `read ${i} after the failures`);
    assert.ok(results.length >= 24 && results.every((r) => r === 0), `${results}`);
  });

  test('bad extents are a TypeError before anything is taken: the request is still answerable', async () => {
    const f = fuseLl();
    const bad: unknown[] = [[], [{ fd: -1, pos: 0, len: 1 }], [{ fd: 3, pos: -1, len: 1 }], [{ fd: 3, pos: 0, len: 0 }], 'x', Array.from({ length: 65 }, () => ({ fd: 3, pos: 0, len: 1 }))];
    let seen = 0;
    size = MiB;
    plan = () => {
      for (const x of bad) {
        assert.throws(() => f.replyFds(1n, x as Extent[]), TypeError);
        seen++;
      }
      return { extents: [{ fd: -1, pos: 0, len: 1 }] }; // thrown in the handler: answered EIO there
    };
    await assert.rejects(readAt(0, 10), { code: 'EIO' });
    assert.equal(seen, bad.length);
  });

  test('unmount ends the replier threads and their pipes: no descriptor left behind', async () => {
    const f = fuseLl();
    await f.unmount(session);
    f.destroy(session);
    session = undefined as unknown as LlSession;
    for (const fd of fds.splice(0)) closeSync(fd);
    // The threads exit once destroy has run (joined there); libfuse's pipes go with them.
    assert.equal(openFds(), fdsBefore, 'descriptors back to what they were before the mount');
  });
});
