import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { startLink } from '../../../bench/lib/link-emulator.js';

/** The WAN emulator preserves every byte and its order under load, and adds (at least) its delay. */
test('link emulator: every byte, in order, both directions at once; delay at least as set', { timeout: 60_000 }, async () => {
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
