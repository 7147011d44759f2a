import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { checkLink, startLink } from '../../../bench/lib/link-emulator.js';

/** The WAN emulator preserves every byte and its order under load, and adds (at least) its delay. */
test('link emulator: every byte, in order, both directions at once; delay at least as set', { timeout: 120_000 }, async () => {
  const sink = net.createServer((s) => s.pipe(s)); // echo
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
  const link = await startLink({ name: 'test', rttMs: 10, bitsPerSec: 400e6 }, { host: '127.0.0.1', port: (sink.address() as net.AddressInfo).port });
  try {
    const c = net.connect(link.port, '127.0.0.1');
    await new Promise((r) => c.once('connect', r));
    const data = randomBytes(8 << 20);
    const got: Buffer[] = [];
    let n = 0;
    const done = new Promise<void>((r) =>
      c.on('data', (d: Buffer) => {
        got.push(d);
        n += d.length;
        if (n >= data.length) r();
      }),
    );
    const t0 = performance.now();
    for (let off = 0; off < data.length; off += 100_000) c.write(data.subarray(off, Math.min(off + 100_000, data.length)));
    await done;
    const ms = performance.now() - t0;
    const h = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.equal(h(Buffer.concat(got)), h(data));
    assert.ok(ms >= 10, `round trip took at least the RTT (${ms.toFixed(1)} ms)`);
    assert.ok(ms >= ((data.length * 8) / 400e6) * 1000, 'no faster than the bandwidth allows');
    assert.equal(link.bytes().up, data.length);
    c.destroy();
  } finally {
    await link.close();
    await new Promise((r) => sink.close(r));
  }
});

/**
 * The bandwidth is the link's, not each connection's: four connections
 * pushing at once through a 40 Mbit/s link together get about 40 Mbit/s
 * (with one bucket per connection they got four times that), and they share
 * it (none finishes long before the others).
 */
test('link emulator: 4 parallel connections share one bucket per direction', { timeout: 120_000 }, async () => {
  const bitsPerSec = 40e6;
  const perConn = 2.5 * (1 << 20);
  const conns = 4;
  const received = new Map<number, number>();
  let total = 0;
  let allIn!: () => void;
  const done = new Promise<void>((r) => (allIn = r));
  const finished: number[] = [];
  let t0 = 0;
  // The sink learns each connection's number from its first byte and counts what arrives.
  const sink = net.createServer((s) => {
    let id = -1;
    s.on('data', (d: Buffer) => {
      if (id < 0) id = d[0];
      const n = (received.get(id) ?? 0) + d.length;
      received.set(id, n);
      total += d.length;
      if (n === perConn) finished.push(performance.now() - t0);
      if (total === conns * perConn) allIn();
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
  const link = await startLink({ name: 'test', rttMs: 2, bitsPerSec }, { host: '127.0.0.1', port: (sink.address() as net.AddressInfo).port });
  const sockets: net.Socket[] = [];
  try {
    for (let i = 0; i < conns; i++) {
      const c = net.connect(link.port, '127.0.0.1');
      c.on('error', () => undefined);
      await new Promise((r) => c.once('connect', r));
      sockets.push(c);
    }
    t0 = performance.now();
    await Promise.all(
      sockets.map(async (c, i) => {
        const chunk = Buffer.alloc(64 * 1024, i);
        for (let sent = 0; sent < perConn; sent += chunk.length) if (!c.write(chunk)) await new Promise((r) => c.once('drain', r));
      }),
    );
    await done;
    const secs = (performance.now() - t0) / 1000;
    const rate = (total * 8) / secs;
    // Upper bound tight enough that per-connection buckets (≈4x) fail; lower bound generous for a loaded machine.
    assert.ok(rate <= 1.3 * bitsPerSec, `4 connections together got ${(rate / 1e6).toFixed(1)} Mbit/s through a ${bitsPerSec / 1e6} Mbit/s link`);
    assert.ok(rate >= 0.4 * bitsPerSec, `4 connections together got only ${(rate / 1e6).toFixed(1)} Mbit/s of ${bitsPerSec / 1e6}`);
    assert.equal(link.bytes().up, total);
    assert.equal(finished.length, conns);
    assert.ok(finished[0] >= 0.4 * finished[conns - 1], `the first connection finished at ${finished[0].toFixed(0)} ms, the last at ${finished[conns - 1].toFixed(0)} ms: the link is not shared`);
  } finally {
    for (const c of sockets) c.destroy();
    await link.close();
    await new Promise((r) => sink.close(r));
  }
});

/** Out of tolerance: a full run is refused; a --quick smoke run goes on with a warning naming the measurement. */
test('link check: refuses a link out of tolerance, or warns when not strict', { timeout: 120_000 }, async () => {
  const profile = { name: 'test', rttMs: 2, bitsPerSec: 40e6 };
  // Tolerance 0: no measurement of a real relay is exactly its setting.
  await assert.rejects(checkLink(profile, 0, 1, true), /link test out of tolerance \(0 %\) in 1 attempts: RTT [\d.]+ ms \(want 2\), [\d.]+ Mbit\/s \(want 40\)/);
  const c = await checkLink(profile, 0, 1, false);
  assert.match(c.warning ?? '', /out of tolerance .*went on/);
  assert.ok(c.mbitPerSec > 0 && c.rttMs > 0);
  // A generous tolerance passes without a warning.
  const ok = await checkLink(profile, 10, 1, true);
  assert.equal(ok.warning, undefined);
});
