import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Backend, DirPage } from '../../../src/backend/backend.js';
import { FsError } from '../../../src/backend/errors.js';
import { META_DIR } from '../../../src/meta/format.js';
import { FType } from '../../../src/nfs3/constants.js';
import type { DirEntry, DirEntryPlus } from '../../../src/nfs3/types.js';
import type { Credentials } from '../../../src/rpc/types.js';
import { HideMetaBackend } from '../../../src/wrappers/metadata/hide.js';

/**
 * HideMetaBackend over a stub backend that serves a directory listing in
 * pages of a chosen size and records every call that reaches it.
 */

const CRED: Credentials = { flavor: 1, uid: 1000, gid: 1000, gids: [1000] };
const DIR = Buffer.from('dir-handle');
const VERF = Buffer.from('verf0001');

interface Call {
  op: string;
  args: unknown[];
}

class StubBackend {
  calls: Call[] = [];
  constructor(
    private readonly names: string[] = [],
    private readonly per = 2,
    /** Report EOF only on an empty page (as some servers do), not on the page holding the last entry. */
    private readonly lateEof = false,
  ) {}

  private page(cookie: bigint, verf: Buffer): DirPage<DirEntryPlus> {
    if (cookie !== 0n && !verf.equals(VERF)) throw new FsError('BAD_COOKIE', 'wrong verifier');
    const start = Number(cookie);
    const entries = this.names.slice(start, start + this.per).map((name, k) => ({
      fileid: BigInt(100 + start + k),
      name,
      cookie: BigInt(start + k + 1),
      attr: undefined,
      fh: Buffer.from(`fh-${name}`),
    }));
    const end = start + entries.length >= this.names.length;
    return { dirAttr: undefined, verf: VERF, entries, eof: this.lateEof ? entries.length === 0 : end };
  }

