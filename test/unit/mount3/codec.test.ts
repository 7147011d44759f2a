import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import '../../helpers/fc-seed.js';
import { XdrError, type XdrReader, type XdrWriter } from '../../../src/xdr/index.js';
import { type ExportEntry, type MntResult, MNTPATHLEN, type MountEntry, MountStat, dirpath, exports, mntres, mountlist } from '../../../src/mount3/codec.js';
import { decodeAll, encode, hex } from '../../helpers/xdr.js';

/**
 * MOUNT v3 codecs against RFC 1813 appendix I (mountres3, mountlist,
 * exports). Vectors are hand-written from the RFC's XDR.
 */

interface Codec<T> {
  enc(w: XdrWriter, v: T): void;
  dec(r: XdrReader): T;
}

function vector<T>(codec: Codec<T>, v: T, bytes: Buffer): void {
  assert.equal(encode(codec.enc, v).toString('hex'), bytes.toString('hex'));
  assert.deepEqual(decodeAll(codec.dec, bytes), v);
}

test('mountres3 OK: fhandle3 then auth_flavors<> (RFC 1813 appendix I, MOUNTPROC3_MNT)', { timeout: 60_000 }, () => {
  vector<MntResult>(
    mntres,
    { status: MountStat.OK, fh: hex('0102030405'), authFlavors: [1, 0] },
    hex(`
      00000000                     # fhs_status MNT3_OK
      00000005 01020304 05000000   # fhandle3: opaque<64>, padded
      00000002 00000001 00000000   # auth_flavors<>: [AUTH_UNIX, AUTH_NONE]
    `),
  );
});

test('mountres3 errors have a void body', { timeout: 60_000 }, () => {
  vector<MntResult>(mntres, { status: MountStat.NOENT }, hex('00000002'));
  vector<MntResult>(mntres, { status: MountStat.ACCES }, hex('0000000d'));
  vector<MntResult>(mntres, { status: MountStat.SERVERFAULT }, hex('00002716'));
});

test('mountres3: a handle over FHSIZE3 (64) is rejected', { timeout: 60_000 }, () => {
  assert.throws(() => decodeAll(mntres.dec, hex('00000000 00000041' + '00'.repeat(68) + '00000000')), XdrError);
});

test('dirpath: string<MNTPATHLEN> (1024)', { timeout: 60_000 }, () => {
  vector(dirpath, '/export', hex('00000007 2f657870 6f727400'));
  const long = (n: number) => Buffer.concat([hex(n.toString(16).padStart(8, '0')), Buffer.alloc(n, 0x61)]);
  assert.equal(decodeAll(dirpath.dec, long(MNTPATHLEN)).length, 1024);
  assert.throws(() => decodeAll(dirpath.dec, long(MNTPATHLEN + 4)), XdrError);
});

test('mountlist: linked mountbody entries { ml_hostname, ml_directory, ml_next }', { timeout: 60_000 }, () => {
  vector<MountEntry[]>(
    mountlist,
    [
      { hostname: 'client', directory: '/export' },
      { hostname: 'h2', directory: '/' },
    ],
    hex(`
      00000001                     # entry follows
      00000006 636c6965 6e740000   #   ml_hostname "client"
      00000007 2f657870 6f727400   #   ml_directory "/export"
      00000001                     # ml_next follows
      00000002 68320000            #   "h2"
      00000001 2f000000            #   "/"
      00000000                     # end of list
    `),
  );
  vector<MountEntry[]>(mountlist, [], hex('00000000'));
});

test('exports: exportnode { ex_dir, ex_groups (a list of names), ex_next }', { timeout: 60_000 }, () => {
  vector<ExportEntry[]>(
    exports,
    [
      { dir: '/export', groups: ['*', 'lab'] },
      { dir: '/b', groups: [] },
    ],
    hex(`
      00000001                     # exportnode follows
      00000007 2f657870 6f727400   #   ex_dir "/export"
      00000001 00000001 2a000000   #   groupnode "*"
      00000001 00000003 6c616200   #   groupnode "lab"
      00000000                     #   end of groups
      00000001                     # ex_next follows
      00000002 2f620000            #   ex_dir "/b"
      00000000                     #   no groups
      00000000                     # end of exports
    `),
  );
  vector<ExportEntry[]>(exports, [], hex('00000000'));
});

test('exports: truncated or non-boolean list links are decode errors', { timeout: 60_000 }, () => {
  assert.throws(() => decodeAll(exports.dec, hex('00000001 00000002 2f620000')), XdrError);
  assert.throws(() => decodeAll(exports.dec, hex('00000002')), XdrError);
});

const str = (max: number) => fc.string({ unit: 'grapheme', maxLength: 24 }).filter((s) => Buffer.byteLength(s) <= max);

test('property: mountres3, mountlist and exports round-trip', { timeout: 60_000 }, () => {
  const status = fc.constantFrom(MountStat.PERM, MountStat.NOENT, MountStat.IO, MountStat.ACCES, MountStat.NOTDIR, MountStat.INVAL, MountStat.NAMETOOLONG, MountStat.NOTSUPP, MountStat.SERVERFAULT);
  const res: fc.Arbitrary<MntResult> = fc.oneof(
    fc
      .tuple(fc.uint8Array({ maxLength: 64 }), fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 8 }))
      .map(([fh, authFlavors]) => ({ status: MountStat.OK as const, fh: Buffer.from(fh), authFlavors })),
    status.map((s) => ({ status: s }) as MntResult),
  );
  const ml = fc.array(fc.tuple(str(255), str(1024)).map(([hostname, directory]) => ({ hostname, directory })), { maxLength: 6 });
  const ex = fc.array(fc.tuple(str(1024), fc.array(str(255), { maxLength: 4 })).map(([dir, groups]) => ({ dir, groups })), { maxLength: 6 });
  const check = <T>(codec: Codec<T>, v: T) => assert.deepEqual(decodeAll(codec.dec, encode(codec.enc, v)), v);
  fc.assert(
    fc.property(res, ml, ex, (r, m, e) => {
      check<MntResult>(mntres, r);
      check<MountEntry[]>(mountlist, m);
      check<ExportEntry[]>(exports, e);
    }),
  );
});
