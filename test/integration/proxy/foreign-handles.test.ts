import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { newSessionKey } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { GVFS_PROGRAM, GVFS_V1 } from '../../../src/ext/codec.js';
import { bulkReadArgs, bulkReadRes, getMetaArgs, getMetaRes, MetaProc, MetaStatus, setOrderArgs, setOrderRes } from '../../../src/ext/meta-codec.js';
import * as X from '../../../src/nfs3/codec.js';
import { NFS_PROGRAM, NFS_V3, Nfs3Status, Proc, StableHow } from '../../../src/nfs3/constants.js';
import type { Fattr3 } from '../../../src/nfs3/types.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import type { XdrReader, XdrWriter } from '../../../src/xdr/index.js';
import { defaultMap, startUpstream, type Upstream } from '../../helpers/chain.js';
import { tempDir } from '../../helpers/local-server.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';
import { RawNfs, statusName, sys } from '../../security/owners-raw-nfs.js';
import { treeSnapshot } from '../../security/tree-snapshot.js';

/**
 * Two sessions on one proxy server. A proxy handle is bound to the session
 * it was issued to (a MAC over the session id, src/wrappers/proxy-exports):
 * the other session presenting it — on its own proved connection, in any
 * procedure and in any argument position — gets NFS3ERR_BADHANDLE, and
 * nothing on the server changes.
 */
