import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { RpcClient, tcpDialer } from '../../../src/rpc/client.js';
import { directReaderOf, directReadSocket, EARLY_MAX } from '../../../src/rpc/direct-read.js';
import { RecordDecoder } from '../../../src/rpc/record.js';
import { ProgramTable } from '../../../src/rpc/program.js';
import { RpcServer } from '../../../src/rpc/server.js';

/**
 * An RPC client on a TCP socket reads large replies straight into each
 * reply's own buffer (net's onread, perf issue 19). Over a real socket,
 * many replies of every size around the threshold, in flight at once, must
 * come back byte for byte, and the large ones must actually have taken the
 * direct path (else the optimisation silently went away).
 */
const PROG = 0x4000_1234;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('rpc client: direct reads of large replies over TCP', { timeout: 120_000 }, () => {
  const blobs = [0, 1, 100, 4095, 65535, 65536, 65537, 300_000, 1 << 20].map((n) => randomBytes(n));
  let server: RpcServer;
  let client: RpcClient;
  before(async () => {
    const table = new ProgramTable().add({
      prog: PROG,
      vers: 1,
      name: 'blobs',
      procedures: [
        undefined,
        {
          name: 'GET',
          decode: (r) => r.u32(),
          // Reply after a random delay so replies interleave and come back out of order.
          handle: (i: number) => new Promise<Buffer>((res) => setTimeout(() => res(blobs[i]), Math.random() * 5)),
          encode: (w, b: Buffer) => void w.opaque(b),
          idempotent: true,
        },
      ],
    });
    server = new RpcServer({ programs: table, authenticate: () => ({ flavor: 0, uid: 0, gid: 0, gids: [] }) });
    const { port } = await server.listen(0);
    client = new RpcClient({ dial: tcpDialer('127.0.0.1', port), maxInFlight: 8, maxRecord: (1 << 20) + 4096, name: 'blobs' });
  });
  after(async () => {
    client?.close();
    await server?.close();
  });

  test('every reply arrives intact, 1 MiB ones included, many in flight; the large ones are read directly', async () => {
    const order = Array.from({ length: 60 }, (_, k) => k % blobs.length).sort(() => Math.random() - 0.5);
    const got = await Promise.all(order.map((i) => client.call(PROG, 1, 1, (w) => void w.u32(i), (r) => Buffer.from(r.opaque(2 << 20)))));
    got.forEach((b, k) => assert.equal(sha(b), sha(blobs[order[k]]), `reply ${k} (blob ${order[k]}, ${blobs[order[k]].length} bytes) differs`));
    const large = order.filter((i) => blobs[i].length >= 300_000).reduce((n, i) => n + blobs[i].length, 0);
    // All but at most the first socket chunk of each large reply lands directly.
    const floor = large - order.filter((i) => blobs[i].length >= 300_000).length * 65536;
    assert.ok(client.stats.directBytesIn >= floor, `${client.stats.directBytesIn} bytes read directly, expected at least ${floor}`);
    assert.ok(client.stats.directBytesIn <= client.stats.bytesIn);
  });

  test('a run of large replies: after the first, each one\'s unaimed read is its first 4 KiB only (the rest lands directly)', async () => {
    const big = blobs.length - 1; // 1 MiB
    const n = 12;
    const d0 = client.stats.directBytesIn;
    for (let k = 0; k < n; k++) {
      const b = await client.call(PROG, 1, 1, (w) => void w.u32(big), (r) => Buffer.from(r.opaque(2 << 20)));
      assert.equal(sha(b), sha(blobs[big]), `reply ${k}`);
    }
    // The first may follow a small record (a 64 KiB unaimed read); the others follow a large one.
    const floor = n * blobs[big].length - 65536 - (n - 1) * 4096;
    const direct = client.stats.directBytesIn - d0;
    assert.ok(direct >= floor, `${direct} bytes read directly, expected at least ${floor}`);
  });

  test('lend: a large reply comes in a pooled record, given back by release and used again; only for calls that lend', async () => {
    const big = blobs.length - 1; // 1 MiB
    const reused0 = client.lentRecords.reused;
    // Without lend: never pooled.
    await client.call(PROG, 1, 1, (w) => void w.u32(big), (r) => Buffer.from(r.opaque(2 << 20)));
    assert.equal(client.lentRecords.reused, reused0);
    // One at a time, each released once checked: from the second on, each reuses the first's record.
    let lent = 0;
    for (let k = 0; k < 5; k++) {
      let release: (() => void) | undefined;
      const view = await client.call(PROG, 1, 1, (w) => void w.u32(big), (r) => r.opaque(2 << 20), { lend: (rel) => (release = rel) });
      assert.ok(release, 'a 1 MiB reply is lent');
      assert.equal(sha(view), sha(blobs[big]));
      release!();
      release!(); // twice: ignored (the pool never hands one buffer to two holders)
      lent++;
    }
    // A late second release, after the record went to another call, must not free it under that call.
    let first: (() => void) | undefined;
    let second: (() => void) | undefined;
    await client.call(PROG, 1, 1, (w) => void w.u32(big), (r) => r.opaque(2 << 20), { lend: (rel) => (first = rel) });
    first!();
    const held = await client.call(PROG, 1, 1, (w) => void w.u32(big), (r) => r.opaque(2 << 20), { lend: (rel) => (second = rel) });
    first!();
    const other = await client.call(PROG, 1, 1, (w) => void w.u32(big), (r) => r.opaque(2 << 20), { lend: () => undefined });
    assert.notEqual(other.buffer, held.buffer, 'a record still held is not handed out again');
    assert.equal(sha(held), sha(blobs[big]));
    second!();
    assert.ok(client.lentRecords.reused - reused0 >= lent - 1, `reused ${client.lentRecords.reused - reused0} of ${lent}`);
    // Many in flight, released only after every one was checked: none overwrites another.
    const order = Array.from({ length: 24 }, (_, k) => k % blobs.length);
    const releases: Array<() => void> = [];
    const views = await Promise.all(order.map((i) => client.call(PROG, 1, 1, (w) => void w.u32(i), (r) => r.opaque(2 << 20), { lend: (rel) => releases.push(rel) })));
    views.forEach((b, k) => assert.equal(sha(b), sha(blobs[order[k]]), `lent reply ${k} differs`));
    // (A reply is large when its fragment, header included, is: the 65535-byte blob's is.)
    const large = order.filter((i) => blobs[i].length >= 65535).length;
    assert.ok(releases.length > 0 && releases.length <= large, `only large replies are lent: ${releases.length} of ${large}`);
    for (const r of releases) r();
  });
});

