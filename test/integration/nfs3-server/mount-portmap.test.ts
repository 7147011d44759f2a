import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Mount3Client } from '../../../src/mount3/client.js';
import { MOUNT_PROGRAM, MountStat } from '../../../src/mount3/codec.js';
import { NFS_PROGRAM } from '../../../src/nfs3/constants.js';
import { IPPROTO_TCP, mappingCodec, PMAP_PROGRAM } from '../../../src/portmap/program.js';
import { RpcClient, tcpDialer } from '../../../src/rpc/client.js';
import { startLocalServer, type LocalServer } from '../../helpers/local-server.js';

describe('MOUNT v3 and the portmapper on the NFS port', { timeout: 300_000 }, () => {
  let s: LocalServer;
  let rpc: RpcClient;
  let m: Mount3Client;
  before(async () => {
    s = await startLocalServer({ name: '/data' });
    rpc = new RpcClient({ dial: tcpDialer('127.0.0.1', s.port), timeoutMs: 5000 });
    m = new Mount3Client(rpc);
  });
  after(async () => {
    rpc.close();
    await s.stop();
  });

  test('MNT, DUMP, UMNT, UMNTALL, EXPORT', async () => {
    const r = await m.mnt('/data');
    assert.equal(r.status, MountStat.OK);
    assert.ok(r.status === MountStat.OK && r.fh.equals(s.root) && r.authFlavors.includes(1));
    assert.equal((await m.mnt('/other')).status, MountStat.NOENT);
    assert.deepEqual(await m.export(), [{ dir: '/data', groups: [] }]);
    const d = await m.dump();
    assert.ok(d.some((e) => e.directory === '/data' && e.hostname === '127.0.0.1'));
    await m.umnt('/data');
    await m.umntall();
    assert.deepEqual(await m.dump(), []);
  });

  test('GETPORT finds NFS and MOUNT here; DUMP lists them; others are 0', async () => {
    const getport = (prog: number, vers: number) =>
      rpc.call(PMAP_PROGRAM, 2, 3, (w) => mappingCodec.enc(w, { prog, vers, prot: IPPROTO_TCP, port: 0 }), (r) => r.u32());
    assert.equal(await getport(NFS_PROGRAM, 3), s.port);
    assert.equal(await getport(MOUNT_PROGRAM, 3), s.port);
    assert.equal(await getport(NFS_PROGRAM, 4), 0);
    assert.equal(await getport(123456, 1), 0);
    const dump = await rpc.call(PMAP_PROGRAM, 2, 4, () => undefined, (r) => r.list(100, mappingCodec.dec));
    assert.ok(dump.some((x) => x.prog === NFS_PROGRAM && x.vers === 3 && x.port === s.port));
    assert.equal(await rpc.call(PMAP_PROGRAM, 2, 1, (w) => mappingCodec.enc(w, { prog: 1, vers: 1, prot: 6, port: 1 }), (r) => r.bool()), false, 'SET refused');
  });
});
