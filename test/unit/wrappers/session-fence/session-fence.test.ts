import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Backend } from '../../../../src/backend/backend.js';
import type { Credentials } from '../../../../src/rpc/types.js';
import { SessionFence } from '../../../../src/wrappers/session-fence/session-fence.js';

const cred = (session?: string): Credentials => ({ flavor: 1, uid: 1, gid: 1, gids: [], session });

/** A backend whose getattr and write wait until released, in the order called. */
function held() {
  const gates: Array<() => void> = [];
  const b = {
    calls: [] as string[],
    getattr: (c: Credentials) => new Promise((r) => gates.push(() => r({ who: c.session }))),
    write: (_c: Credentials, _fh: Buffer, off: number) => new Promise((r) => gates.push(() => (b.calls.push(`write ${off}`), r({ count: 1 })))),
    exports: async () => [{ path: '/', groups: [] }],
  };
  return { b, release: () => gates.shift()?.(), get waiting() { return gates.length; } };
}

test('settle waits for the calls the session had in flight, not for other sessions nor for later calls', { timeout: 60_000 }, async () => {
  const h = held();
  const f = new SessionFence();
  const w = f.wrap(h.b as unknown as Backend);
  const a1 = w.write(cred('A'), Buffer.alloc(1), 1, Buffer.alloc(1), 0);
  const b1 = w.getattr(cred('B'), Buffer.alloc(1));
  assert.equal(f.inFlight('A'), 1);
  assert.equal(f.inFlight('B'), 1);
  let settled = false;
  const s = f.settle('A').then(() => (settled = true));
  const a2 = w.write(cred('A'), Buffer.alloc(1), 2, Buffer.alloc(1), 0); // after the fence: not waited for
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false);
  h.release(); // a1
  await a1;
  await s;
  assert.equal(settled, true, 'settled once the earlier call was done, with B and the later A call still running');
  assert.equal(f.inFlight('A'), 1);
  h.release();
  h.release();
  await Promise.all([b1, a2]);
  assert.equal(f.inFlight('A') + f.inFlight('B'), 0);
  // Calls without a session and methods without credentials pass through untracked.
  assert.deepEqual(await w.exports(), [{ path: '/', groups: [] }]);
  const n = w.getattr(cred(), Buffer.alloc(1));
  assert.equal(f.inFlight('undefined'), 0);
  h.release();
  await n;
});

test('a failed call counts as done; settle gives up after maxWaitMs on a call that hangs', { timeout: 60_000 }, async () => {
  const f = new SessionFence(50);
  const failing = { getattr: () => Promise.reject(new Error('upstream said no')) };
  const w = f.wrap(failing as unknown as Backend);
  await assert.rejects(w.getattr(cred('A'), Buffer.alloc(1)), /upstream said no/);
  assert.equal(f.inFlight('A'), 0);
  const h = held();
  const w2 = f.wrap(h.b as unknown as Backend);
  void w2.getattr(cred('A'), Buffer.alloc(1));
  const t0 = Date.now();
  await f.settle('A');
  assert.ok(Date.now() - t0 >= 40);
  assert.equal(f.inFlight('A'), 1, 'still running, no longer waited for');
  h.release();
});
