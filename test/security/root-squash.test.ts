import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ACCESS3_MODIFY, ACCESS3_READ } from '../../src/nfs3/constants.js';
import type { OpaqueAuth } from '../../src/rpc/types.js';
import { spawnGvfs, type GvfsProcess } from '../helpers/gvfs-proc.js';
import { RawNfs, statusName, sys } from './owners-raw-nfs.js';

/**
 * Issue 14 item 2: root squash must squash group 0 as knfsd's root_squash
 * does (nfsd_setuser): uid 0 → anon uid, gid 0 → anon gid whatever the uid,
 * and 0 among the supplementary groups → anon gid. Before the fix uid 1000
 * with gid 0 read a root-group-only file. `gvfs serve --squash root` runs as
 * a real process; the calls are raw NFSv3 with hand-made AUTH_SYS credentials.
 */
describe('root squash squashes group 0 too (gvfs serve --squash root)', { timeout: 180_000 }, () => {
  let base: string;
  let dir: string;
  let proc: GvfsProcess;
  let nfs: RawNfs;
  let root: Buffer;
  const fhOf = (name: string, cred: OpaqueAuth) => nfs.fh(root, name, cred);
  const status = (r: { status: number }) => statusName(r.status);

  before(async () => {
    base = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-squash-'));
    dir = path.join(base, 'export');
    await fs.mkdir(dir);
    await fs.chmod(dir, 0o755);
    // Root-group-only objects: readable or writable by group 0, nothing for others.
    await fs.writeFile(path.join(dir, 'secret'), 'root group only\n');
    await fs.chmod(path.join(dir, 'secret'), 0o640);
    await fs.mkdir(path.join(dir, 'g0'));
    await fs.chmod(path.join(dir, 'g0'), 0o770);
    await fs.mkdir(path.join(dir, 'open'));
    await fs.chmod(path.join(dir, 'open'), 0o777);
    // The control: the same mode for group 1000 is readable by group 1000.
    await fs.writeFile(path.join(dir, 'g1000'), 'group 1000\n');
    await fs.chown(path.join(dir, 'g1000'), 0, 1000);
    await fs.chmod(path.join(dir, 'g1000'), 0o640);
    proc = await spawnGvfs(['serve', '--export', dir, '--state-dir', path.join(base, 'state'), '--listen', '127.0.0.1:0', '--squash', 'root']);
    nfs = await RawNfs.connect(proc.port);
    root = await nfs.mount('/', sys(1000, 1000));
  });
  after(async () => {
    nfs?.close();
    await proc?.stop();
    if (base) await fs.rm(base, { recursive: true, force: true });
  });

  const callers: Array<[string, OpaqueAuth]> = [
    ['uid 1000 with gid 0', sys(1000, 0)],
    ['uid 1000 with 0 among its supplementary groups', sys(1000, 1000, [5, 0, 7])],
    ['uid 0 (gid 0)', sys(0, 0)],
    ['uid 0 with gid 1234 and group 0', sys(0, 1234, [0])],
  ];

  for (const [who, cred] of callers) {
    test(`${who} cannot read a 0640 root:root file, nor is granted READ by ACCESS`, async () => {
      const fh = await fhOf('secret', cred);
      assert.equal(status(await nfs.read(cred, fh)), 'ACCES');
      const a = (await nfs.access(cred, fh, ACCESS3_READ | ACCESS3_MODIFY)) as { status: number; access?: number };
      assert.equal(status(a), 'OK');
      assert.equal(a.access! & ACCESS3_READ, 0, 'ACCESS grants READ');
    });

    test(`${who} cannot create in a 0770 root:root directory`, async () => {
      const g0 = await fhOf('g0', sys(1000, 1000));
      const name = `x-${Math.random().toString(36).slice(2)}`;
      const r = await nfs.create(cred, g0, name, { mode: 0o644 });
      assert.equal(status(r), 'ACCES');
      await assert.rejects(fs.lstat(path.join(dir, 'g0', name)), { code: 'ENOENT' });
    });
  }

  test('control: the same caller reads a file of a group it really has (so the refusals above are about group 0)', async () => {
    const fh = await fhOf('g1000', sys(1001, 1000));
    const r = (await nfs.read(sys(1001, 1000), fh)) as { status: number; data?: Buffer };
    assert.equal(status(r), 'OK');
    assert.equal(r.data!.toString(), 'group 1000\n');
    const viaSupp = (await nfs.read(sys(1001, 5, [0, 1000]), fh)) as { status: number };
    assert.equal(status(viaSupp), 'OK', 'a non-zero supplementary group still counts');
  });

  test('what a squashed root or a gid-0 caller creates belongs to the anonymous account, not to group 0', async () => {
    const open = await fhOf('open', sys(1000, 1000));
    assert.equal(status(await nfs.create(sys(0, 0, [0]), open, 'by-root', { mode: 0o644 })), 'OK');
    const r = await fs.stat(path.join(dir, 'open', 'by-root'));
    assert.deepEqual({ uid: r.uid, gid: r.gid }, { uid: 65534, gid: 65534 });
    assert.equal(status(await nfs.create(sys(1000, 0), open, 'by-gid0', { mode: 0o644 })), 'OK');
    const g = await fs.stat(path.join(dir, 'open', 'by-gid0'));
    assert.deepEqual({ uid: g.uid, gid: g.gid }, { uid: 1000, gid: 65534 });
  });
});
