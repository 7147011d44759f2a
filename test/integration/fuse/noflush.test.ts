import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { fuseSkip, run, spawnMount, type MountProc } from './mount-helper.js';

/**
 * A read-only open's close sends the mount no FLUSH (FOPEN_NOFLUSH): nothing
 * written through it can fail there, as an NFS client's close of one sends
 * nothing. A writable open's close still does — that is where a write's
 * failure reaches the program.
 */
describe('gvfs mount: no FLUSH at the close of a read-only open', { skip: fuseSkip(), timeout: 120_000 }, () => {
  let s: LocalServer;
  let m: MountProc;

  before(async () => {
    s = await startLocalServer();
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'));
  });
  after(async () => {
    await m?.stop();
    await s?.stop();
  });

  test('ten read-only opens (cat, python) and three writes (a create, two truncating opens): three FLUSHes', async () => {
    await fs.writeFile(path.join(s.exportDir, 'r'), 'read me\n');
    const f = path.join(m.mnt, 'r');
    for (let i = 0; i < 5; i++) assert.equal((await run('cat', [f])).stdout, 'read me\n');
    for (let i = 0; i < 5; i++) assert.equal((await run('python3', ['-c', 'import sys; f=open(sys.argv[1],"rb"); sys.stdout.write(f.read().decode()); f.close()', f])).stdout, 'read me\n');
    const w = path.join(m.mnt, 'w');
    // (python: one close per open; a shell's redirection closes a dup of it too, and every close() flushes.)
    for (let i = 0; i < 3; i++) await run('python3', ['-c', 'import sys; f=open(sys.argv[1],"w"); f.write(sys.argv[2] + "\\n"); f.close()', w, String(i)]);
    assert.equal(await fs.readFile(path.join(s.exportDir, 'w'), 'utf8'), '2\n');
    await m.stop();
    const st = m.stats();
    assert.ok(st, 'stats logged');
    assert.equal(st.ops.open, 12, `opens: ${JSON.stringify(st.ops)}`);
    assert.equal(st.ops.flush ?? 0, 3, `FLUSHes: one per writable close only: ${JSON.stringify(st.ops)}`);
  });
});
