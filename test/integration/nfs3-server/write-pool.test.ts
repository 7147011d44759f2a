import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { StableHow } from '../../../src/nfs3/constants.js';
import * as X from '../../../src/nfs3/codec.js';
import { NFS_PROGRAM, NFS_V3, Proc } from '../../../src/nfs3/constants.js';
import type { Backend } from '../../../src/backend/backend.js';
import type { WriteResult } from '../../../src/nfs3/types.js';
import type { Credentials } from '../../../src/rpc/types.js';
import { PassthroughBackend } from '../../../src/wrappers/passthrough.js';
import { startLocalServer, ROOT, type LocalServer } from '../../helpers/local-server.js';
import { RawRpc } from '../../helpers/raw-rpc.js';

const MiB = 1 << 20;

/**
 * Holds WRITEs in groups of four before passing them down: while a group
 * waits, the server gathers the next records. It keeps their buffers only
 * until each write settles, so it may say it keeps nothing after (the
 * capability the server's record pool needs).
 */
class GroupedWrites extends PassthroughBackend {
  readonly writeKeepsNoArgs = true as const;
  private held: Array<() => void> = [];
  received = 0;

  constructor(inner: Backend, private readonly total: number) {
    super(inner);
  }

  override async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    this.received++;
    await new Promise<void>((go) => {
      this.held.push(go);
      if (this.held.length === 4 || this.received === this.total) for (const g of this.held.splice(0)) g();
    });
    return super.write(cred, fh, offset, data, stable);
  }
}

/**
 * A WRITE's record, gathered from the socket's chunks into a pooled buffer,
 * goes back to the server's pool once the backend is done with it
 * (Procedure.lendsArgs, rpc/server.ts): the next large record is gathered
 * into the same memory. Given back any earlier, a later WRITE's bytes would
 * land in the file in an earlier one's place. Every range must hold exactly
 * what was written to it, and the pool must have been used.
 */
describe('nfs3 server: pooled WRITE records', { timeout: 120_000 }, () => {
  let s: LocalServer;
  const N = 40;
  const content = (i: number) => Buffer.alloc(MiB, `[${String(i).padStart(4, '0')}]`);

  before(async () => {
    // Eight calls at a time, four held back at once: new records are gathered while earlier WRITEs wait.
    s = await startLocalServer({ limits: { maxInFlight: 8 }, wrap: (b) => new GroupedWrites(b, N) });
  });
  after(() => s?.stop());

  test('40 pipelined 1 MiB WRITEs: each range on disk is its own, and the records were gathered in reused buffers', async () => {
    const fh = (await s.client.create(ROOT, s.root, 'big', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
    const reused0 = s.server.records.reused;
    const raw = await RawRpc.connect(s.port);
    try {
      for (let i = 0; i < N; i++)
        raw.sendRecord(
          RawRpc.call(2000 + i, NFS_PROGRAM, NFS_V3, Proc.WRITE, (w) => X.WRITE.args.enc(w, { fh, offset: i * MiB, stable: StableHow.UNSTABLE, data: content(i) })),
        );
      for (let i = 0; i < N; i++) {
        const r = await raw.reply(2000 + i);
        assert.equal(r.kind, 'success');
        const res = X.WRITE.res.dec((r as { body: Parameters<typeof X.WRITE.res.dec>[0] }).body) as { status: number; count: number };
        assert.deepEqual([res.status, res.count], [0, MiB], `WRITE ${i}`);
      }
    } finally {
      raw.close();
    }
    assert.ok(s.server.records.reused - reused0 >= N / 2, `records gathered in reused buffers: ${s.server.records.reused - reused0} of ${N}`);
    const f = await fs.open(path.join(s.exportDir, 'big'), 'r');
    try {
      const buf = Buffer.alloc(MiB);
      for (let i = 0; i < N; i++) {
        await f.read(buf, 0, MiB, i * MiB);
        assert.ok(buf.equals(content(i)), `range ${i} holds "${buf.subarray(0, 6).toString()}" at its start`);
      }
    } finally {
      await f.close();
    }
  });
});
