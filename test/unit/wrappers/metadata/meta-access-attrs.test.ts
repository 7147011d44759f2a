import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Backend } from '../../../../src/backend/backend.js';
import { ACCESS3_READ, FType } from '../../../../src/nfs3/constants.js';
import type { Fattr3 } from '../../../../src/nfs3/types.js';
import { AuthFlavor, type Credentials } from '../../../../src/rpc/types.js';
import type { ExtLink } from '../../../../src/ext/meta-client.js';
import { MetaBackend } from '../../../../src/wrappers/metadata/meta-backend.js';

const ROOT: Credentials = { flavor: AuthFlavor.AUTH_SYS, uid: 0, gid: 0, gids: [] };
const FH = Buffer.from('0a0b', 'hex');
const attr = (size: number, mtime = 3): Fattr3 => ({
  type: FType.REG, mode: 0o644, nlink: 1, uid: 0, gid: 0, size, used: size, rdev: { major: 0, minor: 0 }, fsid: 1n, fileid: 7n,
  atime: { sec: 1, nsec: 0 }, mtime: { sec: mtime, nsec: 0 }, ctime: { sec: mtime, nsec: 0 },
});

/** The calls that reach the layer below, and what it answers (a small file: read the plain way). */
function below(a: Fattr3, withAttr = true) {
  const calls: string[] = [];
  const inner = {
    async access(_c: Credentials, _fh: Buffer, mask: number) {
      calls.push('ACCESS');
      return { access: mask, attr: withAttr ? a : undefined };
    },
    async getattr() {
      calls.push('GETATTR');
      return a;
    },
    async read(_c: Credentials, _fh: Buffer, offset: number, count: number) {
      calls.push('READ');
      const n = Math.max(0, Math.min(count, a.size - offset));
      return { count: n, eof: offset + n >= a.size, data: Buffer.alloc(n, 1), attr: a };
    },
  };
  return { calls, inner: inner as unknown as Backend };
}

const link = {} as ExtLink; // never used: the files here are below the meta-data size

describe('meta-data layer: the open\'s ACCESS attributes serve the first read', { timeout: 30_000 }, () => {
  test('open (ACCESS with attributes) then read: no GETATTR of its own', async () => {
    const { calls, inner } = below(attr(3000));
    const m = new MetaBackend(inner, { link, validateMs: 60_000 });
    await m.access(ROOT, FH, ACCESS3_READ);
    const r = await m.read(ROOT, FH, 0, 4096);
    assert.equal(r.count, 3000);
    assert.deepEqual(calls, ['ACCESS', 'READ']);
  });

  test('an ACCESS without attributes, or attributes older than the validation time, still make it ask', async () => {
    const a = below(attr(3000), false);
    const m = new MetaBackend(a.inner, { link, validateMs: 60_000 });
    await m.access(ROOT, FH, ACCESS3_READ);
    await m.read(ROOT, FH, 0, 4096);
    assert.deepEqual(a.calls, ['ACCESS', 'GETATTR', 'READ']);

    const b = below(attr(3000));
    const n = new MetaBackend(b.inner, { link, validateMs: 0 });
    await n.access(ROOT, FH, ACCESS3_READ);
    await n.read(ROOT, FH, 0, 4096);
    assert.deepEqual(b.calls, ['ACCESS', 'GETATTR', 'READ'], 'validateMs 0: every read checks the version');
  });
});
