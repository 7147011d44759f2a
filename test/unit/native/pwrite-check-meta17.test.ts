import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { constants as C, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import * as N from '../../../src/native/native.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';

const run = promisify(execFile);
const u = (uid: number, gid = uid, gids: number[] = []): N.NativeCreds => ({ uid, gid, gids });
const ALICE = u(2001);
const SET_ACL = `import os,struct,sys
U=0xffffffff
e=lambda t,p,i=U: struct.pack('<HHI',t,p,i)
os.setxattr(sys.argv[1],'system.posix_acl_access',struct.pack('<I',2)+e(1,6)+e(2,6,2002)+e(4,4)+e(0x10,6)+e(0x20,4))`;
const BOB = u(2002);

/**
 * pwriteAs with its permission check (issue 19: WRITE in one job): the job
 * statxes the descriptor, applies NFS's WRITE rule as the caller (owner,
 * root, else the kernel as the caller: POSIX ACLs) and only then
 * writes. A refusal writes nothing and carries the pre-op statx.
 */
describe('native: pwriteAs checks WRITE permission in the same job', { skip: requirePrereq(isRoot()), timeout: 120_000 }, () => {
  let top: string;
  before(async () => {
    top = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-pwcheck-'));
    await fs.chmod(top, 0o755);
  });
  after(() => run('rm', ['-rf', top]));

  /** A file owned by alice:2001 with `mode`, opened read-write by the server (as an NFS server keeps it open). */
  async function file(name: string, mode: number, body = 'abc'): Promise<{ p: string; fd: number }> {
    const p = path.join(top, name);
    await fs.writeFile(p, body);
    await fs.chown(p, 2001, 2001);
    await fs.chmod(p, mode);
    return { p, fd: openSync(p, C.O_RDWR) };
  }

  test('others without w: EACCES, nothing written, the pre-op statx on the error; the mode checked now, not at open', async () => {
    const { p, fd } = await file('f', 0o644);
    try {
      await assert.rejects(N.pwriteAs(fd, Buffer.from('BOB'), 0, 'none', BOB, true), (e: NodeJS.ErrnoException & { pre?: N.Statx }) => {
        assert.equal(e.code, 'EACCES');
        assert.equal(e.pre?.mode! & 0o7777, 0o644);
        assert.equal(Number(e.pre?.size), 3);
        return true;
      });
      assert.equal(await fs.readFile(p, 'utf8'), 'abc', 'nothing written');
      // Without the check the same descriptor writes (the server opened it): the check is what refuses.
      assert.equal((await N.pwriteAs(fd, Buffer.from('x'), 3, 'none', BOB)).written, 1);
      // A chmod on the server's disk is seen by the very next call.
      await fs.chmod(p, 0o646);
      const r = await N.pwriteAs(fd, Buffer.from('BOB'), 0, 'none', BOB, true);
      assert.deepEqual([r.written, r.pre!.mode & 0o7777, Number(r.pre!.size), Number(r.obj!.size)], [3, 0o646, 4, 4]);
      await fs.chmod(p, 0o644);
      await assert.rejects(N.pwriteAs(fd, Buffer.from('!'), 0, 'none', BOB, true), { code: 'EACCES' });
    } finally {
      await N.close(fd);
    }
  });

  test('the owner may write its 0444 file (NFS rule); root may; the group bits count for a member, by gid or supplementary group', async () => {
    const { p, fd } = await file('ro', 0o444);
    const g = await file('grp', 0o664);
    try {
      assert.equal((await N.pwriteAs(fd, Buffer.from('A'), 0, 'none', ALICE, true)).written, 1, 'owner');
      assert.equal((await N.pwriteAs(fd, Buffer.from('R'), 1, 'none', N.self(), true)).written, 1, 'root');
      await assert.rejects(N.pwriteAs(fd, Buffer.from('B'), 2, 'none', BOB, true), { code: 'EACCES' });
      assert.equal(await fs.readFile(p, 'utf8'), 'ARc');
      assert.equal((await N.pwriteAs(g.fd, Buffer.from('1'), 0, 'none', u(2002, 2001), true)).written, 1, 'primary group');
      assert.equal((await N.pwriteAs(g.fd, Buffer.from('2'), 1, 'none', u(2002, 2002, [7, 2001]), true)).written, 1, 'supplementary group');
      await assert.rejects(N.pwriteAs(g.fd, Buffer.from('3'), 2, 'none', u(2002, 2002, [7]), true), { code: 'EACCES' });
      await fs.chmod(g.p, 0o646);
      // The group's bits, not other's, apply to a member: no w for the group, so no write (as the kernel decides).
      await assert.rejects(N.pwriteAs(g.fd, Buffer.from('4'), 2, 'none', u(2002, 2001), true), { code: 'EACCES' });
      assert.equal(await fs.readFile(g.p, 'utf8'), '12c');
    } finally {
      await N.close(fd);
      await N.close(g.fd);
    }
  });

  test('a POSIX ACL granting write is honoured (the kernel, asked as the caller)', async () => {
    const { p, fd } = await file('acl', 0o644);
    try {
      // user::rw-, user:2002:rw-, group::r--, mask::rw-, other::r-- (what `setfacl -m u:2002:rw` makes), by its xattr.
      await run('python3', ['-c', SET_ACL, p]);
      assert.equal((await N.pwriteAs(fd, Buffer.from('B'), 0, 'none', BOB, true)).written, 1);
      await assert.rejects(N.pwriteAs(fd, Buffer.from('C'), 0, 'none', u(2003), true), { code: 'EACCES' });
      // The mode's group bits are now the ACL's mask (rw): a member of the group, whose ACL entry is r--,
      // would pass a check on the bits; the kernel refuses.
      assert.equal((await fs.stat(p)).mode & 0o070, 0o060);
      await assert.rejects(N.pwriteAs(fd, Buffer.from('G'), 0, 'none', u(2003, 2001), true), { code: 'EACCES' });
      assert.equal(await fs.readFile(p, 'utf8'), 'Bbc');
    } finally {
      await N.close(fd);
    }
  });
});
