import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemoteNfs } from '../../src/backends/remote-nfs/remote-nfs.js';
import { StableHow } from '../../src/nfs3/constants.js';
import { isRoot, requirePrereq } from '../helpers/prereq.js';
import { startLocalServer, user, type LocalServer } from '../helpers/local-server.js';

/**
 * Every WRITE is checked against the file as it is now: a chown or chmod
 * made on the server's own disk between two WRITEs of one caller (through a
 * descriptor the server keeps open) refuses the second at once, as knfsd
 * does. The server once reused the previous WRITE's post-op attributes for
 * up to a second, and the file's former owner could go on writing.
 */
describe('local export: a WRITE is checked against the current owner and mode', { skip: requirePrereq(isRoot()), timeout: 120_000 }, () => {
  let s: LocalServer;
  let remote: RemoteNfs;
  before(async () => {
    s = await startLocalServer({ attrCacheMs: 0 });
    await fs.chmod(s.exportDir, 0o777);
    remote = new RemoteNfs({ host: '127.0.0.1', port: s.port, timeoutMs: 20_000 });
  });
  after(async () => {
    await remote?.close();
    await s?.stop();
  });

  test('chown + chmod on the disk right after a WRITE: the next WRITE of the old owner is refused', async () => {
    const u = user(1000);
    for (let i = 0; i < 5; i++) {
      const name = `f${i}`;
      const fh = (await remote.create(u, s.root, name, { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
      await remote.write(u, fh, 0, Buffer.alloc(1000, 1), StableHow.UNSTABLE);
      await fs.chown(path.join(s.exportDir, name), 0, 0);
      await fs.chmod(path.join(s.exportDir, name), 0o444);
      await assert.rejects(remote.write(u, fh, 1000, Buffer.alloc(1000, 2), StableHow.UNSTABLE), (e: Error & { code?: string }) => e.code === 'ACCES', `round ${i}`);
      assert.equal((await fs.stat(path.join(s.exportDir, name))).size, 1000, 'nothing written');
      // Given back: the owner writes again at once.
      await fs.chown(path.join(s.exportDir, name), 1000, 1000);
      await fs.chmod(path.join(s.exportDir, name), 0o644);
      await remote.write(u, fh, 1000, Buffer.alloc(1000, 3), StableHow.UNSTABLE);
    }
  });
});
