import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { isFsError } from '../../../../src/backend/errors.js';
import { DelegationState } from '../../../../src/wrappers/delegation/delegation-state.js';
import { DelegationTable } from '../../../../src/wrappers/delegation/delegations.js';

/**
 * The delegation table's rules (README "Consistency"): fences by client id
 * (a new session of the same client is still fenced), RECLAIM refused when
 * fenced, WRITE lifts the fence, expired leases revoke without a recall,
 * and across a restart (state on disk): fences kept, a grace period while
 * clients that held delegations reclaim, late clients refused.
 */
const FH = Buffer.from('fh');
const code = (c: string) => (e: unknown) => isFsError(e) && e.code === c;
const dirs: string[] = [];
const stateIn = async () => {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-deleg-'));
  dirs.push(d);
  return new DelegationState(path.join(d, 'delegations.json'));
};
/** A recaller whose holders never answer (partitioned). */
const silent = () => new Promise<never>(() => undefined);

describe('delegation table: client fences, reclaims, leases, restarts', { timeout: 60_000 }, () => {
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  test('a revoked client is fenced by its id: a new session of it cannot reclaim; a plain WRITE (nothing unflushed) lifts the fence', async () => {
    const t = new DelegationTable({ leaseMs: 300, recall: silent });
    await t.grant('s1', 'f', FH, 'write', 'c1');
    const t0 = Date.now();
    await t.before('s2', 'f', 'read'); // waits for the revocation
    assert.ok(Date.now() - t0 >= 250, 'waited for the lease');
    assert.equal(t.c.revoked, 1);
    t.renew('s3', 'c1'); // the client restarted with another session
    await assert.rejects(t.grant('s3', 'f', FH, 'reclaim', 'c1'), code('ACCES'));
    await assert.rejects(t.before('s3', 'f', 'write'), code('ACCES'), 'its plain writes are refused too');
    await t.grant('s4', 'g', FH, 'reclaim', 'c2'); // another client, another file: no fence
    await t.grant('s3', 'f', FH, 'write', 'c1');
    await t.before('s3', 'f', 'write');
  });

  test('a holder whose lease ran out (no RENEW) is revoked at once, without waiting for a recall', async () => {
    let recalls = 0;
    const t = new DelegationTable({ leaseMs: 200, recall: async () => void recalls++ });
    await t.grant('s1', 'f', FH, 'read', 'c1');
    await new Promise((r) => setTimeout(r, 300));
    await t.before('s2', 'f', 'write');
    assert.equal(recalls, 0);
    assert.equal(t.c.expired, 1);
    // A renewing holder is recalled instead.
    await t.grant('s1', 'g', FH, 'read', 'c1');
    const iv = setInterval(() => t.renew('s1', 'c1'), 50);
    await new Promise((r) => setTimeout(r, 400));
    await t.before('s2', 'g', 'write');
    clearInterval(iv);
    assert.equal(recalls, 1);
    assert.equal(t.c.recalled, 1);
  });

  test('restart: fences survive; clients that held delegations get a grace period (reclaims only) that ends once they are done', async () => {
    const st = await stateIn();
    const t1 = new DelegationTable({ leaseMs: 300, recall: silent, state: st });
    await t1.grant('sA', 'f', FH, 'write', 'cA');
    await t1.grant('sR', 'r', FH, 'write', 'cR');
    await t1.before('sB', 'r', 'write'); // cR revoked and fenced for r
    // The server dies: a new table on the same state.
    const t2 = new DelegationTable({ leaseMs: 5000, recall: silent, state: await stateIn().then(() => st) });
    await t2.load();
    assert.ok(t2.inGrace, 'cA held a delegation: grace');
    await assert.rejects(t2.grant('sB', 'f', FH, 'read', 'cB'), code('JUKEBOX'), 'only reclaims in grace');
    await assert.rejects(t2.grant('sR', 'r', FH, 'reclaim', 'cR'), code('ACCES'), 'the fence survived the restart');
    let bDone = false;
    const bRead = t2.before('sB', 'f', 'read').then(() => (bDone = true));
    await t2.grant('sA', 'f', FH, 'reclaim', 'cA');
    await t2.before('sA', 'f', 'write'); // A's flush of a file it reclaimed passes in grace
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(bDone, false, "B's read waits in grace");
    t2.renew('sA', 'cA', true);
    assert.equal(t2.inGrace, false, 'every client on record is done: grace over');
    await bRead; // then recalls A (which never answers here: revoked after the lease)
    t2.close();
  });

  test('restart: a client that does not reclaim within the grace period is late: its reclaims are refused', async () => {
    const st = await stateIn();
    const t1 = new DelegationTable({ leaseMs: 200, recall: silent, state: st });
    await t1.grant('sA', 'f', FH, 'write', 'cA');
    const t2 = new DelegationTable({ leaseMs: 200, recall: silent, state: st });
    await t2.load();
    assert.ok(t2.inGrace);
    await new Promise((r) => setTimeout(r, 350));
    assert.equal(t2.inGrace, false);
    await assert.rejects(t2.grant('sA', 'f', FH, 'reclaim', 'cA'), code('ACCES'));
    // Without dirty data it may take a plain delegation.
    await t2.grant('sA', 'f', FH, 'write', 'cA');
    t2.close();
  });
});
