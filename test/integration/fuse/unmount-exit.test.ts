import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { fuseSkip } from './mount-helper.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'unmount-exit-child.js');

/**
 * An unmounted session must be destroyed, or its native request channel
 * keeps the process alive: a final full run hung 15 min in an in-process
 * front-end test after every test had passed, because the unmount thread
 * counted itself out only after the JS thread had already tried (and
 * skipped) the destroy.
 */
describe('low-level front end: a process that unmounted exits on its own', { skip: fuseSkip(), timeout: 300_000 }, () => {
  test('40 mounts and unmounts with invalidations in flight, then the process ends by itself', async () => {
    const child = spawn(process.execPath, [CHILD, '40'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = once(child, 'exit');
    // Generous for a loaded machine: the cycles take seconds; a session never destroyed keeps it for ever.
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    const [code, signal] = await exited;
    clearTimeout(timer);
    assert.match(out, /40 cycles done/, out.slice(-3000));
    assert.equal(signal, null, `the process did not exit on its own after its cycles (killed): ${out.slice(-2000)}`);
    assert.equal(code, 0, out.slice(-3000));
  });
});
