import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { launchQemu, pidAlive, QemuError, QemuTracker } from '../../../src/vm/qemu.js';
import { hasFile, requirePrereq } from '../../helpers/prereq.js';

const skip = requirePrereq(hasFile('/usr/bin/qemu-system-x86_64', 'qemu-system-x86'));

test('launchQemu: QEMU refusing its command line rejects with its own stderr; a started QEMU is tracked until it stops', { skip, timeout: 60_000 }, async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-qemu-'));
  const tracker = new QemuTracker();
  try {
    const bad = await launchQemu({ args: ['-machine', 'no-such-machine'], qmpSocket: path.join(dir, 'bad.sock'), logFile: path.join(dir, 'bad.log'), tracker }).catch((e) => e);
    assert.ok(bad instanceof QemuError, String(bad));
    assert.match(bad.message, /QEMU exited \(1\) while starting:\nqemu-system-x86_64: unsupported machine type/);
    const sock = path.join(dir, 'qmp.sock');
    const q = await launchQemu({ args: ['-machine', 'none', '-nodefaults', '-display', 'none', '-chardev', `socket,id=qmp,path=${sock},server=on,wait=off`, '-mon', 'chardev=qmp,mode=control'], qmpSocket: sock, logFile: path.join(dir, 'q.log'), tracker });
    assert.deepEqual(tracker.tracked, [q.pid]);
    assert.equal((await q.qmp.execute('query-status')).running, true);
    await q.stop();
    assert.equal(await pidAlive(q.pid), false);
    assert.deepEqual(tracker.tracked, []);
  } finally {
    tracker.killAllSync();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
