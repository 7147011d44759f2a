import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { RpcClient, tcpDialer } from '../../../src/rpc/client.js';
import { ProgramTable, type Procedure } from '../../../src/rpc/program.js';
import { RpcServer } from '../../../src/rpc/server.js';
import { frameRecord } from '../../../src/rpc/record.js';
import { AUTH_NONE_BODY } from '../../../src/rpc/auth.js';
import { encodeCallHeader } from '../../../src/rpc/message.js';
import { XdrWriter } from '../../../src/xdr/index.js';

/**
 * An RPC server on plain TCP reads a large call (a 1 MiB WRITE) straight
 * into a pooled record (rpc/direct-read.ts: net's onread on the accepted
 * socket), and uses the record again once a call that lends its arguments
 * is done. Calls of every size around the threshold, many in flight and
 * handled slowly, must each see their own bytes; the large ones must
 * actually take the direct path; and before a connection has proved itself
 * a large header allocates nothing ahead of its bytes.
 */
const PROG = 0x4000_4321;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const cred = () => ({ flavor: 1, uid: 0, gid: 0, gids: [] });

/** PUT: hashes its argument after a random delay (its record must stay its own until then); PROVE marks the connection proven. */
function table(): ProgramTable {
  const put: Procedure = {
    name: 'PUT',
    decode: (r) => r.opaque(2 << 20),
    handle: async (b: Buffer) => {
      await delay(Math.random() * 4);
      return sha(b);
    },
    encode: (w, h: string) => void w.string(h),
    idempotent: true,
    lendsArgs: true,
  };
  const prove: Procedure = {
    name: 'PROVE',
    decode: () => undefined,
    handle: (_a, ctx) => void ctx.conn.data.set('proven', true),
    encode: () => undefined,
    idempotent: true,
    public: true,
  };
  return new ProgramTable().add({ prog: PROG, vers: 1, name: 'blobs', procedures: [undefined, put, prove] });
}

const putCall = (c: RpcClient, b: Buffer) => c.call(PROG, 1, 1, (w) => void w.opaque(b), (r) => r.string(100));

/** A raw connection that sends a PUT call's record marker announcing 1 MiB, its call header, and `bodyBytes` of its argument; `len`: the fragment's length, `sent`: the bytes sent. */
async function announce(port: number, bodyBytes: number): Promise<{ raw: net.Socket; len: number; sent: number }> {
  const raw = net.connect(port, '127.0.0.1');
  raw.on('error', () => undefined);
  await new Promise<void>((r) => raw.once('connect', r));
  const w = new XdrWriter(64);
  encodeCallHeader(w, 7, PROG, 1, 1, AUTH_NONE_BODY);
  const body = Buffer.concat([w.toBuffer(), Buffer.from([0, 0x10, 0, 0]), randomBytes(1 << 20)]);
  const whole = Buffer.concat(frameRecord([body]));
  const sent = 4 + w.toBuffer().length + 4 + bodyBytes;
  await new Promise<void>((r) => raw.write(whole.subarray(0, sent), () => r()));
  return { raw, len: body.length, sent };
}

/** Until `cond` holds (the server's counters move as its event loop reads). */
async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 30_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`not reached: ${what}`);
    await delay(5);
  }
}

