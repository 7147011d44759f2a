import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { RemoteNfs } from '../../src/backends/remote-nfs/remote-nfs.js';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { GVFS_PROGRAM, GVFS_V1 } from '../../src/ext/codec.js';
import { MetaProc, MetaStatus, setOrderArgs, setOrderRes } from '../../src/ext/meta-codec.js';
import { ACCESS3_DELETE, ACCESS3_EXECUTE, ACCESS3_EXTEND, ACCESS3_LOOKUP, ACCESS3_MODIFY, ACCESS3_READ, FSF3_CANSETTIME, FType, Nfs3Status, StableHow } from '../../src/nfs3/constants.js';
import { spawnGvfs, type GvfsProcess } from '../helpers/gvfs-proc.js';
import { ROOT, tempDir } from '../helpers/local-server.js';
import { RawRpc } from '../helpers/raw-rpc.js';
import { treeSnapshot } from './tree-snapshot.js';

const run = promisify(execFile);
const ALL = ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE | ACCESS3_EXECUTE;
const WRITE_BITS = ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;

/** A directory with something of every kind a change could touch. */
async function fill(dir: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'd/inner'), { recursive: true });
  await fs.mkdir(path.join(dir, 'empty'));
  await fs.writeFile(path.join(dir, 'f'), 'golden bytes\n');
  await fs.writeFile(path.join(dir, 'd/g'), Buffer.alloc(70_000, 7));
  await fs.symlink('f', path.join(dir, 'l'));
  await fs.chmod(dir, 0o777);
}

/**
 * Every mutating NFSv3 procedure, as root (the most a caller can be), on
 * the read-only export's objects: each must come back NFS3ERR_ROFS, and
 * ACCESS/FSINFO must not promise writes.
 */
async function attackAll(c: RemoteNfs, root: Buffer, rwRoot?: Buffer): Promise<void> {
  const f = (await c.lookup(ROOT, root, 'f')).fh;
  const d = (await c.lookup(ROOT, root, 'd')).fh;
  const rofs = { code: 'ROFS' };
  await assert.rejects(c.setattr(ROOT, f, { mode: 0o4777 }), rofs, 'SETATTR mode');
  await assert.rejects(c.setattr(ROOT, f, { size: 0 }), rofs, 'SETATTR truncate');
  await assert.rejects(c.setattr(ROOT, f, { uid: 1234, gid: 1234 }), rofs, 'SETATTR chown');
  await assert.rejects(c.setattr(ROOT, f, { mtime: { sec: 1, nsec: 0 } }), rofs, 'SETATTR mtime');
  await assert.rejects(c.write(ROOT, f, 0, Buffer.from('EVIL'), StableHow.FILE_SYNC), rofs, 'WRITE stable');
  await assert.rejects(c.write(ROOT, f, 1 << 20, Buffer.from('EVIL'), StableHow.UNSTABLE), rofs, 'WRITE unstable, extending');
  await assert.rejects(c.commit(ROOT, f, 0, 0), rofs, 'COMMIT');
  await assert.rejects(c.create(ROOT, root, 'new', { mode: 'unchecked', attrs: { mode: 0o644 } }), rofs, 'CREATE unchecked');
  await assert.rejects(c.create(ROOT, root, 'f', { mode: 'unchecked', attrs: { size: 0 } }), rofs, 'CREATE unchecked over an existing file (truncates)');
  await assert.rejects(c.create(ROOT, d, 'new', { mode: 'exclusive', verf: Buffer.alloc(8, 1) }), rofs, 'CREATE exclusive');
  await assert.rejects(c.mkdir(ROOT, root, 'newdir', { mode: 0o755 }), rofs, 'MKDIR');
  await assert.rejects(c.symlink(ROOT, root, 'evil', '/etc/shadow', {}), rofs, 'SYMLINK');
  await assert.rejects(c.mknod(ROOT, root, 'fifo', { type: FType.FIFO, attrs: { mode: 0o600 } }), rofs, 'MKNOD');
  await assert.rejects(c.remove(ROOT, root, 'f'), rofs, 'REMOVE');
  await assert.rejects(c.remove(ROOT, root, 'l'), rofs, 'REMOVE a link');
  await assert.rejects(c.rmdir(ROOT, root, 'empty'), rofs, 'RMDIR');
  await assert.rejects(c.rename(ROOT, root, 'f', root, 'renamed'), rofs, 'RENAME');
  await assert.rejects(c.rename(ROOT, root, 'f', d, 'g'), rofs, 'RENAME over another file');
  await assert.rejects(c.link(ROOT, f, d, 'hard'), rofs, 'LINK');
  if (rwRoot) {
    // From a writable export into the read-only one, or the other way: refused as well (never half done).
    await assert.rejects(c.rename(ROOT, rwRoot, 'x', root, 'x'), (e: Error & { code?: string }) => e.code === 'ROFS' || e.code === 'XDEV');
    await assert.rejects(c.link(ROOT, f, rwRoot, 'hard'), (e: Error & { code?: string }) => e.code === 'ROFS' || e.code === 'XDEV');
  }
  for (const fh of [root, f, d]) {
    const a = await c.access(ROOT, fh, ALL);
    assert.equal(a.access & WRITE_BITS, 0, `ACCESS grants no write bit on a read-only export (got ${a.access.toString(2)})`);
    assert.ok(a.access & ACCESS3_READ || a.access & ACCESS3_LOOKUP, 'ACCESS still grants reading');
  }
  assert.equal((await c.fsinfo(ROOT, root)).properties & FSF3_CANSETTIME, 0, 'FSINFO: times cannot be set');
  // Reading is untouched.
  assert.equal((await c.read(ROOT, f, 0, 100)).data.toString(), 'golden bytes\n');
}

