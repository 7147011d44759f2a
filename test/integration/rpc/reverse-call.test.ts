import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RpcClient, tcpDialer } from '../../../src/rpc/client.js';
import { type ConnectionState, ProgramTable, type ProgramVersion } from '../../../src/rpc/program.js';
import { RpcServer } from '../../../src/rpc/server.js';
import { RpcError } from '../../../src/rpc/types.js';
import type { XdrReader, XdrWriter } from '../../../src/xdr/index.js';

/**
 * Reverse-direction RPC (callback model, step 1): the server can call the
 * client over the connection the client dialled, while ordinary calls keep
 * flowing the other way on the same socket.
 */
const PROG = 0x3000_0001;
const CB_VERS = 7;
const u32 = { enc: (w: XdrWriter, v: number) => void w.u32(v), dec: (r: XdrReader) => r.u32() };

/** Server program: REGISTER remembers the connection it came on; ADD answers a + 1. */
let lastConn: ConnectionState | undefined;
const serverProg: ProgramVersion = {
  prog: PROG,
  vers: 1,
  name: 'test',
  procedures: [
    undefined,
    { name: 'REGISTER', decode: u32.dec, handle: (_a: number, ctx) => void (lastConn = ctx.conn), encode: () => undefined, idempotent: true },
    { name: 'ADD', decode: u32.dec, handle: (a: number) => a + 1, encode: u32.enc, idempotent: true },
  ],
};

/** Client callback program: DOUBLE answers 2x after `gate` (so a reverse call can be held open). */
let gate: Promise<void> = Promise.resolve();
let seen: number[] = [];
const cbProg: ProgramVersion = {
  prog: PROG,
  vers: CB_VERS,
  name: 'test-cb',
  procedures: [
    undefined,
    {
      name: 'DOUBLE',
      decode: u32.dec,
      handle: async (a: number) => {
        seen.push(a);
        await gate;
        return a * 2;
      },
      encode: u32.enc,
      idempotent: true,
    },
  ],
};

let server: RpcServer;
let port: number;
const clients: RpcClient[] = [];
function client(callbacks?: ProgramTable): RpcClient {
  const c = new RpcClient({ dial: tcpDialer('127.0.0.1', port), timeoutMs: 20_000, callbacks, name: 'test-client' });
  clients.push(c);
  return c;
}
async function register(c: RpcClient): Promise<ConnectionState> {
  lastConn = undefined;
  await c.call(PROG, 1, 1, (w) => u32.enc(w, 0), () => undefined);
  assert.ok(lastConn, 'the server saw the REGISTER call');
  return lastConn;
}
const double = (conn: ConnectionState, n: number, timeoutMs = 20_000) => conn.callPeer!(PROG, CB_VERS, 1, (w) => u32.enc(w, n), u32.dec, timeoutMs);

describe('reverse-direction RPC over one connection', { timeout: 120_000 }, () => {
  before(async () => {
    server = new RpcServer({ programs: new ProgramTable().add(serverProg) });
    port = (await server.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    for (const c of clients) c.close();
    await server.close();
  });

  test('the server calls the client back and gets its answer; forward calls flow while a reverse call is pending', async () => {
    seen = [];
    const c = client(new ProgramTable().add(cbProg));
    const conn = await register(c);
    assert.equal(await double(conn, 21), 42);
    // Hold a reverse call open in the client's handler; forward calls still complete on the same socket.
    let release!: () => void;
    gate = new Promise((r) => (release = r));
    const pending = double(conn, 5);
    const sums = await Promise.all([1, 2, 3].map((n) => c.call(PROG, 1, 2, (w) => u32.enc(w, n), u32.dec)));
    assert.deepEqual(sums, [2, 3, 4]);
    assert.deepEqual(seen, [21, 5]);
    release();
    assert.equal(await pending, 10);
    // Many at once: each reply matches its own XID.
    gate = Promise.resolve();
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => double(conn, i)));
    assert.deepEqual(many, Array.from({ length: 50 }, (_, i) => i * 2));
    assert.ok(server.provenConnections && [...server.provenConnections()].some((x) => x === conn));
  });

  test('a reverse call to a procedure or version the client does not serve is refused, not left hanging', async () => {
    const c = client(new ProgramTable().add(cbProg));
    const conn = await register(c);
    await assert.rejects(conn.callPeer!(PROG, CB_VERS, 9, () => undefined, () => undefined, 20_000), (e: RpcError) => e.kind === 'proc_unavail');
    await assert.rejects(conn.callPeer!(PROG, 99, 1, () => undefined, () => undefined, 20_000), (e: RpcError) => e.kind === 'prog_mismatch');
    await assert.rejects(conn.callPeer!(PROG + 1, 1, 1, () => undefined, () => undefined, 20_000), (e: RpcError) => e.kind === 'prog_unavail');
  });

  test('a client without a callback table ignores reverse calls: the caller gets a timeout, the link keeps working', async () => {
    const c = client();
    const conn = await register(c);
    await assert.rejects(double(conn, 1, 300), (e: RpcError) => e.kind === 'timeout');
    assert.equal(await c.call(PROG, 1, 2, (w) => u32.enc(w, 7), u32.dec), 8);
  });

  test('a connection that drops fails its pending reverse calls at once with "disconnected"', async () => {
    seen = [];
    const c = client(new ProgramTable().add(cbProg));
    const conn = await register(c);
    gate = new Promise(() => undefined); // never answers
    const pending = double(conn, 3, 60_000);
    const t0 = Date.now();
    while (!seen.includes(3)) await new Promise((r) => setTimeout(r, 10));
    c.dropConnection();
    await assert.rejects(pending, (e: RpcError) => e.kind === 'disconnected');
    assert.ok(Date.now() - t0 < 30_000);
    await assert.rejects(double(conn, 4, 60_000), (e: RpcError) => e.kind === 'disconnected');
    gate = Promise.resolve();
  });
});
