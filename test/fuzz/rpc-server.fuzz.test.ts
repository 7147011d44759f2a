import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import '../helpers/fc-seed.js';
import { LocalExport } from '../../src/backends/local-export/local-export.js';
import { newSessionKey } from '../../src/channel/session-key.js';
import { SessionRegistry } from '../../src/channel/sessions.js';
import { GVFS_PROGRAM, GvfsProc, authArgs } from '../../src/ext/codec.js';
import { connectionSession, gvfsProgram, sessionAuthenticator } from '../../src/frontends/nfs3-server/gvfs-program.js';
import { createNfs3Server } from '../../src/frontends/nfs3-server/server.js';
import { MOUNT_PROGRAM } from '../../src/mount3/codec.js';
import { NFS_PROGRAM } from '../../src/nfs3/constants.js';
import { decodeReply } from '../../src/rpc/message.js';
import type { ConnectionState } from '../../src/rpc/program.js';
import { RecordDecoder, RecordTooLargeError } from '../../src/rpc/record.js';
import type { RpcServer } from '../../src/rpc/server.js';
import { RawRpc, SYS_ROOT } from '../helpers/raw-rpc.js';
import { tempDir } from '../helpers/local-server.js';

/**
 * Property-based fuzzing of the decoders and the dispatcher, without
 * sockets (so tens of thousands of cases fit in the suite's time): random
 * records, mutated valid calls of every procedure, hostile record framing
 * and hostile session proofs. Never a crash, never an unbounded structure,
 * always a well-formed reply (or none, for non-calls).
 */
describe('fuzz: RPC server', { timeout: 300_000 }, () => {
  let dir: string;
  let backend: LocalExport;
  let server: RpcServer;
  let root: Buffer;
  const conn = (): ConnectionState => ({ id: 1, peer: { address: '127.0.0.1', port: 1 }, data: new Map(), close: () => undefined });

  before(async () => {
    dir = await tempDir('gvfs-fuzz-');
    await fs.mkdir(path.join(dir, 'export/sub'), { recursive: true });
    await fs.writeFile(path.join(dir, 'export/sub/file'), 'content');
    backend = await LocalExport.open({ root: path.join(dir, 'export'), stateDir: path.join(dir, 'state') });
    server = createNfs3Server({ backend });
    root = backend.rootHandle;
  });
  after(async () => {
    await backend.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  let cases = 0;
  async function checkReply(record: Buffer): Promise<void> {
    cases++;
    const reply = await server.dispatch(record, conn());
    if (!reply) return; // a reply or garbage that is not a call: ignored
    const r = decodeReply(Buffer.concat(reply));
    if (record.length >= 4) assert.equal(r.xid, record.readUInt32BE(0));
  }

  test('random records: 20,000 cases', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), (b) => checkReply(Buffer.from(b))), { numRuns: 20_000 });
  });

  test('mutated valid calls of every NFS, MOUNT and portmap procedure: 20,000 cases', async () => {
    const seeds: Buffer[] = [];
    for (let proc = 0; proc <= 21; proc++) {
      seeds.push(
        RawRpc.call(proc, NFS_PROGRAM, 3, proc, (w) => {
          w.opaque(root).string('sub').u32(0).u32(4096).u32(2).u32(0).opaque(Buffer.from('data'));
        }),
      );
    }
    for (let proc = 0; proc <= 5; proc++) seeds.push(RawRpc.call(100 + proc, MOUNT_PROGRAM, 3, proc, (w) => w.string('/sub')));
    for (let proc = 0; proc <= 4; proc++) seeds.push(RawRpc.call(200 + proc, 100000, 2, proc, (w) => w.u32(NFS_PROGRAM).u32(3).u32(6).u32(0)));
    const mutation = fc.record({
      seed: fc.integer({ min: 0, max: seeds.length - 1 }),
      flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      cut: fc.option(fc.nat(), { nil: undefined }),
      extra: fc.uint8Array({ maxLength: 16 }),
    });
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        let b = Buffer.from(seeds[m.seed]);
        for (const [i, v] of m.flips) if (b.length > 28) b[28 + (i % (b.length - 28))] = v; // keep the header mostly intact
        if (m.cut !== undefined) b = b.subarray(0, m.cut % (b.length + 1));
        b = Buffer.concat([b, Buffer.from(m.extra)]);
        await checkReply(b);
      }),
      { numRuns: 20_000 },
    );
    assert.ok(server.drc.size <= 1024, 'duplicate-request cache stays bounded');
    assert.ok(cases >= 40_000, `${cases} cases ran`);
  });

  test('record framing: any byte stream, any chunking, never more than the limit buffered', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 40 }), (chunks) => {
        let records = 0;
        const d = new RecordDecoder(() => records++, 4096);
        try {
          for (const c of chunks) {
            d.push(Buffer.from(c));
            assert.ok(d.buffered <= 4096);
          }
        } catch (e) {
          assert.ok(e instanceof RecordTooLargeError, String(e));
        }
      }),
      { numRuns: 20_000 },
    );
  });

  test('hostile session proofs never authenticate a connection: 10,000 cases', async () => {
    const key = newSessionKey('alice');
    const keyed = createNfs3Server({
      backend,
      authenticate: sessionAuthenticator,
      extraPrograms: [gvfsProgram({ sessions: new SessionRegistry([key]) })],
    });
    await fc.assert(
      fc.asyncProperty(
        fc.record({ id: fc.oneof(fc.constant(key.id), fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), maxLength: 40 })), cn: fc.uint8Array({ maxLength: 40 }), proof: fc.uint8Array({ maxLength: 40 }) }),
        async (a) => {
          const c = conn();
          await keyed.dispatch(RawRpc.call(1, GVFS_PROGRAM, 1, GvfsProc.CHALLENGE), c);
          const rec = RawRpc.call(2, GVFS_PROGRAM, 1, GvfsProc.AUTH, (w) => authArgs.enc(w, { sessionId: a.id, clientNonce: Buffer.from(a.cn), proof: Buffer.from(a.proof) }), SYS_ROOT);
          await keyed.dispatch(rec, c);
          assert.equal(connectionSession(c), undefined);
          const after = await keyed.dispatch(RawRpc.call(3, MOUNT_PROGRAM, 3, 1, (w) => w.string('/')), c);
          assert.equal(decodeReply(Buffer.concat(after!)).kind, 'auth_error');
        },
      ),
      { numRuns: 10_000 },
    );
  });
});
