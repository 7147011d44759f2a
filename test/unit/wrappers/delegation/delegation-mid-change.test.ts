import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Backend } from '../../../../src/backend/backend.js';
import { StableHow } from '../../../../src/nfs3/constants.js';
import type { Credentials } from '../../../../src/rpc/types.js';
import { DelegationBackend, delegationKey } from '../../../../src/wrappers/delegation/delegation-backend.js';
import { DelegationTable } from '../../../../src/wrappers/delegation/delegations.js';

/**
 * A grant that lands while another session's change is on its way (after
 * the change's recalls, before it is made) carries attributes and bytes
 * older than the change; nothing else would recall it. The change is not
 * answered until that holder is recalled.
 */
const FH = Buffer.from('file');
const FILE = delegationKey(0, FH);
const cred = (session: string): Credentials => ({ flavor: 1, uid: 0, gid: 0, gids: [], session }) as Credentials;

function gatedInner(): { inner: Backend; release: () => void; started: Promise<void> } {
  let release!: () => void;
  let started!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const began = new Promise<void>((r) => (started = r));
  const done = async () => {
    started();
    await gate;
    return { wcc: {} };
  };
  const inner = {
    write: async () => ({ ...(await done()), count: 1, committed: StableHow.FILE_SYNC, verf: Buffer.alloc(8) }),
    setattr: async () => (await done()).wcc,
    commit: async () => ({ ...(await done()), verf: Buffer.alloc(8) }),
  } as unknown as Backend;
  return { inner, release, started: began };
}

/** A table whose recalls are noted (and answered at once), and a delegation backend over a gated inner one. */
function setup() {
  const recalled: string[] = [];
  const t = new DelegationTable({ leaseMs: 5_000, recall: async (s) => void recalled.push(s) });
  const g = gatedInner();
  return { recalled, t, g, b: new DelegationBackend(g.inner, t, 0) };
}

describe('delegations: a grant made while a change is under way', { timeout: 30_000 }, () => {
  for (const op of ['write', 'setattr'] as const) {
    test(`${op}: the late holder is recalled before the change is answered`, async () => {
      const { recalled, t, g, b } = setup();
      let answered = false;
      const change = (op === 'write' ? b.write(cred('A'), FH, 0, Buffer.from('x'), StableHow.FILE_SYNC) : b.setattr(cred('A'), FH, { size: 0 })).then(() => (answered = true));
      await g.started; // past its recalls (there were none), on its way to the disk
      await t.grant('B', FILE, FH, 'read', 'cb');
      assert.equal(t.holders(FILE).length, 1, 'granted at once (nothing to recall)');
      g.release();
      await change;
      assert.ok(answered);
      assert.deepEqual(recalled, ['B'], 'B was recalled');
      assert.equal(t.holders(FILE).length, 0, 'and holds nothing when A is answered');
      assert.equal(t.c.grantedMidChange, 1);
    });
  }

  test('a holder granted before the change is recalled by the change first, not twice; the changer\'s own grant is kept', async () => {
    const { recalled, t, g, b } = setup();
    await t.grant('B', FILE, FH, 'read', 'cb');
    const change = b.write(cred('A'), FH, 0, Buffer.from('x'), StableHow.FILE_SYNC);
    await g.started;
    assert.deepEqual(recalled, ['B'], 'recalled before the write ran');
    await t.grant('A', FILE, FH, 'write', 'ca'); // the writer's own grant (a write-back holder) is no conflict
    g.release();
    await change;
    assert.deepEqual(recalled, ['B']);
    assert.deepEqual(t.holders(FILE).map((h) => h.session), ['A']);
    assert.equal(t.c.grantedMidChange, 0);
  });

  test('COMMIT makes nothing visible: a grant during it stays', async () => {
    const { recalled, t, g, b } = setup();
    const commit = b.commit(cred('A'), FH, 0, 0);
    await g.started;
    await t.grant('B', FILE, FH, 'read', 'cb');
    g.release();
    await commit;
    assert.deepEqual(recalled, []);
    assert.equal(t.holders(FILE).length, 1);
  });
});
