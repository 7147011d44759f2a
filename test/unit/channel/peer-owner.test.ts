import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { findPeerOwner, parseAllowUids, parseProcNetTcp, PeerOwners, procEndpoints } from '../../../src/channel/peer-owner.js';

// Rows as the kernel prints them (x86, little-endian): 127.0.0.1:40000 → 127.0.0.1:2049 owned by uid 2002,
// the accepted end (uid 0), a time-wait entry (inode 0, uid printed 0), and ::1:40001 → ::1:2049 owned by 2001.
const FIXTURE = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0801 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 49301 1 0000000079fd4695 100 0 0 10 0
   1: 0100007F:9C40 0100007F:0801 01 00000000:00000000 00:00000000 00000000  2002        0 51000 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0801 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 51001 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:9C42 0100007F:0801 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:9C41 00000000000000000000000001000000:0801 01 00000000:00000000 00:00000000 00000000  2001        0 52000 1 0000000000000000 20 4 30 10 -1
`;

describe('peer owner (/proc/net/tcp)', { timeout: 60_000 }, () => {
  const servers: net.Server[] = [];
  after(() => servers.forEach((s) => s.close()));

  test('the kernel notation of endpoints', () => {
    if (require_le()) {
      assert.deepEqual(procEndpoints('127.0.0.1', 2049), ['0100007F:0801', '0000000000000000FFFF00000100007F:0801']);
      assert.deepEqual(procEndpoints('::1', 2049), ['00000000000000000000000001000000:0801']);
      assert.deepEqual(procEndpoints('::ffff:127.0.0.1', 80), ['0100007F:0050', '0000000000000000FFFF00000100007F:0050']);
    }
    assert.deepEqual(procEndpoints('not an address', 1), []);
  });

  test('finds the peer socket and its uid; a closed peer (inode 0) has no owner', () => {
    if (!require_le()) return;
    const rows = parseProcNetTcp(FIXTURE);
    assert.equal(rows.length, 5);
    assert.equal(findPeerOwner(rows, { localAddress: '127.0.0.1', localPort: 2049, remoteAddress: '127.0.0.1', remotePort: 40000 }), 2002);
    assert.equal(findPeerOwner(rows, { localAddress: '::ffff:127.0.0.1', localPort: 2049, remoteAddress: '::ffff:127.0.0.1', remotePort: 40000 }), 2002);
    assert.equal(findPeerOwner(rows, { localAddress: '::1', localPort: 2049, remoteAddress: '::1', remotePort: 40001 }), 2001);
    assert.equal(findPeerOwner(rows, { localAddress: '127.0.0.1', localPort: 2049, remoteAddress: '127.0.0.1', remotePort: 40002 }), undefined, 'time-wait: not root');
    assert.equal(findPeerOwner(rows, { localAddress: '127.0.0.1', localPort: 2049, remoteAddress: '127.0.0.1', remotePort: 40009 }), undefined, 'absent');
  });

  test('real sockets: our own connection is root; one made by uid 2002 is 2002', async () => {
    const srv = net.createServer();
    servers.push(srv);
    const accepted: net.Socket[] = [];
    srv.on('connection', (s) => accepted.push(s));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    const owners = new PeerOwners();

    const mine = net.connect(port, '127.0.0.1');
    await once(srv, 'connection');
    assert.equal(await owners.owner(accepted[0]), process.getuid!());

    const child = spawn('setpriv', ['--reuid=2002', '--regid=2002', '--clear-groups', process.execPath, '-e', `const s=require('net').connect(${port},'127.0.0.1');s.on('connect',()=>console.log('up'));process.stdin.on('data',()=>{});process.stdin.on('end',()=>process.exit(0));`], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await once(srv, 'connection');
      assert.equal(await owners.owner(accepted[1]), 2002);
      // Many at once share reads and all get their answer.
      const all = await Promise.all([...Array(20)].map((_, i) => owners.owner(accepted[i % 2])));
      assert.deepEqual(all, [...Array(20)].map((_, i) => (i % 2 ? 2002 : process.getuid!())));
    } finally {
      child.stdin!.end();
      await once(child, 'exit');
      mine.destroy();
      accepted.forEach((s) => s.destroy());
    }
  });

  test('--allow-uid', () => {
    assert.deepEqual([...(parseAllowUids('2001, 2002') as Set<number>)], [2001, 2002]);
    assert.equal(parseAllowUids('any'), 'any');
    assert.throws(() => parseAllowUids('alice'));
    assert.throws(() => parseAllowUids('1,,2'));
  });
});

function require_le(): boolean {
  return new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
}
