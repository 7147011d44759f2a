import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isFsError } from '../../../../src/backend/errors.js';
import { ACCESS3_READ } from '../../../../src/nfs3/constants.js';
import { AuthFlavor, type Credentials } from '../../../../src/rpc/types.js';
import { AccessGate } from '../../../../src/wrappers/cache/access-gate.js';

const who = (uid: number): Credentials => ({ flavor: AuthFlavor.AUTH_SYS, uid, gid: uid, gids: [] });
const FH = Buffer.from('0102', 'hex');

describe('cache access gate', { timeout: 30_000 }, () => {
  test('per caller: the server\'s answer for one uid is never used for another; answers last the TTL', async () => {
    const asked: number[] = [];
    let ttl = 60_000;
    const gate = new AccessGate(async (c) => (asked.push(c.uid), { access: c.uid === 2001 ? ACCESS3_READ : 0 }), () => ttl);
    await gate.check(who(2001), FH);
    await gate.check(who(2001), FH);
    await assert.rejects(gate.check(who(2002), FH), (e) => isFsError(e, 'ACCES'));
    await assert.rejects(gate.check(who(2002), FH), (e) => isFsError(e, 'ACCES'));
    assert.deepEqual(asked, [2001, 2002], 'one ACCESS per caller within the TTL');
    ttl = 0;
    await gate.check(who(2001), FH);
    assert.deepEqual(asked, [2001, 2002, 2001], 'asked again once the TTL is over');
  });

  test('concurrent checks share one ACCESS; a failed ACCESS is not remembered', async () => {
    let calls = 0;
    let fail = true;
    const gate = new AccessGate(async () => {
      calls++;
      await new Promise((r) => setImmediate(r));
      if (fail) throw new Error('server unreachable');
      return { access: ACCESS3_READ };
    }, () => 60_000);
    await Promise.all([...Array(10)].map(() => assert.rejects(gate.check(who(1), FH), /unreachable/)));
    assert.equal(calls, 1);
    fail = false;
    await gate.check(who(1), FH);
    assert.equal(calls, 2);
  });

  test('the client\'s own ACCESS counts, but only when it asked for READ; an older answer never replaces a newer one', async () => {
    let calls = 0;
    const gate = new AccessGate(async () => (calls++, { access: 0 }), () => 60_000);
    gate.note(who(1), FH, 0x20, 0x20, Date.now()); // EXECUTE only: says nothing about READ
    await assert.rejects(gate.check(who(1), FH));
    assert.equal(calls, 1);
    gate.note(who(1), FH, ACCESS3_READ, ACCESS3_READ, Date.now() + 1);
    await gate.check(who(1), FH);
    gate.note(who(1), FH, ACCESS3_READ, 0, Date.now() - 10_000);
    await gate.check(who(1), FH);
    assert.equal(calls, 1);
  });
});