// Each session maps to its own local account: the export acts as that account (root only).
describe("a session using another session's file handles", { skip: requirePrereq(isRoot()), timeout: 120_000 }, () => {
  let base: string;
  let up: Upstream;
  let ps: ProxyServer;
  let alice: RawNfs;
  let bob: RawNfs;
  const ka = newSessionKey('alice');
  const kb = newSessionKey('bob');
  const root = sys(0, 0);
  let aRoot: Buffer;
  let aFile: Buffer;
  let aDir: Buffer;
  let aAttr: Fattr3;
  let bRoot: Buffer;
  let bFile: Buffer;

  before(async () => {
    base = await tempDir('gvfs-foreign-fh-');
    up = await startUpstream('gvfs', base);
    await fs.chmod(up.dir, 0o777);
    ps = await createProxyServer({
      exports: [{ kind: 'upstream', url: { host: '127.0.0.1', port: up.port, mountPort: up.port, path: '/' } }],
      map: defaultMap(),
      sessions: new SessionRegistry([ka, kb]),
      stateDir: path.join(base, 'ps'),
    });
    const port = (await ps.listen(0, '127.0.0.1')).port;
    alice = await RawNfs.connect(port, ka);
    bob = await RawNfs.connect(port, kb);
    aRoot = await alice.mount('/', root);
    bRoot = await bob.mount('/', root);
    const made = await alice.create(root, aRoot, 'alice.txt', { mode: 0o644 });
    assert.equal(made.status, Nfs3Status.OK);
    aFile = (made as { fh: Buffer }).fh;
    assert.equal((await alice.write(root, aFile, Buffer.from('alice only'))).status, Nfs3Status.OK);
    assert.equal((await alice.mkdir(root, aRoot, 'alice-dir', { mode: 0o755 })).status, Nfs3Status.OK);
    aDir = await alice.fh(aRoot, 'alice-dir', root);
    aAttr = (await alice.getattr(root, aFile) as { attr: Fattr3 }).attr;
    assert.equal((await bob.create(root, bRoot, 'bob.txt', { mode: 0o644 })).status, Nfs3Status.OK);
    bFile = await bob.fh(bRoot, 'bob.txt', root);
  });
  after(async () => {
    alice?.close();
    bob?.close();
    await ps?.close();
    await up?.stop();
    await fs.rm(base, { recursive: true, force: true });
  });

  /** An NFSv3 call on bob's connection; the status word of its result. */
  const asBob = (proc: Proc, enc: (w: XdrWriter) => void) => bob.call(NFS_PROGRAM, NFS_V3, proc, enc, (r: XdrReader) => r.u32() as Nfs3Status, root);

  test('the handles differ per session, and each session still works with its own', async () => {
    assert.ok(!aRoot.equals(bRoot), 'the same export root has another handle in each session');
    assert.equal((await bob.getattr(root, bFile)).status, Nfs3Status.OK);
    assert.equal((await alice.getattr(root, aFile)).status, Nfs3Status.OK);
  });

  test("every NFSv3 procedure of bob's with one of alice's handles in any position: BADHANDLE, nothing changed", async () => {
    const before = await treeSnapshot(up.dir);
    const verf = Buffer.alloc(8);
    const attacks: Array<[string, Proc, (w: XdrWriter) => void]> = [
      ['GETATTR', Proc.GETATTR, (w) => X.GETATTR.args.enc(w, { fh: aFile })],
      ['SETATTR truncate', Proc.SETATTR, (w) => X.SETATTR.args.enc(w, { fh: aFile, attrs: { size: 0 }, guard: undefined })],
      ['SETATTR chmod', Proc.SETATTR, (w) => X.SETATTR.args.enc(w, { fh: aFile, attrs: { mode: 0o777 }, guard: undefined })],
      ['LOOKUP in her root', Proc.LOOKUP, (w) => X.LOOKUP.args.enc(w, { dir: aRoot, name: 'alice.txt' })],
      ['ACCESS', Proc.ACCESS, (w) => X.ACCESS.args.enc(w, { fh: aFile, access: 0x3f })],
      ['READ', Proc.READ, (w) => X.READ.args.enc(w, { fh: aFile, offset: 0, count: 100 })],
      ['WRITE', Proc.WRITE, (w) => X.WRITE.args.enc(w, { fh: aFile, offset: 0, stable: StableHow.FILE_SYNC, data: Buffer.from('bob was here') })],
      ['CREATE in her dir', Proc.CREATE, (w) => X.CREATE.args.enc(w, { where: { dir: aDir, name: 'planted' }, how: { mode: 'unchecked', attrs: { mode: 0o644 } } })],
      ['MKDIR in her root', Proc.MKDIR, (w) => X.MKDIR.args.enc(w, { where: { dir: aRoot, name: 'planted-dir' }, attrs: { mode: 0o755 } })],
      ['REMOVE from her root', Proc.REMOVE, (w) => X.REMOVE.args.enc(w, { dir: aRoot, name: 'alice.txt' })],
      ['RMDIR from her root', Proc.RMDIR, (w) => X.RMDIR.args.enc(w, { dir: aRoot, name: 'alice-dir' })],
      ['RENAME out of her root into his', Proc.RENAME, (w) => X.RENAME.args.enc(w, { from: { dir: aRoot, name: 'alice.txt' }, to: { dir: bRoot, name: 'stolen' } })],
      ['RENAME from his root into hers', Proc.RENAME, (w) => X.RENAME.args.enc(w, { from: { dir: bRoot, name: 'bob.txt' }, to: { dir: aDir, name: 'planted' } })],
      ['LINK her file into his root', Proc.LINK, (w) => X.LINK.args.enc(w, { fh: aFile, link: { dir: bRoot, name: 'stolen-link' } })],
      ['LINK his file into her dir', Proc.LINK, (w) => X.LINK.args.enc(w, { fh: bFile, link: { dir: aDir, name: 'planted-link' } })],
      ['READDIR', Proc.READDIR, (w) => X.READDIR.args.enc(w, { dir: aRoot, cookie: 0n, verf, count: 4096 })],
      ['READDIRPLUS', Proc.READDIRPLUS, (w) => X.READDIRPLUS.args.enc(w, { dir: aRoot, cookie: 0n, verf, dircount: 4096, maxcount: 8192 })],
      ['FSSTAT', Proc.FSSTAT, (w) => X.FSSTAT.args.enc(w, { fh: aRoot })],
      ['COMMIT', Proc.COMMIT, (w) => X.COMMIT.args.enc(w, { fh: aFile, offset: 0, count: 0 })],
    ];
    const wrong: string[] = [];
    for (const [what, proc, enc] of attacks) {
      const st = await asBob(proc, enc);
      if (st !== Nfs3Status.BADHANDLE) wrong.push(`${what}: ${statusName(st)}`);
    }
    assert.deepEqual(wrong, [], 'each refused with BADHANDLE');
    assert.deepEqual(await treeSnapshot(up.dir), before, 'nothing on the server changed');
    assert.equal(await fs.readFile(path.join(up.dir, 'alice.txt'), 'utf8'), 'alice only');
  });

  test("the GVFS meta-data procedures with alice's handle: refused as BADHANDLE, nothing read or written", async () => {
    const before = await treeSnapshot(up.dir);
    const version = { fileid: aAttr.fileid, size: aAttr.size, mtime: aAttr.mtime, ctime: aAttr.ctime };
    const gvfs = <R>(proc: number, enc: (w: XdrWriter) => void, dec: (r: XdrReader) => R) => bob.call(GVFS_PROGRAM, GVFS_V1, proc, enc, dec, root);
    const g = await gvfs(MetaProc.GET_META, (w) => getMetaArgs.enc(w, { fh: aFile, offset: 0, count: 4096 }), getMetaRes.dec);
    assert.deepEqual([g.status, g.nfsstat, g.data.length], [MetaStatus.NFSERR, Nfs3Status.BADHANDLE, 0]);
    const b = await gvfs(MetaProc.BULK_READ, (w) => bulkReadArgs.enc(w, { fh: aFile, version, codec: 0, ranges: [{ offset: 0, len: 10 }] }), bulkReadRes.dec);
    assert.deepEqual([b.status, b.nfsstat, b.ranges.length], [MetaStatus.NFSERR, Nfs3Status.BADHANDLE, 0], 'no bytes of her file');
    const s = await gvfs(MetaProc.SET_ORDER, (w) => setOrderArgs.enc(w, { fh: aFile, version, hint: 'prefetch', order: [0] }), setOrderRes.dec);
    assert.deepEqual(s, { status: MetaStatus.NFSERR, nfsstat: Nfs3Status.BADHANDLE });
    assert.deepEqual(await treeSnapshot(up.dir), before);
  });

  test("a new session of the same user cannot use the first session's handles", async () => {
    // Another session of alice's (a later one, or one beside it) on the same server.
    const ka2 = newSessionKey('alice');
    ps.sessions.add(ka2);
    const again = await RawNfs.connect(ps.server.address().port, ka2);
    try {
      await again.mount('/', root);
      assert.equal((await again.getattr(root, aFile)).status, Nfs3Status.BADHANDLE);
      assert.equal((await again.read(root, aFile)).status, Nfs3Status.BADHANDLE);
    } finally {
      again.close();
    }
  });
});