  async readdir(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, count: number): Promise<DirPage<DirEntry>> {
    this.calls.push({ op: 'readdir', args: [cred, dir, cookie, verf, count] });
    const p = this.page(cookie, verf);
    return { ...p, entries: p.entries.map(({ fileid, name, cookie: c }) => ({ fileid, name, cookie: c })) };
  }
  async readdirplus(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>> {
    this.calls.push({ op: 'readdirplus', args: [cred, dir, cookie, verf, dircount, maxcount] });
    return this.page(cookie, verf);
  }
  private record(op: string, args: unknown[]) {
    this.calls.push({ op, args });
    return { op };
  }
  async lookup(...a: unknown[]) {
    return this.record('lookup', a);
  }
  async create(...a: unknown[]) {
    return this.record('create', a);
  }
  async mkdir(...a: unknown[]) {
    return this.record('mkdir', a);
  }
  async symlink(...a: unknown[]) {
    return this.record('symlink', a);
  }
  async mknod(...a: unknown[]) {
    return this.record('mknod', a);
  }
  async remove(...a: unknown[]) {
    return this.record('remove', a);
  }
  async rmdir(...a: unknown[]) {
    return this.record('rmdir', a);
  }
  async rename(...a: unknown[]) {
    return this.record('rename', a);
  }
  async link(...a: unknown[]) {
    return this.record('link', a);
  }
}

function hide(stub: StubBackend): HideMetaBackend {
  return new HideMetaBackend(stub as unknown as Backend);
}

type Lister = (h: HideMetaBackend, cookie: bigint, verf: Buffer) => Promise<DirPage<DirEntry>>;
const listers: Array<[string, Lister]> = [
  ['readdir', (h, c, v) => h.readdir(CRED, DIR, c, v, 4096)],
  ['readdirplus', (h, c, v) => h.readdirplus(CRED, DIR, c, v, 1024, 8192)],
];

/** List a whole directory as an NFS client would: follow each page's last cookie until EOF. */
async function listAll(h: HideMetaBackend, list: Lister): Promise<{ names: string[]; pages: Array<DirPage<DirEntry>> }> {
  const pages: Array<DirPage<DirEntry>> = [];
  let cookie = 0n;
  let verf: Buffer = Buffer.alloc(8);
  for (let guard = 0; guard < 100; guard++) {
    const p = await list(h, cookie, verf);
    pages.push(p);
    if (p.eof) return { names: pages.flatMap((x) => x.entries.map((e) => e.name)), pages };
    assert.ok(p.entries.length > 0, 'no empty page before EOF');
    cookie = p.entries[p.entries.length - 1].cookie;
    verf = p.verf;
  }
  throw new Error('listing never reached EOF');
}

function refusedAs(code: 'NOENT' | 'ACCES') {
  return (e: unknown) => {
    assert.ok(e instanceof FsError, String(e));
    assert.equal(e.code, code);
    return true;
  };
}

for (const [op, list] of listers) {
  test(`${op}: .gvfs-meta is filtered out wherever it falls, for any page size`, async () => {
    const others = ['a', 'b', 'c', 'd', 'e'];
    for (const lateEof of [false, true]) {
      for (let per = 1; per <= 7; per++) {
        for (let at = 0; at <= others.length; at++) {
          const names = [...others.slice(0, at), META_DIR, ...others.slice(at)];
          const stub = new StubBackend(names, per, lateEof);
          const { names: seen, pages } = await listAll(hide(stub), list);
          const where = `per ${per}, at ${at}, lateEof ${lateEof}`;
          assert.deepEqual(seen, others, where);
          for (const p of pages) {
            assert.ok(p.eof || p.entries.length > 0, `${where}: empty page before EOF`);
            assert.ok(p.verf.equals(VERF), where);
          }
          // Every call reached the stub as this op, with the cookies of a straight walk.
          assert.ok(stub.calls.every((c) => c.op === op));
          const cookies = stub.calls.map((c) => c.args[2] as bigint);
          assert.deepEqual(cookies, [...cookies].sort((x, y) => Number(x - y)), `${where}: cookies only move forward`);
          assert.equal(new Set(cookies).size, cookies.length, `${where}: no page asked for twice`);
        }
      }
    }
  });

  test(`${op}: a page holding only .gvfs-meta is followed by the next page, from its cookie and verifier`, async () => {
    const stub = new StubBackend(['a', META_DIR, 'b', 'c'], 1);
    const h = hide(stub);
    const first = await list(h, 0n, Buffer.alloc(8));
    assert.deepEqual(
      first.entries.map((e) => e.name),
      ['a'],
    );
    assert.equal(first.eof, false);
    stub.calls = [];
    const second = await list(h, first.entries[0].cookie, first.verf);
    assert.deepEqual(
      second.entries.map((e) => [e.name, e.cookie]),
      [['b', 3n]],
    );
    assert.equal(second.eof, false);
    // Two calls below: the page of only .gvfs-meta (cookie 1), then on from its cookie (2) with the page's verifier.
    assert.deepEqual(
      stub.calls.map((c) => c.args[2]),
      [1n, 2n],
    );
    assert.ok((stub.calls[1].args[3] as Buffer).equals(VERF));
  });

  test(`${op}: .gvfs-meta alone on the last page gives an empty EOF page`, async () => {
    for (const lateEof of [false, true]) {
      const stub = new StubBackend(['a', META_DIR], 1, lateEof);
      const h = hide(stub);
      const last = await list(h, 1n, VERF);
      assert.deepEqual(last.entries, []);
      assert.equal(last.eof, true);
      assert.equal(stub.calls.length, lateEof ? 2 : 1);
    }
    // An empty directory (no entries at all, not even the hidden one) stays one call.
    const empty = new StubBackend([], 3);
    const p = await list(hide(empty), 0n, Buffer.alloc(8));
    assert.deepEqual(p.entries, []);
    assert.equal(p.eof, true);
    assert.equal(empty.calls.length, 1);
  });

  test(`${op}: names that only look like .gvfs-meta are not hidden`, async () => {
    const names = ['.gvfs-meta2', '.GVFS-META', 'gvfs-meta', '.gvfs-meta.bak', ' .gvfs-meta'];
    const { names: seen } = await listAll(hide(new StubBackend([...names, META_DIR], 2)), list);
    assert.deepEqual(seen, names);
  });
}

test('readdir and readdirplus pass their arguments and entry bodies through', { timeout: 60_000 }, async () => {
  const stub = new StubBackend(['x', META_DIR, 'y'], 10);
  const h = hide(stub);
  const plus = await h.readdirplus(CRED, DIR, 0n, Buffer.alloc(8), 1234, 5678);
  assert.deepEqual(stub.calls[0].args, [CRED, DIR, 0n, Buffer.alloc(8), 1234, 5678]);
  assert.deepEqual(
    plus.entries.map((e) => [e.name, e.fileid, e.cookie, e.fh?.toString()]),
    [
      ['x', 100n, 1n, 'fh-x'],
      ['y', 102n, 3n, 'fh-y'],
    ],
  );
  await h.readdir(CRED, DIR, 0n, Buffer.alloc(8), 999);
  assert.deepEqual(stub.calls[1].args, [CRED, DIR, 0n, Buffer.alloc(8), 999]);
});

test('lookup of .gvfs-meta is NOENT and never reaches the backend; other names pass through', { timeout: 60_000 }, async () => {
  const stub = new StubBackend();
  const h = hide(stub);
  await assert.rejects(h.lookup(CRED, DIR, META_DIR), refusedAs('NOENT'));
  assert.equal(stub.calls.length, 0);
  assert.deepEqual(await h.lookup(CRED, DIR, 'file'), { op: 'lookup' });
  assert.deepEqual(await h.lookup(CRED, DIR, '.gvfs-meta.x'), { op: 'lookup' });
  assert.deepEqual(stub.calls, [
    { op: 'lookup', args: [CRED, DIR, 'file'] },
    { op: 'lookup', args: [CRED, DIR, '.gvfs-meta.x'] },
  ]);
});

const FH = Buffer.from('file-handle');
const DIR2 = Buffer.from('other-dir');
const SATTR = { mode: 0o644 };
const mutations: Array<[string, (h: HideMetaBackend, name: string) => Promise<unknown>, (name: string) => unknown[]]> = [
  ['create', (h, n) => h.create(CRED, DIR, n, { mode: 'guarded', attrs: SATTR }), (n) => [CRED, DIR, n, { mode: 'guarded', attrs: SATTR }]],
  ['mkdir', (h, n) => h.mkdir(CRED, DIR, n, SATTR), (n) => [CRED, DIR, n, SATTR]],
  ['symlink', (h, n) => h.symlink(CRED, DIR, n, '/target', SATTR), (n) => [CRED, DIR, n, '/target', SATTR]],
  ['mknod', (h, n) => h.mknod(CRED, DIR, n, { type: FType.FIFO, attrs: SATTR }), (n) => [CRED, DIR, n, { type: FType.FIFO, attrs: SATTR }]],
  ['remove', (h, n) => h.remove(CRED, DIR, n), (n) => [CRED, DIR, n]],
  ['rmdir', (h, n) => h.rmdir(CRED, DIR, n), (n) => [CRED, DIR, n]],
  ['rename (from)', (h, n) => h.rename(CRED, DIR, n, DIR2, 'elsewhere'), (n) => [CRED, DIR, n, DIR2, 'elsewhere']],
  ['rename (to)', (h, n) => h.rename(CRED, DIR, 'somewhere', DIR2, n), (n) => [CRED, DIR, 'somewhere', DIR2, n]],
  ['link', (h, n) => h.link(CRED, FH, DIR, n), (n) => [CRED, FH, DIR, n]],
];

for (const [label, call, args] of mutations) {
  const op = label.split(' ')[0];
  test(`${label} with the name .gvfs-meta is ACCES and never reaches the backend`, async () => {
    const stub = new StubBackend();
    const h = hide(stub);
    await assert.rejects(call(h, META_DIR), (e: unknown) => {
      refusedAs('ACCES')(e);
      const fe = e as FsError;
      assert.match(fe.message, /reserved for GVFS meta-data/);
      assert.ok(fe.wcc, 'the failure body has its wcc data');
      if (op === 'rename') assert.ok(fe.wcc2, 'and rename its second wcc');
      return true;
    });
    assert.equal(stub.calls.length, 0);
    // Other names go through unchanged.
    assert.deepEqual(await call(h, 'plain-name'), { op });
    assert.deepEqual(stub.calls, [{ op, args: args('plain-name') }]);
  });
}

test('rename with .gvfs-meta on both sides is refused; between ordinary names it passes', { timeout: 60_000 }, async () => {
  const stub = new StubBackend();
  const h = hide(stub);
  await assert.rejects(h.rename(CRED, DIR, META_DIR, DIR, META_DIR), refusedAs('ACCES'));
  assert.deepEqual(await h.rename(CRED, DIR, 'a', DIR, 'b'), { op: 'rename' });
  assert.equal(stub.calls.length, 1);
});
