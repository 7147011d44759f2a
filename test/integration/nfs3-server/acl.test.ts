import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { ACCESS3_MODIFY, ACCESS3_READ, StableHow } from '../../../src/nfs3/constants.js';
import { isRoot, requirePrereq } from '../../helpers/prereq.js';
import { startLocalServer, user, type LocalServer } from '../../helpers/local-server.js';

/** Sets a POSIX access ACL (user::rw-, user:UID:r--, group::---, mask::r--, other::---) through its xattr. */
const SET_ACL = `import os,struct,sys
U=0xffffffff
e=lambda t,p,i=U: struct.pack('<HHI',t,p,i)
os.setxattr(sys.argv[1],'system.posix_acl_access',struct.pack('<I',2)+e(1,6)+e(2,4,int(sys.argv[2]))+e(4,0)+e(0x10,4)+e(0x20,0))`;

/**
 * Issue 17: the kernel decides, as the caller — so a POSIX ACL on the
 * export counts for ACCESS, READ and WRITE, which mode bits alone cannot see.
 */
describe('POSIX ACLs on the export count (the kernel decides as the caller)', { skip: requirePrereq(isRoot()), timeout: 120_000 }, () => {
  let s: LocalServer;
  before(async () => {
    s = await startLocalServer();
  });
  after(() => s?.stop());

  test('a file 0600 of root with user:2001:r-- : 2001 may read it (not write); 2002 may not read', async () => {
    const f = path.join(s.exportDir, 'acl.txt');
    await fs.writeFile(f, 'for 2001 only');
    await fs.chmod(f, 0o600);
    await promisify(execFile)('/usr/bin/python3', ['-c', SET_ACL, f, '2001']);
    const { fh } = await s.client.lookup(user(0), s.root, 'acl.txt');
    const a = await s.client.access(user(2001), fh, ACCESS3_READ | ACCESS3_MODIFY);
    assert.equal(a.access, ACCESS3_READ);
    assert.equal((await s.client.access(user(2002), fh, ACCESS3_READ)).access, 0);
    const r = await s.client.read(user(2001), fh, 0, 100);
    assert.equal(r.data.toString(), 'for 2001 only');
    await assert.rejects(s.client.read(user(2002), fh, 0, 100), { code: 'ACCES' });
    await assert.rejects(s.client.write(user(2001), fh, 0, Buffer.from('no'), StableHow.FILE_SYNC), { code: 'ACCES' });
    assert.equal(await fs.readFile(f, 'utf8'), 'for 2001 only');
  });
});
