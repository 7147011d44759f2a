import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Backend } from '../../../src/backend/backend.js';
import type { StableHow } from '../../../src/nfs3/constants.js';
import type { Fattr3, WriteResult } from '../../../src/nfs3/types.js';
import type { Credentials } from '../../../src/rpc/types.js';
import { PassthroughBackend } from '../../../src/wrappers/passthrough.js';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';
import { fuseSkip, spawnMount, type MountProc } from './mount-helper.js';

/**
 * A server whose file system grows during a WRITE (as ext4 does page by
 * page): a LOOKUP of a file being written is answered with the attributes it
 * had when the WRITE began, and that answer reaches the client after the
 * WRITE's own reply (the stat ran mid-write; the reply went out later).
 */
class MidWriteStat extends PassthroughBackend {
  private readonly writing = new Map<string, { before: Fattr3; done: Promise<unknown> }>();
  staleAnswers = 0;

  constructor(inner: Backend) {
    super(inner);
  }

  override async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    const before = await super.getattr(cred, fh);
    const done = super.write(cred, fh, offset, data, stable);
    this.writing.set(fh.toString('base64'), { before, done: done.catch(() => undefined) });
    return done;
  }

  override async lookup(cred: Credentials, dir: Buffer, name: string): Promise<{ fh: Buffer; attr?: Fattr3; dirAttr?: Fattr3 }> {
    const r = await super.lookup(cred, dir, name);
    const w = this.writing.get(r.fh.toString('base64'));
    if (!w || !r.attr) return r;
    this.writing.delete(r.fh.toString('base64'));
    await w.done;
    await delay(50); // the WRITE's reply first
    this.staleAnswers++;
    return { ...r, attr: w.before };
  }
}

/**
 * `gvfs mount` with write-behind: attributes the server
 * answered mid-WRITE never take the size of a file open here back (fsx
 * no-cache seed 4: fstat showed a page-aligned size below the last write).
 */
describe('gvfs mount: a size the server answered mid-WRITE', { skip: fuseSkip(), timeout: 180_000 }, () => {
  let s: LocalServer;
  let server: MidWriteStat;
  let m: MountProc;

  before(async () => {
    s = await startLocalServer({ wrap: (b) => (server = new MidWriteStat(b)) });
    m = await spawnMount(`nfs://127.0.0.1:${s.port}/`, path.join(s.dir, 'mnt'), ['--attr-timeout', '30']);
  });
  after(async () => {
    await m?.stop();
    await s?.stop();
  });

  test('a LOOKUP of another name of the file, answered with the size before our WRITE, does not shrink it', async () => {
    const fd = await fs.open(path.join(m.mnt, 'a.bin'), 'w');
    try {
      for (let i = 1; i <= 3; i++) {
        // A name the kernel has never seen: its LOOKUP reaches the server, and its attributes the same inode.
        await fs.link(path.join(s.exportDir, 'a.bin'), path.join(s.exportDir, `b${i}.bin`));
        const size = i * 5000;
        await fd.write(Buffer.alloc(5000, i), 0, 5000, size - 5000);
        const lookups = server.staleAnswers;
        const st = await fs.stat(path.join(m.mnt, `b${i}.bin`));
        assert.equal(server.staleAnswers, lookups + 1, 'the LOOKUP was answered with the size before the write');
        assert.equal(st.size, size, `stat of the other name after write ${i}`);
        assert.equal((await fd.stat()).size, size, `fstat after write ${i}`);
      }
    } finally {
      await fd.close();
    }
    assert.equal((await fs.stat(path.join(s.exportDir, 'a.bin'))).size, 15000);
  });
});
