import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { foreignProtocolOf } from '../../../src/rpc/peer-protocol.js';
import { frameRecord } from '../../../src/rpc/record.js';
import { mountRefusal, mountStatusName } from '../../../src/mount3/status.js';

describe('what a peer speaks, from its first bytes', { timeout: 10_000 }, () => {
  test('TLS records and SSH banners are recognised; RPC record marks never are', () => {
    assert.equal(foreignProtocolOf(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70])), 'tls'); // alert
    assert.equal(foreignProtocolOf(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])), 'tls'); // ClientHello
    assert.equal(foreignProtocolOf(Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n')), 'ssh');
    for (const len of [0, 28, 4096, (1 << 20) + 64 * 1024, 0x7fffffff]) {
      const mark = Buffer.alloc(4);
      mark.writeUInt32BE((0x80000000 | len) >>> 0);
      assert.equal(foreignProtocolOf(Buffer.concat([mark, Buffer.alloc(8)])), undefined, `record of ${len}`);
    }
    assert.equal(foreignProtocolOf(Buffer.concat(frameRecord([Buffer.alloc(40)]))), undefined);
    assert.equal(foreignProtocolOf(Buffer.from([0x16])), undefined, 'one byte says nothing yet');
  });

  test('MOUNT statuses by their RFC 1813 names', () => {
    assert.equal(mountStatusName(13), 'MNT3ERR_ACCES');
    assert.equal(mountStatusName(10006), 'MNT3ERR_SERVERFAULT');
    assert.equal(mountStatusName(99), 'mountstat3 99');
    assert.equal(mountRefusal(13, '/x'), 'MNT3ERR_ACCES: export /x not allowed');
    assert.equal(mountRefusal(2, '/y'), 'MNT3ERR_NOENT: export /y no such export or directory');
  });
});
