import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { newSessionKey } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { GVFS_PROGRAM, GVFS_V1 } from '../../../src/ext/codec.js';
import { getMetaArgs, getMetaRes, MetaProc, MetaStatus, setOrderArgs, setOrderRes, type SetOrderRes } from '../../../src/ext/meta-codec.js';
import { decodeMeta } from '../../../src/meta/format.js';
import { Nfs3Status } from '../../../src/nfs3/constants.js';
import type { Fattr3 } from '../../../src/nfs3/types.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import { defaultMap } from '../../helpers/chain.js';
import { tempDir } from '../../helpers/local-server.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';
import { RawNfs, sys } from '../../security/owners-raw-nfs.js';
import { treeSnapshot } from '../../security/tree-snapshot.js';
import { memoryFile, MB } from './helpers.js';

/**
 * SET_ORDER (the GVFS extension's "record this prefetch order", which
 * rewrites the file's meta-data on the server) from a session that may not
 * write: on a read-only export it is refused with ROFS by the front end's
 * write guard, from a session whose account cannot write the file with
 * ACCES; either way the export, meta-data included, is unchanged byte for
 * byte. A session that may write does change it (the check can see a write).
 */
// The sessions' accounts (root, uid 2001) are taken on by the export: root only.
describe('a read-only session setting a prefetch order', { skip: requirePrereq(isRoot()), timeout: 120_000 }, () => {
  let base: string;
  let roDir: string;
  let rwDir: string;
  let ps: ProxyServer;
  let port: number;
  const admin = newSessionKey('root-session', undefined, { uid: 0, gid: 0, gids: [] });
  const alice = newSessionKey('alice', undefined, { uid: 2001, gid: 2001, gids: [] });

  before(async () => {
    base = await tempDir('gvfs-setorder-ro-');
    roDir = path.join(base, 'golden');
    rwDir = path.join(base, 'shared');
    // Made by root (as `gvfs meta gen` run by the owner): files 0644, .gvfs-meta 0755.
    await memoryFile(roDir, 'mem.bin', 2 * MB, 'whole');
    await memoryFile(rwDir, 'mem.bin', 2 * MB, 'whole');
    await fs.chmod(rwDir, 0o755);
    ps = await createProxyServer({
      exports: [
        { kind: 'local', dir: roDir, name: '/ro', readOnly: true },
        { kind: 'local', dir: rwDir, name: '/rw' },
      ],
      map: defaultMap(),
      sessions: new SessionRegistry([admin, alice]),
      stateDir: path.join(base, 'ps'),
    });
    port = (await ps.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    await ps?.close();
    await fs.rm(base, { recursive: true, force: true });
  });

  /** Prove `key`, mount `exp`, and send SET_ORDER for mem.bin (the version as the session sees it). */
  async function setOrder(key: typeof admin, exp: string, order: number[]): Promise<{ res: SetOrderRes; c: RawNfs; fh: Buffer }> {
    const c = await RawNfs.connect(port, key);
    const root = await c.mount(exp, sys(0, 0));
    const fh = await c.fh(root, 'mem.bin', sys(0, 0));
    const a = (await c.getattr(sys(0, 0), fh)) as { status: Nfs3Status; attr: Fattr3 };
    assert.equal(a.status, Nfs3Status.OK);
    const version = { fileid: a.attr.fileid, size: a.attr.size, mtime: a.attr.mtime, ctime: a.attr.ctime };
    const res = await c.call(GVFS_PROGRAM, GVFS_V1, MetaProc.SET_ORDER, (w) => setOrderArgs.enc(w, { fh, version, hint: 'prefetch', order }), setOrderRes.dec, sys(0, 0));
    return { res, c, fh };
  }

  test('on a read-only export (the session service\'s readOnly export, proxy-server DIR=NAME:ro), even as root: ROFS, nothing written', async () => {
    const before = await treeSnapshot(roDir);
    const { res, c } = await setOrder(admin, '/ro', [3, 1, 2]);
    c.close();
    assert.deepEqual(res, { status: MetaStatus.NFSERR, nfsstat: Nfs3Status.ROFS });
    assert.deepEqual(await treeSnapshot(roDir), before, 'the export and its .gvfs-meta are unchanged');
  });

  test('a session whose account may only read the file: ACCES, nothing written', async () => {
    const before = await treeSnapshot(rwDir);
    const { res, c } = await setOrder(alice, '/rw', [3, 1, 2]);
    c.close();
    assert.deepEqual(res, { status: MetaStatus.NFSERR, nfsstat: Nfs3Status.ACCES });
    assert.deepEqual(await treeSnapshot(rwDir), before, 'the export and its .gvfs-meta are unchanged');
  });

  test('control: a session that may write records the order (the snapshot sees the change, GET_META returns it)', async () => {
    const before = await treeSnapshot(rwDir);
    const { res, c, fh } = await setOrder(admin, '/rw', [3, 1, 2]);
    try {
      assert.deepEqual(res, { status: MetaStatus.OK, nfsstat: 0 });
      assert.notDeepEqual(await treeSnapshot(rwDir), before, 'the meta-data file was rewritten');
      const g = await c.call(GVFS_PROGRAM, GVFS_V1, MetaProc.GET_META, (w) => getMetaArgs.enc(w, { fh, offset: 0, count: 1 << 20 }), getMetaRes.dec, sys(0, 0));
      assert.equal(g.status, MetaStatus.OK);
      const m = decodeMeta(g.data);
      assert.deepEqual([m.hint, m.order], ['prefetch', [3, 1, 2]]);
    } finally {
      c.close();
    }
  });
});
