import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DelegationTable } from '../../../../src/wrappers/delegation/delegations.js';

/**
 * The delegation table's side of changes made without a call through the
 * proxy server (cb20): changedElsewhere recalls every holder of the file
 * without a conflicting caller; recallAll recalls every holder of one
 * export (lost disk events); and a recall drops only the holder it
 * recalled, never a grant the same session took again meanwhile (a disk
 * change recalls at any moment, so a holder answering and re-taking the
 * file at once is common).
 */
const FH = Buffer.from('fh');

describe('delegation table: recalls for changes made elsewhere', { timeout: 30_000 }, () => {
  test('changedElsewhere recalls every holder of the file (read ones too) and no other file', async () => {
    const recalled: string[] = [];
    const t = new DelegationTable({ leaseMs: 10_000, recall: async (s) => void recalled.push(s) });
    await t.grant('s1', '0:aa', FH, 'read');
    await t.grant('s2', '0:aa', FH, 'read');
    await t.grant('s3', '0:bb', FH, 'read');
    await t.changedElsewhere('0:aa');
    assert.deepEqual(recalled.sort(), ['s1', 's2']);
    assert.equal(t.holders('0:aa').length, 0);
    assert.equal(t.holders('0:bb').length, 1);
    await t.changedElsewhere('0:cc'); // nobody holds it: nothing
    assert.equal(t.c.changedElsewhere, 1);
  });

  test("recallAll recalls every holder of one export's files, not another export's", async () => {
    const recalled: string[] = [];
    const t = new DelegationTable({ leaseMs: 10_000, recall: async (s) => void recalled.push(s) });
    await t.grant('s1', '0:aa', FH, 'read');
    await t.grant('s1', '0:bb', FH, 'write');
    await t.grant('s2', '1:aa', FH, 'read');
    await t.recallAll('0:');
    assert.equal(recalled.length, 2);
    assert.equal(t.delegatedFiles, 1);
    assert.equal(t.holders('1:aa').length, 1);
  });

  test('a session that answers a recall and takes the file again keeps its new delegation', async () => {
    let t!: DelegationTable;
    // The holder answers by taking the file again first (its new DELEGATE arrives before its answer is handled).
    t = new DelegationTable({ leaseMs: 10_000, recall: async (s, fh) => t.grant(s, '0:aa', fh, 'read') });
    await t.grant('s1', '0:aa', FH, 'read');
    await t.changedElsewhere('0:aa');
    assert.deepEqual(t.holders('0:aa').map((h) => h.session), ['s1'], 'the new grant was dropped with the recalled one');
    // And the new grant is recalled by the next change.
    let again = 0;
    const u = new DelegationTable({ leaseMs: 10_000, recall: async () => void again++ });
    await u.grant('s1', '0:aa', FH, 'read');
    await u.changedElsewhere('0:aa');
    await u.grant('s1', '0:aa', FH, 'read');
    await u.changedElsewhere('0:aa');
    assert.equal(again, 2);
  });
});
