import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as X from '../../../src/nfs3/codec.js';
import { NFS_PROGRAM, NFS_V3, Proc } from '../../../src/nfs3/constants.js';
import { startLocalServer, ROOT, type LocalServer } from '../../helpers/local-server.js';
import { RawRpc } from '../../helpers/raw-rpc.js';
import { until } from '../../helpers/services.js';

const MiB = 1 << 20;

/**
 * READ data lands in pooled buffers that go back to the pool once the reply
 * is written (frontends/nfs3-server/nfs3-program.ts, util/buffer-pool.ts).
 * A client that reads nothing keeps replies queued in the server: a buffer
 * given back before its reply left would carry a later READ's bytes to
 * this client. Every reply must hold exactly its own range.
 */
describe('nfs3 server: pooled READ buffers', { timeout: 120_000 }, () => {
  let s: LocalServer;
  const FILE_MIB = 40;
  const content = (i: number) => Buffer.alloc(MiB, `<${String(i).padStart(4, '0')}>`);

  before(async () => {
    // Two calls at a time: each new READ starts as an earlier reply is queued, and takes a buffer given back.
    s = await startLocalServer({ limits: { maxInFlight: 2 } });
    const f = await fs.open(path.join(s.exportDir, 'big'), 'w');
    for (let i = 0; i < FILE_MIB; i++) await f.write(content(i));
    await f.close();
  });
  after(() => s?.stop());

  test('a client that stalls while 40 1 MiB READs are answered gets each range intact', async () => {
    const fh = (await s.client.lookup(ROOT, s.root, 'big')).fh;
    const raw = await RawRpc.connect(s.port);
    try {
      raw.sock.pause();
      const calls0 = s.server.stats.calls;
      for (let i = 0; i < FILE_MIB; i++)
        raw.sendRecord(RawRpc.call(1000 + i, NFS_PROGRAM, NFS_V3, Proc.READ, (w) => X.READ.args.enc(w, { fh, offset: i * MiB, count: MiB })));
      // Replies made while the client reads nothing: the later ones wait in the server's own queue.
      await until('the server to answer 8 READs', () => s.server.stats.calls - calls0 >= 8);
      raw.sock.resume();
      for (let i = 0; i < FILE_MIB; i++) {
        const r = await raw.reply(1000 + i);
        assert.equal(r.kind, 'success');
        const res = X.READ.res.dec((r as { body: Parameters<typeof X.READ.res.dec>[0] }).body) as { status: number; data: Buffer };
        assert.equal(res.status, 0);
        assert.ok(res.data.equals(content(i)), `READ ${i}: its own range (got "${res.data.subarray(0, 6).toString()}" at its start)`);
      }
    } finally {
      raw.close();
    }
  });
});
