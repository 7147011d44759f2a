import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DELEGATE, DELEGATE_READ, delegateReadArgs, delegateReadRes, delegateRes, type DelegateReadRes } from '../../../../src/ext/callback-codec.js';
import type { ExtLink } from '../../../../src/ext/meta-client.js';
import { RpcError, type Credentials } from '../../../../src/rpc/types.js';
import { HeldDelegations } from '../../../../src/wrappers/cache/held-delegations.js';
import { XdrReader, XdrWriter } from '../../../../src/xdr/index.js';

/**
 * The client half of DELEGATE_READ: a read delegation asked with `dataMax`
 * goes as DELEGATE_READ and returns the bytes; a proxy server without the
 * procedure (PROC_UNAVAIL) gets DELEGATE from then on, and the grant still
 * happens. The codec round-trips with and without bytes.
 */
const CRED = { flavor: 1, uid: 0, gid: 0, gids: [] } as Credentials;
const OK: DelegateReadRes = { status: 0, nfsstat: 0, leaseMs: 30_000, instance: Buffer.alloc(8, 1) };
const hooks = { drop: () => undefined, restarted: async () => undefined, dirty: () => false, cred: () => CRED };

function link(hasDelegateRead: boolean, data?: Buffer): ExtLink & { procs: number[] } {
  const procs: number[] = [];
  return {
    procs,
    async ext<R>(proc: number, enc: (w: XdrWriter) => void, dec: (r: XdrReader) => R): Promise<R> {
      procs.push(proc);
      enc(new XdrWriter());
      if (proc === DELEGATE_READ && !hasDelegateRead) throw new RpcError('PROC_UNAVAIL', 'proc_unavail');
      const w = new XdrWriter();
      if (proc === DELEGATE_READ) delegateReadRes.enc(w, { ...OK, data });
      else delegateRes.enc(w, OK);
      return dec(new XdrReader(w.toBuffer()));
    },
  };
}

describe('held delegations: DELEGATE_READ', () => {
  test('asked with dataMax: one DELEGATE_READ, the bytes returned', async () => {
    const l = link(true, Buffer.from('bytes'));
    const h = new HeldDelegations(l, hooks);
    const got = await h.take(CRED, Buffer.from('f1'), 'read', 4096);
    assert.ok(got.granted);
    assert.equal(got.data?.toString(), 'bytes');
    assert.deepEqual(l.procs, [DELEGATE_READ]);
    assert.equal(h.c.takenWithData, 1);
    // Without dataMax (a file not read here) and for a write delegation: DELEGATE.
    await h.take(CRED, Buffer.from('f2'), 'read');
    await h.take(CRED, Buffer.from('f3'), 'write', 4096);
    assert.deepEqual(l.procs, [DELEGATE_READ, DELEGATE, DELEGATE]);
  });

  test('a server without it: DELEGATE at once, and never DELEGATE_READ again', async () => {
    const l = link(false);
    const h = new HeldDelegations(l, hooks);
    const got = await h.take(CRED, Buffer.from('f1'), 'read', 4096);
    assert.ok(got.granted);
    assert.equal(got.data, undefined);
    await h.take(CRED, Buffer.from('f2'), 'read', 4096);
    assert.deepEqual(l.procs, [DELEGATE_READ, DELEGATE, DELEGATE]);
  });

  test('codec: arguments and replies round-trip, bytes or none', () => {
    const w = new XdrWriter();
    delegateReadArgs.enc(w, { fh: Buffer.from('handle'), clientId: Buffer.alloc(16, 7), dataMax: 65536 });
    const a = delegateReadArgs.dec(new XdrReader(w.toBuffer()));
    assert.deepEqual([a.fh.toString(), a.clientId.length, a.dataMax], ['handle', 16, 65536]);
    for (const data of [undefined, Buffer.alloc(0), Buffer.from('abc')]) {
      const v = new XdrWriter();
      delegateReadRes.enc(v, { ...OK, data });
      const r = new XdrReader(v.toBuffer());
      const got = delegateReadRes.dec(r);
      r.end();
      assert.equal(got.data?.toString(), data?.toString());
    }
  });
});
