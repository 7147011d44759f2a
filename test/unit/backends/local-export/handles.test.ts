import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { FsError } from '../../../../src/backend/errors.js';
import { HandleCodec } from '../../../../src/backends/local-export/handles.js';

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (e) {
    assert.ok(e instanceof FsError);
    return e.code;
  }
};

/** The handle codec remembers handles it issued or verified (no HMAC for them again): never one it did not. */
describe('local export: handle codec', () => {
  test('an issued handle decodes; a changed byte anywhere is refused even while the genuine one is remembered', () => {
    const c = new HandleCodec(randomBytes(32));
    const id = { ino: 123456789n, gen: 987654321n };
    const h = c.encode(id);
    assert.deepEqual(c.decode(h), id);
    assert.deepEqual(c.decode(Buffer.from(h)), id, 'a copy of the bytes (the client sends them back)');
    for (const at of [12, 19, 20, 27, 28, 43]) {
      const f = Buffer.from(h);
      f[at] ^= 1;
      assert.equal(code(() => c.decode(f)), 'BADHANDLE', `byte ${at} changed`);
    }
    const other = Buffer.from(h);
    other[4] ^= 1;
    assert.equal(code(() => c.decode(other)), 'STALE', 'another export');
  });

  test("another secret's codec refuses our handles; issuing again gives equal bytes in a buffer of its own", () => {
    const a = new HandleCodec(randomBytes(32));
    const b = new HandleCodec(randomBytes(32));
    const h = a.encode({ ino: 5n, gen: 6n });
    assert.ok(code(() => b.decode(h)));
    const again = a.encode({ ino: 5n, gen: 6n });
    assert.ok(again.equals(h));
    again.fill(0);
    assert.ok(a.encode({ ino: 5n, gen: 6n }).equals(h), 'the remembered handle is not the one handed out');
  });

  test('past the memo bound: old handles still decode (by their HMAC), forged ones still do not', () => {
    const c = new HandleCodec(randomBytes(32));
    const first = c.encode({ ino: 1n, gen: 1n });
    for (let i = 2n; i < 5000n; i++) c.encode({ ino: i, gen: i });
    assert.deepEqual(c.decode(first), { ino: 1n, gen: 1n });
    const f = Buffer.from(first);
    f[40] ^= 0x80;
    assert.equal(code(() => c.decode(f)), 'BADHANDLE');
  });
});
