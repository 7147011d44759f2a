import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { WholeFiles } from '../../../../src/backend/capabilities.js';
import type { LlSession } from '../../../../src/native/fuse-ll.js';
import { Passthrough } from '../../../../src/frontends/fuse/passthrough.js';
import type { Node } from '../../../../src/frontends/fuse/lowlevel-inodes.js';
import { AuthFlavor } from '../../../../src/rpc/types.js';

const cred = { flavor: AuthFlavor.AUTH_SYS, uid: 0, gid: 0, gids: [] };
const node = (id: number): Node => ({ id, fh: Buffer.from([id]), key: String(id), nlookup: 1 });

// Without a kernel that agreed to passthrough (here: no live session at all), no open asks the backend for a
// whole file — it would make one (a copy of the file) for nothing — and every open is a plain one.
test('passthrough not agreed: nothing is asked of the backend, every open is plain', async () => {
  let asked = 0;
  const whole: WholeFiles = {
    wholeFile: async () => {
      asked++;
      return undefined;
    },
  };
  const pt = new Passthrough(whole, () => ({}) as LlSession);
  let fh = 0;
  for (let i = 0; i < 3; i++) {
    const r = await pt.open(cred, node(5), '1:1:0', 4096, { eligible: true, direct: false }, () => false, () => ++fh);
    assert.deepEqual(r, { fh });
  }
  assert.equal(asked, 0);
  assert.deepEqual(pt.counts, { passthroughOpens: 0, passthroughStaleOpens: 0 });
  pt.closed(fh); // an open it never handed over: nothing to do
  assert.equal(pt.size, 0);
});

test('no live session: nothing is asked either', async () => {
  let asked = 0;
  const pt = new Passthrough({ wholeFile: async () => (asked++, undefined) }, () => undefined);
  const r = await pt.open(cred, node(6), '1:1:0', 4096, { eligible: true, direct: false }, () => false, () => 1);
  assert.deepEqual(r, { fh: 1 });
  assert.equal(asked, 0);
});
