import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { RpcClient, tcpDialer } from '../../../src/rpc/client.js';
import { ProgramTable, type ProgramVersion } from '../../../src/rpc/program.js';
import { RpcServer } from '../../../src/rpc/server.js';
import { RpcError } from '../../../src/rpc/types.js';
import type { XdrReader, XdrWriter } from '../../../src/xdr/index.js';
import { reservePort } from '../../helpers/ports.js';

/**
 * The RPC client's per-call deadlines (one sweep timer for all calls, not a
 * timer per call): a server that accepts and never answers must fail every
 * call at its own deadline, queued or on the wire, a short deadline beside
 * a long one included; and no timer is left once nothing is outstanding.
 */
const PROG = 0x3000_0002;

let server: net.Server;
let port = 0;
const sockets = new Set<net.Socket>();

before(async () => {
  // Reads every call and answers none.
  server = net.createServer((s) => {
    sockets.add(s);
    s.on('data', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});

after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

async function timedOut(p: Promise<unknown>): Promise<number> {
  const t0 = Date.now();
  await assert.rejects(p, (e: unknown) => e instanceof RpcError && e.kind === 'timeout');
  return Date.now() - t0;
}

describe('rpc client deadlines', () => {
  test('a call to a server that never answers fails at its deadline, not before', async () => {
    const c = new RpcClient({ dial: tcpDialer('127.0.0.1', port), name: 'deadline' });
    try {
      const ms = await timedOut(c.call(PROG, 1, 1, () => undefined, () => undefined, { timeoutMs: 200 }));
      assert.ok(ms >= 195, `failed after ${ms} ms, before its 200 ms deadline`);
      // An eighth of the deadline late at most, plus a loaded machine's timer lag.
      assert.ok(ms < 800, `failed after ${ms} ms`);
    } finally {
      c.close();
    }
  });

  test('a short deadline beside a long one is kept (the sweep runs finer), call after call', async () => {
    const c = new RpcClient({ dial: tcpDialer('127.0.0.1', port), name: 'deadline' });
    const long = c.call(PROG, 1, 1, () => undefined, () => undefined, { timeoutMs: 60_000 });
    long.catch(() => undefined);
    try {
      // Each short call starts just as the previous one failed: with a sweep left at the long call's
      // once a second, the second would fail a whole second after it started.
      for (let i = 0; i < 3; i++) {
        const ms = await timedOut(c.call(PROG, 1, 1, () => undefined, () => undefined, { timeoutMs: 150 }));
        assert.ok(ms >= 145 && ms < 700, `short call ${i} failed after ${ms} ms`);
      }
    } finally {
      c.close();
    }
    await assert.rejects(long, (e: unknown) => e instanceof RpcError && e.kind === 'closed');
  });

  test('calls still queued time out too: behind the window, or waiting for a connection that never comes', async () => {
    const c = new RpcClient({ dial: tcpDialer('127.0.0.1', port), name: 'deadline', maxInFlight: 1 });
    try {
      const calls = [0, 1, 2].map(() => timedOut(c.call(PROG, 1, 1, () => undefined, () => undefined, { timeoutMs: 200 })));
      for (const ms of await Promise.all(calls)) assert.ok(ms >= 195 && ms < 800, `failed after ${ms} ms`);
      assert.equal(c.pending, 0);
    } finally {
      c.close();
    }
    // A dial that never finishes: the calls never leave the queue.
    const hung = new RpcClient({ dial: () => new Promise(() => undefined), name: 'deadline' });
    try {
      const calls = [0, 1].map(() => timedOut(hung.call(PROG, 1, 1, () => undefined, () => undefined, { timeoutMs: 200 })));
      for (const ms of await Promise.all(calls)) assert.ok(ms >= 195 && ms < 800, `queued call failed after ${ms} ms`);
    } finally {
      hung.close();
    }
  });

  test('after an outage outlasting every call, the next call dials at once, not after the rest of a back-off', async () => {
    const u32 = { enc: (w: XdrWriter, v: number) => void w.u32(v), dec: (r: XdrReader) => r.u32() };
    const prog: ProgramVersion = { prog: PROG, vers: 1, name: 'echo', procedures: [undefined, { name: 'ECHO', decode: u32.dec, handle: (a: number) => a, encode: u32.enc, idempotent: true }] };
    const p = await reservePort();
    let up = new RpcServer({ programs: new ProgramTable().add(prog) });
    await up.listen(p, '127.0.0.1');
    const c = new RpcClient({ dial: tcpDialer('127.0.0.1', p), name: 'deadline' });
    try {
      assert.equal(await c.call(PROG, 1, 1, (w) => u32.enc(w, 7), u32.dec), 7);
      await up.close();
      // Down for longer than the call: the dials back off 50, 100 ... 800 ms, then sleep 1.6 s from about
      // 1.55 s (later on a loaded machine, never sooner); the call fails between 2 and 2.25 s.
      await timedOut(c.call(PROG, 1, 1, (w) => u32.enc(w, 8), u32.dec, { timeoutMs: 2000 }));
      up = new RpcServer({ programs: new ProgramTable().add(prog) });
      await up.listen(p, '127.0.0.1');
      // Had the loop slept on to ~3.15 s, this call (deadline by ~2.55 s) would time out first.
      assert.equal(await c.call(PROG, 1, 1, (w) => u32.enc(w, 9), u32.dec, { timeoutMs: 300 }), 9);
    } finally {
      c.close();
      await up.close();
    }
  });

  test('no timer is left once nothing is outstanding', async () => {
    const before = timers();
    // A dial that never finishes: no connect timer of the dialer's own is left to count.
    const c = new RpcClient({ dial: () => new Promise(() => undefined), name: 'deadline' });
    try {
      const p = c.call(PROG, 1, 1, () => undefined, () => undefined, { timeoutMs: 100 });
      assert.ok(timers() > before, 'a deadline is being watched while the call is outstanding');
      await timedOut(p);
      // The sweep that failed the call found nothing left and stopped.
      assert.equal(timers(), before);
    } finally {
      c.close();
    }
  });
});
