import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import { closeSync, openSync, readdirSync, readlinkSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fuseLl, type LlSession } from '../../../src/native/fuse-ll.js';
import { llTestAttr } from './ll-test-attr.js';
import { fuseSkip, forceUnmount } from '../../integration/fuse/mount-helper.js';

const E = os.constants.errno;

/** The descriptors of this process that are /dev/fuse. */
const fuseFds = () =>
  readdirSync('/proc/self/fd')
    .map(Number)
    .filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === '/dev/fuse';
      } catch {
        return false;
      }
    });

/**
 * Unmounting with a request still unanswered (a caller waiting, a slow
 * backend): the answer may come after the unmount. libfuse's own unmount
 * closed the /dev/fuse descriptor first, and the next file this process
 * opened got its number: the late answer was written into that file (a
 * disk-cache block file in `gvfs mount`). The number must stay ours until
 * destroy.
 */
describe('fuse unmount: /dev/fuse\'s descriptor number stays ours until destroy', { skip: fuseSkip(), timeout: 60_000 }, () => {
  let dir: string;
  let session: LlSession | undefined;
  after(async () => {
    if (session) fuseLl().destroy(session);
    if (dir) {
      await forceUnmount(path.join(dir, 'mnt')).catch(() => undefined);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test('a LOOKUP outstanding across the unmount: its answer, sent after, lands in no file opened meanwhile', async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-unmount-fd-'));
    const mnt = path.join(dir, 'mnt');
    await fs.mkdir(mnt);
    const f = fuseLl();
    const before = new Set(fuseFds());
    let pending: bigint | undefined;
    let asked!: () => void;
    const lookedUp = new Promise<void>((r) => (asked = r));
    session = f.mount(mnt, 'fsname=gvfs-unmount-fd,subtype=gvfs,max_read=131072', 131072, 131072, 131072, (r) => {
      if (!r.req) return;
      if (r.op === 'lookup' && r.name === 'f') {
        pending = r.req; // answered only after the unmount
        asked();
        return;
      }
      if (r.op === 'getattr') return f.replyAttr(r.req, llTestAttr(r.ino, 0), 0);
      f.replyErr(r.req, E.ENOSYS);
    }, false);
    const mine = fuseFds().filter((fd) => !before.has(fd));
    assert.equal(mine.length, 1, 'the mount opened one /dev/fuse descriptor');
    const fuseFd = mine[0]!;
    const stat = spawn('stat', [path.join(mnt, 'f')], { stdio: 'ignore' });
    await lookedUp;
    assert.equal(await f.unmount(session), 0);
    // A file opened now takes the lowest free number; with the old unmount that was the fuse descriptor's.
    const victim = path.join(dir, 'victim');
    const held: number[] = [];
    try {
      for (let i = 0; i < 4; i++) held.push(openSync(`${victim}${i}`, 'w'));
      const target = readlinkSync(`/proc/self/fd/${fuseFd}`);
      assert.equal(target, '/dev/null', `after the unmount, descriptor ${fuseFd} is ${target}`);
      f.replyErr(pending!, E.ENOENT);
      for (let i = 0; i < 4; i++) assert.equal(readFileSync(`${victim}${i}`).length, 0, `the late answer was written into ${victim}${i}`);
    } finally {
      for (const fd of held) closeSync(fd);
    }
    // The caller waiting in the kernel got an error (the connection was aborted), not a hang.
    if (stat.exitCode === null) await once(stat, 'exit');
    f.destroy(session);
    session = undefined;
    assert.throws(() => readlinkSync(`/proc/self/fd/${fuseFd}`), /ENOENT/, 'destroy closed the descriptor');
  });
});