/** nfs-cp (libnfs, an independent client) onto a file and into the directory of the read-only export: both fail. */
async function libnfsRefused(url: (p: string) => string, scratch: string): Promise<void> {
  const src = path.join(scratch, 'evil.txt');
  await fs.writeFile(src, 'EVIL');
  await assert.rejects(run('nfs-cp', [src, url('f')], { timeout: 30_000 }), 'nfs-cp over a file');
  await assert.rejects(run('nfs-cp', [src, url('d/new.txt')], { timeout: 30_000 }), 'nfs-cp of a new file');
  // ... while reading works through the same client.
  const { stdout } = await run('nfs-cat', [url('f')], { timeout: 30_000 });
  assert.equal(stdout, 'golden bytes\n');
}

describe('read-only exports: every mutating procedure is refused with ROFS, nothing changes on disk', { timeout: 180_000 }, () => {
  let dir: string;
  const procs: GvfsProcess[] = [];
  before(async () => {
    dir = await tempDir('gvfs-sec-ro-');
  });
  after(async () => {
    for (const p of procs) await p.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  test('gvfs proxy-server --export DIR=/ro:ro beside a writable export (raw NFSv3 as root, SET_ORDER)', async () => {
    const ro = path.join(dir, 'p-ro');
    const rw = path.join(dir, 'p-rw');
    await fill(ro);
    await fs.mkdir(rw);
    await fs.writeFile(path.join(rw, 'x'), 'x');
    const before = await treeSnapshot(ro);
    const ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--insecure', '--map-user', 'sys:0=0:0', '--export', `${ro}=/ro:ro`, '--export', `${rw}=/rw`, '--state-dir', path.join(dir, 'p-state')]);
    procs.push(ps);
    const c = new RemoteNfs({ host: '127.0.0.1', port: ps.port, timeoutMs: 20_000 });
    try {
      const root = (await c.mount('/ro', ROOT)).fh;
      const rwRoot = (await c.mount('/rw', ROOT)).fh;
      await attackAll(c, root, rwRoot);
      // The writable export beside it still takes changes: the guard is per export.
      await c.create(ROOT, rwRoot, 'made', { mode: 'guarded', attrs: { mode: 0o644 } });
      assert.ok((await fs.stat(path.join(rw, 'made'))).isFile());
      assert.notEqual((await c.access(ROOT, rwRoot, ALL)).access & ACCESS3_MODIFY, 0);

      // The GVFS extension's SET_ORDER (rewrites a file's meta-data) is refused the same way.
      const f = await c.lookup(ROOT, root, 'f');
      const a = f.attr ?? (await c.getattr(ROOT, f.fh));
      const raw = await RawRpc.connect(ps.port);
      try {
        raw.sendRecord(
          RawRpc.call(77, GVFS_PROGRAM, GVFS_V1, MetaProc.SET_ORDER, (w) =>
            setOrderArgs.enc(w, { fh: f.fh, version: { fileid: a.fileid, size: a.size, mtime: a.mtime, ctime: a.ctime }, hint: 'prefetch', order: [0] }),
          ),
        );
        const r = await raw.reply(77, 20_000);
        assert.equal(r.kind, 'success');
        const res = setOrderRes.dec((r as { body: Parameters<typeof setOrderRes.dec>[0] }).body);
        assert.deepEqual(res, { status: MetaStatus.NFSERR, nfsstat: Nfs3Status.ROFS });
      } finally {
        raw.close();
      }
    } finally {
      await c.close();
    }
    assert.deepEqual(await treeSnapshot(ro), before, 'the read-only export is unchanged, byte for byte');
  });

  test('a keyed proxy server with a :ro export, through gvfs proxy-client: libnfs nfs-cp is refused', async () => {
    const ro = path.join(dir, 'k-ro');
    await fill(ro);
    const before = await treeSnapshot(ro);
    const key = path.join(dir, 'alice.key');
    await writeKeyFile(key, newSessionKey('alice', undefined, { uid: 0, gid: 0, gids: [] }));
    const ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--key', key, '--export', `${ro}=/vm:ro`, '--state-dir', path.join(dir, 'k-state')]);
    procs.push(ps);
    const pc = await spawnGvfs(['proxy-client', '--server', `127.0.0.1:${ps.port}`, '--key', key, '--listen', '127.0.0.1:0']);
    procs.push(pc);
    await libnfsRefused((p) => `nfs://127.0.0.1/vm/${p}?version=3&nfsport=${pc.port}&mountport=${pc.port}`, dir);
    const c = new RemoteNfs({ host: '127.0.0.1', port: pc.port, timeoutMs: 20_000 });
    try {
      await attackAll(c, (await c.mount('/vm', ROOT)).fh);
    } finally {
      await c.close();
    }
    assert.deepEqual(await treeSnapshot(ro), before);
  });

  test('gvfs serve --read-only: the same guard (raw NFSv3 as root and libnfs)', async () => {
    const ro = path.join(dir, 's-ro');
    await fill(ro);
    const before = await treeSnapshot(ro);
    const s = await spawnGvfs(['serve', '--export', ro, '--listen', '127.0.0.1:0', '--name', '/ro', '--read-only', '--state-dir', path.join(dir, 's-state')]);
    procs.push(s);
    const c = new RemoteNfs({ host: '127.0.0.1', port: s.port, timeoutMs: 20_000 });
    try {
      await attackAll(c, (await c.mount('/ro', ROOT)).fh);
    } finally {
      await c.close();
    }
    await libnfsRefused((p) => `nfs://127.0.0.1/ro/${p}?version=3&nfsport=${s.port}&mountport=${s.port}`, dir);
    assert.deepEqual(await treeSnapshot(ro), before);
  });
});