describe('aimed reads before a decoder is attached', { timeout: 60_000 }, () => {
  const peer = async (bytes: Buffer) => {
    // Sends its bytes the moment a connection is up.
    const srv = net.createServer((c) => c.on('error', () => undefined).end(bytes));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    return { srv, port: (srv.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => srv.close(() => r())) };
  };

  test('what arrives before attach is kept for the decoder, in order', async () => {
    const sent = randomBytes(EARLY_MAX - 1000);
    const p = await peer(sent);
    const s = directReadSocket({ host: '127.0.0.1', port: p.port });
    try {
      const ended = once(s, 'end');
      // Everything the peer sent (it then closes) is read and kept before the decoder comes.
      s.resume();
      await ended;
      const got: Buffer[] = [];
      directReaderOf(s)!.attach(new RecordDecoder(() => undefined, 4 << 20), (b) => got.push(b), () => assert.fail('nothing is aimed without a large fragment'));
      assert.equal(sha(Buffer.concat(got)), sha(sent));
    } finally {
      s.destroy();
      await p.close();
    }
  });

  test('a peer that sends more than EARLY_MAX before attach is cut off, not buffered', async () => {
    const p = await peer(randomBytes(8 << 20));
    const s = directReadSocket({ host: '127.0.0.1', port: p.port });
    try {
      const [err] = (await once(s, 'error')) as [Error];
      assert.match(err.message, /bytes arrived before the connection's RPC decoder was attached/);
      assert.ok(s.bytesRead <= EARLY_MAX + 64 * 1024, `read ${s.bytesRead} bytes before a decoder was attached`);
    } finally {
      s.destroy();
      await p.close();
    }
  });
});
