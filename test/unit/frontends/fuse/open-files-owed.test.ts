import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Backend } from '../../../../src/backend/backend.js';
import { FsError } from '../../../../src/backend/errors.js';
import { OpenFiles, OWED_MAX_MS } from '../../../../src/frontends/fuse/open-files.js';
import { StableHow } from '../../../../src/nfs3/constants.js';
import type { Sattr3 } from '../../../../src/nfs3/types.js';
import { AuthFlavor, type Credentials } from '../../../../src/rpc/types.js';

const cred: Credentials = { flavor: AuthFlavor.AUTH_SYS, uid: 0, gid: 0, gids: [] };
const verf = Buffer.alloc(8);

/** A backend that logs WRITE / SETATTR / COMMIT in the order they are answered; `hold` keeps WRITEs unanswered until released. */
function fakeBackend() {
  const log: string[] = [];
  let release: (() => void) | undefined;
  let gate: Promise<void> | undefined;
  let refuse = false;
  const b = {
    async write(_c: Credentials, _fh: Buffer, off: number, data: Buffer) {
      if (gate) await gate;
      log.push(`write ${off}+${data.length}`);
      return { count: data.length, committed: StableHow.UNSTABLE, verf, wcc: {} };
    },
    async setattr(_c: Credentials, _fh: Buffer, s: Sattr3) {
      if (refuse) throw new FsError('PERM', 'refused');
      log.push(`setattr ${JSON.stringify(s)}`);
      return { wcc: {} };
    },
    async commit() {
      log.push('commit');
      return { verf, wcc: {} };
    },
  };
  return {
    backend: b as unknown as Backend,
    log,
    hold() {
      gate = new Promise<void>((r) => (release = r));
    },
    go() {
      gate = undefined;
      release?.();
    },
    refuse(v: boolean) {
      refuse = v;
    },
  };
}

describe('OpenFile: owed SETATTRs (answered now, sent merged later)', () => {
  test('merged into one SETATTR, sent after the writes in flight, beside the COMMIT at close', async () => {
    const f = fakeBackend();
    const files = new OpenFiles(f.backend, 1 << 30, 1 << 30, 0, () => cred, 8 << 20);
    const fd = files.open(Buffer.from('fh'), 'k', { append: false, writable: true });
    f.hold();
    await fd.file.write(cred, 0, Buffer.alloc(10), true);
    await fd.file.owe(cred, { mtime: { sec: 7, nsec: 0 } }, { mtime: { sec: 7, nsec: 0 } });
    await fd.file.owe(cred, { uid: 0, gid: 0 }, { uid: 0, gid: 0 });
    await fd.file.owe(cred, { mode: 0o644 }, { mode: 0o644 });
    assert.deepEqual(fd.file.owed?.shows, { mtime: { sec: 7, nsec: 0 }, uid: 0, gid: 0, mode: 0o644 });
    assert.deepEqual(f.log, [], 'nothing answered yet');
    const closing = files.flush(cred, fd.fd);
    f.go();
    await closing;
    assert.equal(f.log[0], 'write 0+10', 'the write lands first');
    assert.deepEqual(f.log.slice(1).sort(), ['commit', `setattr ${JSON.stringify({ mtime: { sec: 7, nsec: 0 }, uid: 0, gid: 0, mode: 0o644 })}`]);
    assert.equal(fd.file.owed, undefined);
    assert.equal(files.stats.setattrsOwed, 3);
    assert.equal(files.stats.setattrsPaid, 1);
  });

  test('a write after an owed SETATTR sends it first (a write moves the mtime on)', async () => {
    const f = fakeBackend();
    const files = new OpenFiles(f.backend, 1 << 30, 1 << 30, 0, () => cred, 8 << 20);
    const fd = files.open(Buffer.from('fh'), 'k', { append: false, writable: true });
    await fd.file.owe(cred, { mtime: { sec: 3, nsec: 0 } }, { mtime: { sec: 3, nsec: 0 } });
    await fd.file.write(cred, 5, Buffer.alloc(2), false);
    assert.deepEqual(f.log, [`setattr ${JSON.stringify({ mtime: { sec: 3, nsec: 0 } })}`, 'write 5+2']);
  });

  test(`sent by itself at most ${OWED_MAX_MS} ms later when nothing else comes`, async () => {
    const f = fakeBackend();
    const files = new OpenFiles(f.backend, 1 << 30, 1 << 30, 0, () => cred, 8 << 20);
    let paid!: () => void;
    const done = new Promise<void>((r) => (paid = r));
    files.onOwed = () => paid();
    const fd = files.open(Buffer.from('fh'), 'k', { append: false, writable: true });
    await fd.file.owe(cred, { mode: 0o600 }, { mode: 0o600 });
    await done;
    assert.deepEqual(f.log, [`setattr ${JSON.stringify({ mode: 0o600 })}`]);
  });

  test('refused after all: the next write, and fsync and close of every descriptor, report it once each', async () => {
    const f = fakeBackend();
    const files = new OpenFiles(f.backend, 1 << 30, 1 << 30, 0, () => cred, 8 << 20);
    const a = files.open(Buffer.from('fh'), 'k', { append: false, writable: true });
    const b = files.open(Buffer.from('fh'), 'k', { append: false, writable: true });
    f.refuse(true);
    let told: unknown;
    files.onOwed = (_k, attrs, err) => (told = err ?? attrs);
    await a.file.owe(cred, { mode: 0o644 }, { mode: 0o644 });
    assert.equal(await a.file.pay(), false);
    assert.ok(told instanceof FsError);
    f.refuse(false);
    await assert.rejects(a.file.write(cred, 0, Buffer.alloc(1), false), /refused/);
    await assert.rejects(files.sync(cred, a.fd), /refused/);
    await assert.rejects(files.flush(cred, a.fd), /refused/);
    await assert.rejects(files.flush(cred, b.fd), /refused/);
    await files.flush(cred, a.fd);
  });

  test('unmount (commitAll) sends what is owed and counts a refusal as a failure', async () => {
    const f = fakeBackend();
    const files = new OpenFiles(f.backend, 1 << 30, 1 << 30, 0, () => cred, 8 << 20);
    const fd = files.open(Buffer.from('fh'), 'k', { append: false, writable: true });
    await fd.file.owe(cred, { mode: 0o640 }, { mode: 0o640 });
    assert.equal(await files.commitAll(cred), 0);
    assert.deepEqual(f.log, [`setattr ${JSON.stringify({ mode: 0o640 })}`]);
    f.refuse(true);
    await fd.file.owe(cred, { mode: 0o600 }, { mode: 0o600 });
    assert.equal(await files.commitAll(cred), 1);
  });
});
