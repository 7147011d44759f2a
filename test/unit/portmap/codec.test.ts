import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import '../../helpers/fc-seed.js';
import { XdrWriter } from '../../../src/xdr/index.js';
import type { CallContext, ProgramVersion } from '../../../src/rpc/program.js';
import { ProgramTable } from '../../../src/rpc/program.js';
import { IPPROTO_TCP, IPPROTO_UDP, type Mapping, PMAP_PROGRAM, PMAP_V2, mappingCodec, portmapProgram } from '../../../src/portmap/program.js';
import { decodeAll, encode, hex } from '../../helpers/xdr.js';

/**
 * Portmapper v2 (RFC 1833 §3): struct mapping { prog, vers, prot, port }
 * and pmaplist (a linked list of mappings) from DUMP. Vectors by hand.
 */

const NFS: Mapping = { prog: 100003, vers: 3, prot: IPPROTO_TCP, port: 2049 };
const NFS_HEX = '000186a3 00000003 00000006 00000801';

test('mapping: prog, vers, prot, port as four unsigned ints (RFC 1833 §3)', { timeout: 60_000 }, () => {
  assert.equal(encode(mappingCodec.enc, NFS).toString('hex'), hex(NFS_HEX).toString('hex'));
  assert.deepEqual(decodeAll(mappingCodec.dec, hex(NFS_HEX)), NFS);
  assert.equal(IPPROTO_TCP, 6);
  assert.equal(IPPROTO_UDP, 17);
});

test('property: mapping round-trips', { timeout: 60_000 }, () => {
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  fc.assert(
    fc.property(u32, u32, u32, u32, (prog, vers, prot, port) => {
      const m = { prog, vers, prot, port };
      assert.deepEqual(decodeAll(mappingCodec.dec, encode(mappingCodec.enc, m)), m);
    }),
  );
});

// ---------- the program table (procedure numbers per RFC 1833 §3.2) ----------

const fakeProgram = (prog: number, vers: number): ProgramVersion => ({ prog, vers, name: `p${prog}v${vers}`, procedures: [] });
/** A call context with just a connection (the portmapper filters what it reveals per connection). */
const CTX = { conn: { id: 1, peer: { address: '127.0.0.1', port: 1 }, data: new Map(), close: () => undefined } } as unknown as CallContext;

function setup(visible?: (prog: number, conn: CallContext['conn']) => boolean) {
  const table = new ProgramTable().add(fakeProgram(100003, 3)).add(fakeProgram(100005, 3)).add(fakeProgram(100005, 1));
  const pv = portmapProgram(table, () => 2049, visible);
  const proc = (n: number) => {
    const p = pv.procedures[n];
    assert.ok(p, `procedure ${n}`);
    return p;
  };
  /** Decode args from bytes, run the handler, encode the result: what the server would send. */
  const call = async (n: number, args: Buffer): Promise<Buffer> => {
    const p = proc(n);
    const a = decodeAll((r) => p.decode(r), args);
    const w = new XdrWriter();
    p.encode(w, await p.handle(a, CTX));
    return w.toBuffer();
  };
  return { pv, proc, call };
}

test('portmap v2 program: NULL, SET, UNSET, GETPORT, DUMP at procedures 0-4; no CALLIT', { timeout: 60_000 }, () => {
  const { pv } = setup();
  assert.equal(pv.prog, PMAP_PROGRAM);
  assert.equal(pv.prog, 100000);
  assert.equal(pv.vers, PMAP_V2);
  assert.deepEqual(pv.procedures.map((p) => p?.name), ['NULL', 'SET', 'UNSET', 'GETPORT', 'DUMP']);
  assert.equal(pv.procedures[5], undefined);
});

test('GETPORT over TCP answers the server port for a registered program', { timeout: 60_000 }, async () => {
  const { call } = setup();
  assert.deepEqual(await call(3, hex(NFS_HEX)), hex('00000801'));
  assert.deepEqual(await call(3, hex('000186a5 00000001 00000006 00000000')), hex('00000801'));
});

test('GETPORT answers 0 for UDP, an unknown program or an unregistered version', { timeout: 60_000 }, async () => {
  const { call } = setup();
  assert.deepEqual(await call(3, hex('000186a3 00000003 00000011 00000000')), hex('00000000'));
  assert.deepEqual(await call(3, hex('000186a4 00000001 00000006 00000000')), hex('00000000'));
  assert.deepEqual(await call(3, hex('000186a3 00000002 00000006 00000000')), hex('00000000'));
});

test('SET and UNSET are refused with FALSE', { timeout: 60_000 }, async () => {
  const { call } = setup();
  assert.deepEqual(await call(1, hex(NFS_HEX)), hex('00000000'));
  assert.deepEqual(await call(2, hex(NFS_HEX)), hex('00000000'));
});

test('DUMP: pmaplist as a linked list of mappings', { timeout: 60_000 }, async () => {
  const { call } = setup();
  assert.deepEqual(
    await call(4, Buffer.alloc(0)),
    hex(`
      00000001 000186a3 00000003 00000006 00000801   # NFS v3 / TCP / 2049
      00000001 000186a5 00000003 00000006 00000801   # MOUNT v3
      00000001 000186a5 00000001 00000006 00000801   # MOUNT v1
      00000000                                       # end of list
    `),
  );
});

test('DUMP and GETPORT reveal only visible programs', { timeout: 60_000 }, async () => {
  const { call } = setup((prog) => prog !== 100005);
  assert.deepEqual(await call(4, Buffer.alloc(0)), hex('00000001 000186a3 00000003 00000006 00000801  00000000'));
  assert.deepEqual(await call(3, hex('000186a5 00000003 00000006 00000000')), hex('00000000'));
});
