import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemoteNfs } from '../../src/backends/remote-nfs/remote-nfs.js';
import { NFS_PROGRAM, Proc } from '../../src/nfs3/constants.js';
import { DEFAULT_LIMITS } from '../../src/rpc/server.js';
import { spawnGvfs, type GvfsProcess } from '../helpers/gvfs-proc.js';
import { ROOT, tempDir } from '../helpers/local-server.js';
import { RawRpc } from '../helpers/raw-rpc.js';

const MiB = 1 << 20;
const CONNECTIONS = 4;
const READS = 600;
/** The server runs with this in-flight cap (a flag `gvfs serve` has on the base commit too). */
const MAX_IN_FLIGHT = 16;
/**
 * What the limits allow per connection: maxInFlight replies of at most one
 * record each, plus the reply queue. The bound doubles that (a READ reply
 * exists as read buffer and as encoded chunks for a moment) and adds 64 MiB
 * for the allocator and GC lag: 4 × (16 × 1.06 + 8) × 2 + 64 ≈ 264 MiB.
 * Before the fix the same burst raised the server by ~450 MiB per connection.
 */
const PER_CONN = MAX_IN_FLIGHT * DEFAULT_LIMITS.maxRecord + DEFAULT_LIMITS.maxQueuedReplyBytes;
const BOUND = 2 * CONNECTIONS * PER_CONN + 64 * MiB;

async function rssOf(pid: number): Promise<number> {
  const s = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(s);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** Pipelined READs of 1 MiB each, framed, in one buffer (one write: they arrive in as few socket reads as the kernel makes). */
function burst(fh: Buffer, firstXid: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < READS; i++) {
    const body = RawRpc.call(firstXid + i, NFS_PROGRAM, 3, Proc.READ, (w) => w.opaque(fh).u64(0).u32(MiB));
    const h = Buffer.alloc(4);
    h.writeUInt32BE((0x8000_0000 | body.length) >>> 0);
    parts.push(h, body);
  }
  return Buffer.concat(parts);
}

describe('in-flight cap: a burst of pipelined 1 MiB READs whose replies are never read', { timeout: 180_000 }, () => {
  let dir: string;
  let srv: GvfsProcess;
  let fh: Buffer;
  const raws: RawRpc[] = [];

  before(async () => {
    dir = await tempDir('gvfs-sec-inflight-');
    await fs.mkdir(path.join(dir, 'export'));
    await fs.writeFile(path.join(dir, 'export', 'big'), Buffer.alloc(2 * MiB, 7));
    srv = await spawnGvfs(['serve', '--export', path.join(dir, 'export'), '--state-dir', path.join(dir, 'state'), '--listen', '127.0.0.1:0', '--max-in-flight', String(MAX_IN_FLIGHT)]);
    const c = new RemoteNfs({ host: '127.0.0.1', port: srv.port, timeoutMs: 20_000 });
    const root = (await c.mount('/', ROOT)).fh;
    fh = (await c.lookup(ROOT, root, 'big')).fh;
    await c.close();
  });
  after(async () => {
    for (const r of raws) r.close();
    await srv?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  test(`${CONNECTIONS} connections × ${READS} READs: server RSS stays within ${Math.round(BOUND / MiB)} MiB of its baseline, and it still serves`, async () => {
    const base = await rssOf(srv.pid);
    for (let i = 0; i < CONNECTIONS; i++) {
      const r = await RawRpc.connect(srv.port);
      r.sock.pause(); // never read a reply
      raws.push(r);
    }
    for (const [i, r] of raws.entries()) r.sock.write(burst(fh, 1_000_000 * (i + 1)));
    await Promise.all(raws.map((r) => (r.sock.writableLength ? once(r.sock, 'drain') : undefined)));
    // Sample while the server works through what it accepted: before the fix it read every
    // request and ran them all, growing for seconds; with the cap it stops at once.
    let peak = base;
    const until = Date.now() + 12_000;
    while (Date.now() < until) {
      peak = Math.max(peak, await rssOf(srv.pid));
      assert.ok(peak - base < BOUND, `server RSS grew by ${Math.round((peak - base) / MiB)} MiB (bound ${Math.round(BOUND / MiB)} MiB)`);
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log(`# RSS baseline ${Math.round(base / MiB)} MiB, peak ${Math.round(peak / MiB)} MiB (+${Math.round((peak - base) / MiB)} MiB; bound ${Math.round(BOUND / MiB)} MiB)`);
    // The stalled connections hold their own slots only: a fresh client is served.
    const c = new RemoteNfs({ host: '127.0.0.1', port: srv.port, timeoutMs: 20_000 });
    try {
      const r = await c.read(ROOT, fh, MiB - 10, 10);
      assert.equal(r.data.length, 10);
      assert.ok(r.data.every((b) => b === 7));
    } finally {
      await c.close();
    }
  });
});