describe('rpc server: large calls read straight into pooled records over TCP', { timeout: 120_000 }, () => {
  const blobs = [0, 1, 100, 4095, 65535, 65536, 65537, 300_000, 1 << 20].map((n) => randomBytes(n));
  let server: RpcServer;
  let client: RpcClient;
  before(async () => {
    server = new RpcServer({ programs: table(), authenticate: cred });
    const { port } = await server.listen(0);
    client = new RpcClient({ dial: tcpDialer('127.0.0.1', port), maxInFlight: 16, name: 'blobs' });
  });
  after(async () => {
    client?.close();
    await server?.close();
  });

  test('every call is seen whole and as its own, 1 MiB ones included, many in flight; the large ones are read directly and their records reused', async () => {
    const reused0 = server.records.reused;
    const d0 = server.stats.directBytesIn;
    const order = Array.from({ length: 90 }, (_, k) => k % blobs.length).sort(() => Math.random() - 0.5);
    const got = await Promise.all(order.map((i) => putCall(client, blobs[i])));
    got.forEach((h, k) => assert.equal(h, sha(blobs[order[k]]), `call ${k} (blob ${order[k]}, ${blobs[order[k]].length} bytes) was seen with other bytes`));
    const bigOnes = order.filter((i) => blobs[i].length >= 300_000);
    const large = bigOnes.reduce((n, i) => n + blobs[i].length, 0);
    // All but at most the first socket chunk of each large call lands directly.
    const floor = large - bigOnes.length * 65536;
    const direct = server.stats.directBytesIn - d0;
    assert.ok(direct >= floor, `${direct} bytes read directly, expected at least ${floor}`);
    assert.ok(server.stats.directBytesIn <= server.stats.bytesIn);
    assert.ok(server.records.reused - reused0 > 0, 'records of calls that lend are used again');
  });

  test('a run of 1 MiB calls, one at a time: after the first, all but each one\'s first 4 KiB lands directly', async () => {
    const big = blobs[blobs.length - 1];
    const n = 12;
    const d0 = server.stats.directBytesIn;
    for (let k = 0; k < n; k++) assert.equal(await putCall(client, big), sha(big), `call ${k}`);
    const floor = n * big.length - 65536 - (n - 1) * 4096;
    const direct = server.stats.directBytesIn - d0;
    assert.ok(direct >= floor, `${direct} bytes read directly, expected at least ${floor}`);
  });

  test('peers announcing 1 MiB and sending nearly nothing: what is allocated ahead stays within 32 MiB, and comes back when they go', async () => {
    const port = server.address().port;
    const before = server.stats.bytesIn;
    const peers = await Promise.all(Array.from({ length: 48 }, () => announce(port, 10)));
    const sent = peers.reduce((n, p) => n + p.sent, 0);
    // Every header read (else one read later could take budget freed meanwhile).
    await until(() => server.stats.bytesIn - before >= sent, 'every header read');
    assert.ok(server.directAhead > 0, 'some are read directly');
    assert.ok(server.directAhead <= 32 << 20, `${server.directAhead} bytes allocated ahead of their data`);
    for (const p of peers) p.raw.destroy();
    await until(() => server.directAhead === 0, 'the budget back once the connections closed');
    const big = randomBytes(1 << 20);
    const d0 = server.stats.directBytesIn;
    assert.equal(await putCall(client, big), sha(big));
    assert.ok(server.stats.directBytesIn - d0 >= big.length - 65536, 'read directly again');
  });

  test('a connection closed by the server with a large call half read gives its allocation back at once, though the peer keeps sending', async () => {
    const port = server.address().port;
    const ahead0 = server.directAhead;
    const before = server.stats.bytesIn;
    const { raw, len, sent } = await announce(port, 300_000);
    await until(() => server.stats.bytesIn - before >= sent, 'the half sent read');
    assert.equal(server.directAhead - ahead0, len, 'the fragment is allocated ahead');
    const conn = [...server.provenConnections()].find((c) => c.peer.port === raw.localPort);
    assert.ok(conn, 'the raw connection is among the server\'s');
    conn.close();
    assert.equal(server.directAhead, ahead0, 'given back when the connection is closed, not when the peer goes');
    raw.write(randomBytes(200_000)); // still arriving: discarded
    raw.destroy();
  });
});

describe('rpc server: no direct reads before a connection has proved itself', { timeout: 60_000 }, () => {
  let server: RpcServer;
  let port: number;
  before(async () => {
    server = new RpcServer({
      programs: table(),
      authenticate: cred,
      handshake: { timeoutMs: 30_000, done: (c) => c.data.get('proven') === true },
    });
    port = (await server.listen(0)).port;
  });
  after(async () => {
    await server?.close();
  });

  test('an unproven peer announcing a 1 MiB call and sending half of it: nothing read directly; once proven, the same call is', async () => {
    const { raw, sent } = await announce(port, 1 << 19);
    // The bytes are at the server once it has counted them.
    await until(() => server.stats.bytesIn >= sent, 'the half sent read');
    assert.equal(server.stats.directBytesIn, 0, 'an unproven connection reads the ordinary way');
    raw.destroy();

    const client = new RpcClient({ dial: tcpDialer('127.0.0.1', port), name: 'blobs' });
    try {
      await client.call(PROG, 1, 2, () => undefined, () => undefined);
      const big = randomBytes(1 << 20);
      assert.equal(await putCall(client, big), sha(big));
      assert.ok(server.stats.directBytesIn >= big.length - 65536, `proven: ${server.stats.directBytesIn} bytes read directly`);
    } finally {
      client.close();
    }
  });
});
