import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startLocalServer, tempDir, type LocalServer } from '../../helpers/local-server.js';
import { fuseSkip, run, spawnMount, type MountProc } from './mount-helper.js';

/**
 * Client side, in the mount: nested directories made and entered one at a
 * time (mkdir + chdir, so no path string the client kernel sees is long)
 * until the path below the mount root passes `argv[2]` bytes; there a file
 * is written and read back, listed, symlinked, renamed, chmodded; prints the
 * depth and the path length below the root.
 */
const DEEP = `import os,sys
os.chdir(sys.argv[1]); want=int(sys.argv[2]); total=0; depth=0
while total < want:
    n=('%03d' % depth) + 'x'*196
    os.mkdir(n); os.chdir(n); total += len(n)+1; depth += 1
with open('f','w') as f: f.write('deep data')
with open('f') as f: assert f.read()=='deep data'
with open('f','a') as f: f.write('!')
os.symlink('f','l'); assert os.readlink('l')=='f'
os.rename('f','g'); os.chmod('g',0o640)
assert sorted(os.listdir('.'))==['g','l'], os.listdir('.')
st=os.lstat('g'); assert st.st_size==10 and (st.st_mode & 0o777)==0o640
print(depth, total)`;

/** Server side, directly on the export: the same walk, one chdir at a time; prints what the file holds. */
const CHECK = `import os,sys
os.chdir(sys.argv[1]); depth=int(sys.argv[2])
for d in range(depth): os.chdir(('%03d' % d) + 'x'*196)
print(open('g').read(), oct(os.lstat('g').st_mode & 0o777), os.readlink('l'))`;

/** A directory whose absolute path is about `bytes` long (each component 200 bytes). */
async function longDir(base: string, bytes: number): Promise<string> {
  let p = base;
  for (let i = 0; p.length + 201 < bytes; i++) p = path.join(p, `${i}`.padStart(3, '0') + 'L'.repeat(197));
  await fs.mkdir(p, { recursive: true });
  return p;
}

/**
 * Issue 17: no path limit beyond NFS's 255-byte names. The local export
 * opens everything beneath the root's descriptor by a relative path (in
 * pieces past PATH_MAX), never by an absolute path string; so a 4000-byte
 * path below the mount root works through `gvfs mount`, also when the
 * export's own absolute path is 3 KiB long (together past PATH_MAX).
 */
describe('gvfs mount: 4000-byte paths below the root, whatever the export path length', { skip: fuseSkip(), timeout: 300_000 }, () => {
  const servers: LocalServer[] = [];
  const mounts: MountProc[] = [];
  let base: string;

  before(async () => {
    base = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-long-'));
  });
  after(async () => {
    for (const m of mounts) await m.stop();
    // rm(1) walks by descriptor: node's fs.rm (also in s.stop) stops at PATH_MAX.
    await run('rm', ['-rf', base, ...servers.map((s) => s.exportDir)]);
    for (const s of servers) await s.stop();
    await run('rm', ['-rf', ...servers.map((s) => s.dir)]);
  });

  async function deepRoundTrip(dir: string | undefined, label: string): Promise<void> {
    const s = await startLocalServer(dir ? { dir } : {});
    servers.push(s);
    const m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(base, `mnt-${label}`));
    mounts.push(m);
    const r = await run('/usr/bin/python3', ['-c', DEEP, m.mnt, '4000'], { maxBuffer: 1 << 20 });
    const [depth, total] = r.stdout.trim().split(' ').map(Number);
    assert.ok(total >= 4000, `path below the root ${total} bytes`);
    const c = await run('/usr/bin/python3', ['-c', CHECK, s.exportDir, String(depth)]);
    assert.equal(c.stdout.trim(), "deep data! 0o640 f");
    assert.ok(s.exportDir.length + total > 4096 || !dir, 'together past PATH_MAX');
  }

  test('a 4000-byte path below the root of an ordinary export', async () => {
    await deepRoundTrip(undefined, 'short');
  });

  test('a 4000-byte path below the root of an export whose own path is 3 KiB long', async () => {
    const dir = await longDir(await tempDir('gvfs-long-export-'), 3000);
    assert.ok(dir.length > 2800);
    await deepRoundTrip(dir, 'long');
  });
});
