import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import '../../helpers/fc-seed.js';
import { XdrError, XdrReader } from '../../../src/xdr/index.js';
import * as N from '../../../src/nfs3/codec.js';
import { CreateMode, FType, MAX_NAME, MAX_PATH, FSF3_CANSETTIME, FSF3_HOMOGENEOUS, FSF3_LINK, FSF3_SYMLINK, Nfs3Status, StableHow } from '../../../src/nfs3/constants.js';
import type { Fattr3, Res } from '../../../src/nfs3/types.js';
import { decodeAll, encode, hex } from '../../helpers/xdr.js';

/**
 * NFSv3 codecs against RFC 1813. The byte vectors below are written by hand
 * from the RFC's XDR (basic types §2.6, procedures §3.3.x); a round-trip
 * property then covers every procedure's arguments and results.
 */

/** Assert `codec` encodes `v` to exactly `bytes` and decodes `bytes` back to `v`, consuming all of it. */
function vector<T>(codec: N.Codec<T>, v: T, bytes: Buffer): void {
  assert.deepEqual(encode(codec.enc, v).toString('hex'), bytes.toString('hex'));
  assert.deepEqual(decodeAll(codec.dec, bytes), v);
}

// ---------- shared fixtures ----------

const FA: Fattr3 = {
  type: FType.REG,
  mode: 0o644,
  nlink: 1,
  uid: 1000,
  gid: 100,
  size: 2 ** 32 + 5,
  used: 8192,
  rdev: { major: 8, minor: 1 },
  fsid: 0x0123456789abcdefn,
  fileid: 2n ** 53n + 1n,
  atime: { sec: 0x5f5e1000, nsec: 1 },
  mtime: { sec: 0x5f5e1001, nsec: 2 },
  ctime: { sec: 0x5f5e1002, nsec: 3 },
};
// fattr3 (RFC 1813 §2.6): 21 XDR words, 84 bytes, in this order.
const FA_HEX = `
  00000001            # type NF3REG
  000001a4            # mode 0644
  00000001            # nlink
  000003e8            # uid 1000
  00000064            # gid 100
  00000001 00000005   # size 2^32 + 5
  00000000 00002000   # used 8192
  00000008 00000001   # rdev { specdata1 8, specdata2 1 }
  01234567 89abcdef   # fsid
  00200000 00000001   # fileid 2^53 + 1 (exact only as a bigint)
  5f5e1000 00000001   # atime
  5f5e1001 00000002   # mtime
  5f5e1002 00000003   # ctime
`;

const FH = hex('deadbeef cafebabe');
const FH_HEX = '00000008 deadbeef cafebabe'; // nfs_fh3: opaque data<64>
const FH4 = hex('01020304');
const FH4_HEX = '00000004 01020304';

// ---------- basic types (RFC 1813 §2.6) ----------

test('fattr3: 84 bytes in RFC 1813 §2.6 order', { timeout: 60_000 }, () => {
  assert.equal(hex(FA_HEX).length, 84);
  vector(N.fattr3, FA, hex(FA_HEX));
});

test('post_op_attr: attributes_follow boolean, then fattr3', { timeout: 60_000 }, () => {
  vector(N.postOpAttr, FA, hex(`00000001 ${FA_HEX}`));
  vector(N.postOpAttr, undefined, hex('00000000'));
});

test('nfs_fh3: variable opaque up to NFS3_FHSIZE (64) bytes', { timeout: 60_000 }, () => {
  vector(N.fh3, FH, hex(FH_HEX));
  vector(N.fh3, hex('aabbcc'), hex('00000003 aabbcc00'));
  vector(N.fh3, Buffer.alloc(64, 1), hex('00000040' + '01'.repeat(64)));
  assert.throws(() => decodeAll(N.fh3.dec, hex('00000041' + '01'.repeat(68))), XdrError);
});

test('filename3 and nfspath3 are bounded on decode (MAX_NAME, MAX_PATH)', { timeout: 60_000 }, () => {
  // MAX_NAME is deliberately looser than NAME_MAX so a long name reaches the backend as NAMETOOLONG.
  const str = (n: number) => Buffer.concat([hex(n.toString(16).padStart(8, '0')), Buffer.alloc(n + ((4 - (n & 3)) & 3))]);
  assert.equal(decodeAll(N.filename3.dec, str(MAX_NAME)).length, MAX_NAME);
  assert.throws(() => decodeAll(N.filename3.dec, str(MAX_NAME + 1)), XdrError);
  assert.equal(decodeAll(N.nfspath3.dec, str(MAX_PATH)).length, MAX_PATH);
  assert.throws(() => decodeAll(N.nfspath3.dec, str(MAX_PATH + 1)), XdrError);
});

test('sattr3: every set_* discriminant FALSE / DONT_CHANGE', { timeout: 60_000 }, () => {
  // set_mode3, set_uid3, set_gid3, set_size3: bool FALSE; set_atime, set_mtime: time_how DONT_CHANGE (0)
  vector(N.sattr3, {}, hex('00000000 00000000 00000000 00000000 00000000 00000000'));
});

test('sattr3: every set_* discriminant TRUE, atime SET_TO_SERVER_TIME, mtime SET_TO_CLIENT_TIME', { timeout: 60_000 }, () => {
  vector(
    N.sattr3,
    { mode: 0o755, uid: 1, gid: 2, size: 2 ** 32, atime: 'server', mtime: { sec: 16, nsec: 32 } },
    hex(`
      00000001 000001ed            # set_mode3 TRUE, 0755
      00000001 00000001            # set_uid3 TRUE, 1
      00000001 00000002            # set_gid3 TRUE, 2
      00000001 00000001 00000000   # set_size3 TRUE, 2^32
      00000001                     # set_atime SET_TO_SERVER_TIME
      00000002 00000010 00000020   # set_mtime SET_TO_CLIENT_TIME { 16, 32 }
    `),
  );
});

test('sattr3: size 0 is set (not confused with absent), atime from the client, mtime from the server', { timeout: 60_000 }, () => {
  vector(
    N.sattr3,
    { size: 0, atime: { sec: 1, nsec: 2 }, mtime: 'server' },
    hex(`
      00000000 00000000 00000000   # mode, uid, gid not set
      00000001 00000000 00000000   # set_size3 TRUE, 0
      00000002 00000001 00000002   # set_atime SET_TO_CLIENT_TIME
      00000001                     # set_mtime SET_TO_SERVER_TIME
    `),
  );
});

test('sattr3: an unknown time_how or a non-boolean set_* is a decode error', { timeout: 60_000 }, () => {
  assert.throws(() => decodeAll(N.sattr3.dec, hex('00000000 00000000 00000000 00000000 00000003 00000000')), XdrError);
  assert.throws(() => decodeAll(N.sattr3.dec, hex('00000002 00000000 00000000 00000000 00000000 00000000')), XdrError);
});

test('wcc_data: pre_op_attr (wcc_attr) and post_op_attr, both present', { timeout: 60_000 }, () => {
  vector(
    N.wccData,
    { before: { size: 10, mtime: { sec: 1, nsec: 2 }, ctime: { sec: 3, nsec: 4 } }, after: FA },
    hex(`
      00000001                     # pre_op_attr: attributes_follow
      00000000 0000000a            #   wcc_attr.size
      00000001 00000002            #   wcc_attr.mtime
      00000003 00000004            #   wcc_attr.ctime
      00000001 ${FA_HEX}           # post_op_attr
    `),
  );
});

test('wcc_data: both absent, and only after', { timeout: 60_000 }, () => {
  vector(N.wccData, { before: undefined, after: undefined }, hex('00000000 00000000'));
  vector(N.wccData, { before: undefined, after: FA }, hex(`00000000 00000001 ${FA_HEX}`));
});

// ---------- procedures (RFC 1813 §3.3) ----------

test('GETATTR3res: OK with fattr3; failure has a void body (§3.3.1)', { timeout: 60_000 }, () => {
  vector(N.GETATTR.res, { status: Nfs3Status.OK, attr: FA }, hex(`00000000 ${FA_HEX}`));
  vector(N.GETATTR.res, { status: Nfs3Status.STALE }, hex('00000046'));
});

test('SETATTR3args: object, new_attributes, sattrguard3 (§3.3.2)', { timeout: 60_000 }, () => {
  vector(
    N.SETATTR.args,
    { fh: FH4, attrs: { mode: 0o600 }, guard: { sec: 7, nsec: 8 } },
    hex(`${FH4_HEX}  00000001 00000180 00000000 00000000 00000000 00000000 00000000  00000001 00000007 00000008`),
  );
  vector(N.SETATTR.args, { fh: FH4, attrs: {}, guard: undefined }, hex(`${FH4_HEX} ${'00000000 '.repeat(6)} 00000000`));
});

test('LOOKUP3args: diropargs3 { dir, name } (§3.3.3)', { timeout: 60_000 }, () => {
  vector(
    N.LOOKUP.args,
    { dir: FH, name: 'foo.txt' },
    hex(`
      ${FH_HEX}                    # dir
      00000007 666f6f2e 74787400   # name "foo.txt", one byte of padding
    `),
  );
});

test('LOOKUP3res OK: object, obj_attributes, dir_attributes (§3.3.3)', { timeout: 60_000 }, () => {
  vector(
    N.LOOKUP.res,
    { status: Nfs3Status.OK, fh: FH4, attr: FA, dirAttr: undefined },
    hex(`00000000 ${FH4_HEX} 00000001 ${FA_HEX} 00000000`),
  );
});

test('LOOKUP3res NOENT: the failure still carries dir_attributes (§3.3.3)', { timeout: 60_000 }, () => {
  vector(N.LOOKUP.res, { status: Nfs3Status.NOENT, dirAttr: FA }, hex(`00000002 00000001 ${FA_HEX}`));
  vector(N.LOOKUP.res, { status: Nfs3Status.NOENT, dirAttr: undefined }, hex('00000002 00000000'));
});

test('ACCESS3args and ACCESS3res (§3.3.4)', { timeout: 60_000 }, () => {
  vector(N.ACCESS.args, { fh: FH4, access: 0x3f }, hex(`${FH4_HEX} 0000003f`));
  vector(N.ACCESS.res, { status: Nfs3Status.OK, attr: undefined, access: 0x03 }, hex('00000000 00000000 00000003'));
  vector(N.ACCESS.res, { status: Nfs3Status.ACCES, attr: undefined }, hex('0000000d 00000000'));
});

test('READLINK3res: symlink_attributes then nfspath3 (§3.3.5)', { timeout: 60_000 }, () => {
  vector(N.READLINK.res, { status: Nfs3Status.OK, attr: undefined, path: '../a' }, hex('00000000 00000000 00000004 2e2e2f61'));
});

test('READ3args: file, offset (uint64), count (uint32) (§3.3.6)', { timeout: 60_000 }, () => {
  vector(N.READ.args, { fh: FH4, offset: 2 ** 32 + 1, count: 4096 }, hex(`${FH4_HEX} 00000001 00000001 00001000`));
});

test('READ3resok: attributes, count, eof, data<> with padding (§3.3.6)', { timeout: 60_000 }, () => {
  vector(
    N.READ.res,
    { status: Nfs3Status.OK, attr: FA, count: 5, eof: true, data: Buffer.from('hello') },
    hex(`
      00000000                     # status NFS3_OK
      00000001 ${FA_HEX}           # file_attributes
      00000005                     # count
      00000001                     # eof TRUE
      00000005 68656c6c 6f000000   # data<>, three bytes of padding
    `),
  );
});

test('READ3resok: count on the wire is the data length; large payloads stay byte-exact', { timeout: 60_000 }, () => {
  const data = Buffer.alloc(8193);
  for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
  const b = encode(N.READ.res.enc, { status: Nfs3Status.OK, attr: undefined, count: 8193, eof: false, data });
  assert.equal(b.length, 4 + 4 + 4 + 4 + 4 + 8193 + 3);
  assert.deepEqual(b.subarray(0, 20), hex('00000000 00000000 00002001 00000000 00002001'));
  assert.deepEqual(b.subarray(20, 20 + 8193), data);
  assert.deepEqual(b.subarray(20 + 8193), hex('000000'));
  assert.deepEqual(decodeAll(N.READ.res.dec, b), { status: Nfs3Status.OK, attr: undefined, count: 8193, eof: false, data });
});

test('READ3resfail: file_attributes only', { timeout: 60_000 }, () => {
  vector(N.READ.res, { status: Nfs3Status.IO, attr: FA }, hex(`00000005 00000001 ${FA_HEX}`));
});

test('WRITE3args: file, offset, count, stable, data<> (§3.3.7)', { timeout: 60_000 }, () => {
  vector(
    N.WRITE.args,
    { fh: FH4, offset: 2 ** 32 + 1, stable: StableHow.FILE_SYNC, data: Buffer.from('abc') },
    hex(`
      ${FH4_HEX}                   # file
      00000001 00000001            # offset 2^32 + 1
      00000003                     # count
      00000002                     # stable FILE_SYNC
      00000003 61626300            # data<>
    `),
  );
});

test('WRITE3args: count must not exceed the data; a smaller count trims it; stable_how is checked', { timeout: 60_000 }, () => {
  assert.throws(() => decodeAll(N.WRITE.args.dec, hex(`${FH4_HEX} 00000000 00000000 00000004 00000000 00000003 61626300`)), XdrError);
  const trimmed = decodeAll(N.WRITE.args.dec, hex(`${FH4_HEX} 00000000 00000000 00000002 00000000 00000003 61626300`));
  assert.deepEqual(trimmed.data, Buffer.from('ab'));
  assert.throws(() => decodeAll(N.WRITE.args.dec, hex(`${FH4_HEX} 00000000 00000000 00000003 00000003 00000003 61626300`)), XdrError);
});

test('WRITE3resok: file_wcc, count, committed, 8-byte verifier (§3.3.7)', { timeout: 60_000 }, () => {
  vector(
    N.WRITE.res,
    { status: Nfs3Status.OK, wcc: { before: undefined, after: undefined }, count: 3, committed: StableHow.UNSTABLE, verf: hex('0102030405060708') },
    hex('00000000  00000000 00000000  00000003  00000000  01020304 05060708'),
  );
  vector(N.WRITE.res, { status: Nfs3Status.NOSPC, wcc: { before: undefined, after: undefined } }, hex('0000001c 00000000 00000000'));
});

const WHERE = { dir: FH4, name: 'a' };
const WHERE_HEX = `${FH4_HEX} 00000001 61000000`;

test('CREATE3args UNCHECKED: createhow3 mode 0 then sattr3 (§3.3.8)', { timeout: 60_000 }, () => {
  vector(
    N.CREATE.args,
    { where: WHERE, how: { mode: 'unchecked', attrs: { mode: 0o644 } } },
    hex(`${WHERE_HEX}  00000000  00000001 000001a4 00000000 00000000 00000000 00000000 00000000`),
  );
});

test('CREATE3args GUARDED: createhow3 mode 1 then sattr3 (§3.3.8)', { timeout: 60_000 }, () => {
  vector(
    N.CREATE.args,
    { where: WHERE, how: { mode: 'guarded', attrs: { size: 0 } } },
    hex(`${WHERE_HEX}  00000001  00000000 00000000 00000000 00000001 00000000 00000000 00000000 00000000`),
  );
});

test('CREATE3args EXCLUSIVE: createhow3 mode 2 then an 8-byte createverf3, no length word (§3.3.8)', { timeout: 60_000 }, () => {
  vector(
    N.CREATE.args,
    { where: WHERE, how: { mode: 'exclusive', verf: hex('a1a2a3a4a5a6a7a8') } },
    hex(`${WHERE_HEX}  00000002  a1a2a3a4 a5a6a7a8`),
  );
  assert.equal(CreateMode.EXCLUSIVE, 2);
  assert.throws(() => decodeAll(N.CREATE.args.dec, hex(`${WHERE_HEX} 00000003`)), XdrError);
});

test('CREATE3res: post_op_fh3, post_op_attr, dir_wcc; failure carries dir_wcc (§3.3.8)', { timeout: 60_000 }, () => {
  vector(
    N.CREATE.res,
    { status: Nfs3Status.OK, fh: FH4, attr: undefined, dirWcc: { before: undefined, after: undefined } },
    hex(`00000000  00000001 ${FH4_HEX}  00000000  00000000 00000000`),
  );
  vector(
    N.CREATE.res,
    { status: Nfs3Status.EXIST, dirWcc: { before: undefined, after: FA } },
    hex(`00000011  00000000 00000001 ${FA_HEX}`),
  );
});

test('SYMLINK3args: where, symlinkdata3 { attributes, data } (§3.3.10)', { timeout: 60_000 }, () => {
  vector(
    N.SYMLINK.args,
    { where: WHERE, attrs: {}, target: '/tmp' },
    hex(`${WHERE_HEX}  ${'00000000 '.repeat(6)}  00000004 2f746d70`),
  );
});

test('MKNOD3args: mknoddata3 switches on ftype3 (§3.3.11)', { timeout: 60_000 }, () => {
  vector(
    N.MKNOD.args,
    { where: WHERE, what: { type: FType.CHR, attrs: {}, rdev: { major: 1, minor: 3 } } },
    hex(`${WHERE_HEX}  00000004  ${'00000000 '.repeat(6)}  00000001 00000003`),
  );
  vector(N.MKNOD.args, { where: WHERE, what: { type: FType.FIFO, attrs: {} } }, hex(`${WHERE_HEX}  00000007  ${'00000000 '.repeat(6)}`));
  vector(N.MKNOD.args, { where: WHERE, what: { type: FType.REG } }, hex(`${WHERE_HEX}  00000001`));
  assert.throws(() => decodeAll(N.MKNOD.args.dec, hex(`${WHERE_HEX} 00000008`)), XdrError);
});

test('RENAME3res: fromdir_wcc and todir_wcc, in success and failure (§3.3.14)', { timeout: 60_000 }, () => {
  const empty = { before: undefined, after: undefined };
  vector(N.RENAME.res, { status: Nfs3Status.OK, fromWcc: empty, toWcc: empty }, hex('00000000 00000000 00000000 00000000 00000000'));
  vector(N.RENAME.res, { status: Nfs3Status.XDEV, fromWcc: empty, toWcc: empty }, hex('00000012 00000000 00000000 00000000 00000000'));
});

test('LINK3args: file, then diropargs3 link (§3.3.15)', { timeout: 60_000 }, () => {
  vector(N.LINK.args, { fh: FH, link: WHERE }, hex(`${FH_HEX} ${WHERE_HEX}`));
});

test('READDIR3args: dir, cookie, cookieverf, count (§3.3.16)', { timeout: 60_000 }, () => {
  vector(
    N.READDIR.args,
    { dir: FH4, cookie: 2n ** 63n + 7n, verf: hex('0000000000000000'), count: 4096 },
    hex(`${FH4_HEX}  80000000 00000007  00000000 00000000  00001000`),
  );
});

test('READDIR3resok: entry3 list via value_follows booleans, then eof (§3.3.16)', { timeout: 60_000 }, () => {
  vector(
    N.READDIR.res,
    {
      status: Nfs3Status.OK,
      dirAttr: undefined,
      verf: hex('aabbccddeeff0011'),
      entries: [
        { fileid: 2n, name: '.', cookie: 1n },
        { fileid: 2n ** 32n + 1n, name: 'file', cookie: 2n },
      ],
      eof: true,
    },
    hex(`
      00000000            # status NFS3_OK
      00000000            # dir_attributes: attributes_follow FALSE
      aabbccdd eeff0011   # cookieverf
      00000001            # entries: value follows
      00000000 00000002   #   fileid
      00000001 2e000000   #   name "."
      00000000 00000001   #   cookie
      00000001            #   nextentry: value follows
      00000001 00000001   #   fileid
      00000004 66696c65   #   name "file"
      00000000 00000002   #   cookie
      00000000            #   nextentry: none
      00000001            # eof TRUE
    `),
  );
});

test('READDIR3resok with no entries, and READDIR3resfail', { timeout: 60_000 }, () => {
  vector(
    N.READDIR.res,
    { status: Nfs3Status.OK, dirAttr: undefined, verf: Buffer.alloc(8), entries: [], eof: true },
    hex('00000000 00000000 00000000 00000000 00000000 00000001'),
  );
  vector(N.READDIR.res, { status: Nfs3Status.BAD_COOKIE, dirAttr: undefined }, hex('00002713 00000000'));
});

test('READDIRPLUS3args: dir, cookie, cookieverf, dircount, maxcount (§3.3.17)', { timeout: 60_000 }, () => {
  vector(
    N.READDIRPLUS.args,
    { dir: FH4, cookie: 0n, verf: hex('0102030405060708'), dircount: 512, maxcount: 8192 },
    hex(`${FH4_HEX}  00000000 00000000  01020304 05060708  00000200  00002000`),
  );
});

test('READDIRPLUS3resok: entryplus3 with name_attributes and name_handle (§3.3.17)', { timeout: 60_000 }, () => {
  vector(
    N.READDIRPLUS.res,
    {
      status: Nfs3Status.OK,
      dirAttr: FA,
      verf: hex('0000000000000001'),
      entries: [
        { fileid: 5n, name: 'ab', cookie: 10n, attr: FA, fh: FH4 },
        { fileid: 6n, name: 'cde', cookie: 11n, attr: undefined, fh: undefined },
      ],
      eof: false,
    },
    hex(`
      00000000                # status NFS3_OK
      00000001 ${FA_HEX}      # dir_attributes
      00000000 00000001       # cookieverf
      00000001                # value follows
      00000000 00000005       #   fileid
      00000002 61620000       #   name "ab"
      00000000 0000000a       #   cookie
      00000001 ${FA_HEX}      #   name_attributes
      00000001 ${FH4_HEX}     #   name_handle
      00000001                # value follows
      00000000 00000006       #   fileid
      00000003 63646500       #   name "cde"
      00000000 0000000b       #   cookie
      00000000                #   name_attributes absent
      00000000                #   name_handle absent
      00000000                # no more entries
      00000000                # eof FALSE
    `),
  );
});

test('readdirEntrySize / readdirplusEntrySize match the encoded entry sizes', { timeout: 60_000 }, () => {
  const base = { status: Nfs3Status.OK, dirAttr: undefined, verf: Buffer.alloc(8), eof: true } as const;
  for (const name of ['', '.', 'ab', 'abc', 'abcd', 'é', 'x'.repeat(255)]) {
    const e = { fileid: 1n, name, cookie: 1n };
    const one = encode(N.READDIR.res.enc, { ...base, entries: [e] }).length;
    const none = encode(N.READDIR.res.enc, { ...base, entries: [] }).length;
    assert.equal(one - none, N.readdirEntrySize(name), `READDIR "${name}"`);
    for (const fh of [FH4, FH, hex('aabbcc')]) {
      const p = { ...e, attr: FA, fh };
      const onePlus = encode(N.READDIRPLUS.res.enc, { ...base, entries: [p] }).length;
      const nonePlus = encode(N.READDIRPLUS.res.enc, { ...base, entries: [] }).length;
      assert.equal(onePlus - nonePlus, N.readdirplusEntrySize(name, fh.length), `READDIRPLUS "${name}" fh ${fh.length}`);
    }
  }
});

test('FSSTAT3resok: attributes, six size3 counters, invarsec (§3.3.18)', { timeout: 60_000 }, () => {
  vector(
    N.FSSTAT.res,
    { status: Nfs3Status.OK, attr: undefined, tbytes: 2 ** 40, fbytes: 2 ** 39, abytes: 2 ** 38, tfiles: 1000, ffiles: 900, afiles: 800, invarsec: 0 },
    hex(`00000000 00000000  00000100 00000000  00000080 00000000  00000040 00000000
         00000000 000003e8  00000000 00000384  00000000 00000320  00000000`),
  );
});

test('FSINFO3resok: rt*/wt*/dtpref, maxfilesize, time_delta, properties (§3.3.19)', { timeout: 60_000 }, () => {
  vector(
    N.FSINFO.res,
    {
      status: Nfs3Status.OK,
      attr: undefined,
      rtmax: 1 << 20,
      rtpref: 1 << 16,
      rtmult: 4096,
      wtmax: 1 << 20,
      wtpref: 1 << 16,
      wtmult: 4096,
      dtpref: 8192,
      maxfilesize: 2 ** 40,
      timeDelta: { sec: 0, nsec: 1 },
      properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
    },
    hex(`
      00000000            # status NFS3_OK
      00000000            # obj_attributes absent
      00100000            # rtmax
      00010000            # rtpref
      00001000            # rtmult
      00100000            # wtmax
      00010000            # wtpref
      00001000            # wtmult
      00002000            # dtpref
      00000100 00000000   # maxfilesize 2^40
      00000000 00000001   # time_delta { 0 s, 1 ns }
      0000001b            # properties LINK | SYMLINK | HOMOGENEOUS | CANSETTIME
    `),
  );
});

test('PATHCONF3resok: linkmax, name_max and four booleans (§3.3.20)', { timeout: 60_000 }, () => {
  vector(
    N.PATHCONF.res,
    { status: Nfs3Status.OK, attr: undefined, linkmax: 32000, nameMax: 255, noTrunc: true, chownRestricted: true, caseInsensitive: false, casePreserving: true },
    hex('00000000 00000000 00007d00 000000ff 00000001 00000001 00000000 00000001'),
  );
});

test('COMMIT3args and COMMIT3resok (§3.3.21)', { timeout: 60_000 }, () => {
  vector(N.COMMIT.args, { fh: FH4, offset: 0, count: 0 }, hex(`${FH4_HEX} 00000000 00000000 00000000`));
  vector(
    N.COMMIT.res,
    { status: Nfs3Status.OK, wcc: { before: undefined, after: undefined }, verf: hex('1122334455667788') },
    hex('00000000 00000000 00000000 11223344 55667788'),
  );
});

test('decoders reject truncated procedure bodies', { timeout: 60_000 }, () => {
  const full = encode(N.READDIRPLUS.res.enc, {
    status: Nfs3Status.OK,
    dirAttr: FA,
    verf: Buffer.alloc(8),
    entries: [{ fileid: 1n, name: 'x', cookie: 1n, attr: FA, fh: FH }],
    eof: true,
  });
  for (let n = 0; n < full.length; n += 4) {
    assert.throws(() => N.READDIRPLUS.res.dec(new XdrReader(full.subarray(0, n))), XdrError, `prefix ${n}`);
  }
});

// ---------- property: every procedure's args and res round-trip ----------

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const size = fc.maxSafeNat(); // size3/offset3 as JS numbers: exact up to 2^53 - 1
const big = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }); // fileid3, cookie3, fsid
const buf = (c: { minLength?: number; maxLength: number }) => fc.uint8Array(c).map((a) => Buffer.from(a));
const fh = buf({ maxLength: 64 });
const verf = buf({ minLength: 8, maxLength: 8 });
const name = fc.string({ unit: 'grapheme', maxLength: 12 }).filter((s) => Buffer.byteLength(s) <= 255);
const path = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => Buffer.byteLength(s) <= 4096);
// Mostly small, sometimes past the writer's zero-copy threshold (8192 bytes).
const data = fc.oneof({ arbitrary: buf({ maxLength: 64 }), weight: 9 }, { arbitrary: fc.integer({ min: 8190, max: 8200 }).map((n) => Buffer.alloc(n, n & 0xff)), weight: 1 });
const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
/** fc.record with plain prototypes (decoded values are plain objects; deepEqual compares prototypes). */
const rec = <T,>(m: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> => fc.record(m, { noNullPrototype: true }) as fc.Arbitrary<T>;

const time = rec({ sec: u32, nsec: u32 });
const ftype = fc.constantFrom(FType.REG, FType.DIR, FType.BLK, FType.CHR, FType.LNK, FType.SOCK, FType.FIFO);
const fattr: fc.Arbitrary<Fattr3> = rec({
  type: ftype,
  mode: u32,
  nlink: u32,
  uid: u32,
  gid: u32,
  size,
  used: size,
  rdev: rec({ major: u32, minor: u32 }),
  fsid: big,
  fileid: big,
  atime: time,
  mtime: time,
  ctime: time,
});
const attr = opt(fattr);
const wcc = rec({ before: opt(rec({ size, mtime: time, ctime: time })), after: attr });
const setTime = fc.oneof(fc.constant('server' as const), time);
const sattr = fc.record({ mode: u32, uid: u32, gid: u32, size, atime: setTime, mtime: setTime }, { requiredKeys: [], noNullPrototype: true });
const dirop = rec({ dir: fh, name });
const stable = fc.constantFrom(StableHow.UNSTABLE, StableHow.DATA_SYNC, StableHow.FILE_SYNC);
const newObj = rec({ fh: opt(fh), attr, dirWcc: wcc });
const dirWcc = rec({ dirWcc: wcc });
const attrOnly = rec({ attr });
const dirAttrOnly = rec({ dirAttr: attr });

const FAIL_STATUSES = [1, 2, 5, 6, 13, 17, 18, 19, 20, 21, 22, 27, 28, 30, 31, 63, 66, 69, 70, 71, 10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008];
/** A result: NFS3_OK with its resok body, or any failure status with the resfail body. */
function res<Ok extends object, Fail extends object>(ok: fc.Arbitrary<Ok>, fail: fc.Arbitrary<Fail>): fc.Arbitrary<Res<Ok, Fail>> {
  return fc.oneof(
    ok.map((v) => ({ status: Nfs3Status.OK, ...v }) as unknown as Res<Ok, Fail>),
    fc.tuple(fc.constantFrom(...FAIL_STATUSES), fail).map(([status, v]) => ({ status, ...v }) as unknown as Res<Ok, Fail>),
  );
}

function roundTrip<T>(label: string, codec: N.Codec<T>, arb: fc.Arbitrary<T>): void {
  test(`property: ${label} round-trips`, () => {
    fc.assert(
      fc.property(arb, (v) => {
        const bytes = encode(codec.enc, v);
        assert.equal(bytes.length % 4, 0, 'XDR output is a whole number of words');
        const back = decodeAll(codec.dec, bytes);
        assert.deepEqual(back, v);
        assert.deepEqual(encode(codec.enc, back), bytes);
      }),
      { numRuns: 200 },
    );
  });
}

roundTrip('fattr3', N.fattr3, fattr);
roundTrip('sattr3', N.sattr3, sattr);
roundTrip('wcc_data', N.wccData, wcc);

roundTrip('GETATTR args', N.GETATTR.args, rec({ fh }));
roundTrip('GETATTR res', N.GETATTR.res, res(rec({ attr: fattr }), fc.constant({})));
roundTrip('SETATTR args', N.SETATTR.args, rec({ fh, attrs: sattr, guard: opt(time) }));
roundTrip('SETATTR res', N.SETATTR.res, res(rec({ wcc }), rec({ wcc })));
roundTrip('LOOKUP args', N.LOOKUP.args, dirop);
roundTrip('LOOKUP res', N.LOOKUP.res, res(rec({ fh, attr, dirAttr: attr }), dirAttrOnly));
roundTrip('ACCESS args', N.ACCESS.args, rec({ fh, access: u32 }));
roundTrip('ACCESS res', N.ACCESS.res, res(rec({ attr, access: u32 }), attrOnly));
roundTrip('READLINK args', N.READLINK.args, rec({ fh }));
roundTrip('READLINK res', N.READLINK.res, res(rec({ attr, path }), attrOnly));
roundTrip('READ args', N.READ.args, rec({ fh, offset: size, count: u32 }));
roundTrip(
  'READ res',
  N.READ.res,
  res(
    fc.tuple(attr, fc.boolean(), data).map(([attr, eof, data]) => ({ attr, count: data.length, eof, data })),
    attrOnly,
  ),
);
roundTrip('WRITE args', N.WRITE.args, rec({ fh, offset: size, stable, data }));
roundTrip('WRITE res', N.WRITE.res, res(rec({ wcc, count: u32, committed: stable, verf }), rec({ wcc })));
roundTrip(
  'CREATE args',
  N.CREATE.args,
  rec({
    where: dirop,
    how: fc.oneof(
      rec({ mode: fc.constantFrom('unchecked' as const, 'guarded' as const), attrs: sattr }),
      rec({ mode: fc.constant('exclusive' as const), verf }),
    ),
  }),
);
roundTrip('CREATE res', N.CREATE.res, res(newObj, dirWcc));
roundTrip('MKDIR args', N.MKDIR.args, rec({ where: dirop, attrs: sattr }));
roundTrip('MKDIR res', N.MKDIR.res, res(newObj, dirWcc));
roundTrip('SYMLINK args', N.SYMLINK.args, rec({ where: dirop, attrs: sattr, target: path }));
roundTrip('SYMLINK res', N.SYMLINK.res, res(newObj, dirWcc));
roundTrip(
  'MKNOD args',
  N.MKNOD.args,
  rec({
    where: dirop,
    what: fc.oneof(
      rec({ type: fc.constantFrom(FType.CHR as const, FType.BLK as const), attrs: sattr, rdev: rec({ major: u32, minor: u32 }) }),
      rec({ type: fc.constantFrom(FType.SOCK as const, FType.FIFO as const), attrs: sattr }),
      rec({ type: fc.constantFrom(FType.REG as const, FType.DIR as const, FType.LNK as const) }),
    ),
  }),
);
roundTrip('MKNOD res', N.MKNOD.res, res(newObj, dirWcc));
roundTrip('REMOVE args', N.REMOVE.args, dirop);
roundTrip('REMOVE res', N.REMOVE.res, res(dirWcc, dirWcc));
roundTrip('RMDIR args', N.RMDIR.args, dirop);
roundTrip('RMDIR res', N.RMDIR.res, res(dirWcc, dirWcc));
roundTrip('RENAME args', N.RENAME.args, rec({ from: dirop, to: dirop }));
roundTrip('RENAME res', N.RENAME.res, res(rec({ fromWcc: wcc, toWcc: wcc }), rec({ fromWcc: wcc, toWcc: wcc })));
roundTrip('LINK args', N.LINK.args, rec({ fh, link: dirop }));
roundTrip('LINK res', N.LINK.res, res(rec({ attr, dirWcc: wcc }), rec({ attr, dirWcc: wcc })));
roundTrip('READDIR args', N.READDIR.args, rec({ dir: fh, cookie: big, verf, count: u32 }));
roundTrip(
  'READDIR res',
  N.READDIR.res,
  res(rec({ dirAttr: attr, verf, entries: fc.array(rec({ fileid: big, name, cookie: big }), { maxLength: 8 }), eof: fc.boolean() }), dirAttrOnly),
);
roundTrip('READDIRPLUS args', N.READDIRPLUS.args, rec({ dir: fh, cookie: big, verf, dircount: u32, maxcount: u32 }));
roundTrip(
  'READDIRPLUS res',
  N.READDIRPLUS.res,
  res(
    rec({
      dirAttr: attr,
      verf,
      entries: fc.array(rec({ fileid: big, name, cookie: big, attr, fh: opt(fh) }), { maxLength: 6 }),
      eof: fc.boolean(),
    }),
    dirAttrOnly,
  ),
);
roundTrip('FSSTAT args', N.FSSTAT.args, rec({ fh }));
roundTrip(
  'FSSTAT res',
  N.FSSTAT.res,
  res(rec({ attr, tbytes: size, fbytes: size, abytes: size, tfiles: size, ffiles: size, afiles: size, invarsec: u32 }), attrOnly),
);
roundTrip('FSINFO args', N.FSINFO.args, rec({ fh }));
roundTrip(
  'FSINFO res',
  N.FSINFO.res,
  res(
    rec({
      attr,
      rtmax: u32,
      rtpref: u32,
      rtmult: u32,
      wtmax: u32,
      wtpref: u32,
      wtmult: u32,
      dtpref: u32,
      maxfilesize: size,
      timeDelta: time,
      properties: u32,
    }),
    attrOnly,
  ),
);
roundTrip('PATHCONF args', N.PATHCONF.args, rec({ fh }));
roundTrip(
  'PATHCONF res',
  N.PATHCONF.res,
  res(
    rec({ attr, linkmax: u32, nameMax: u32, noTrunc: fc.boolean(), chownRestricted: fc.boolean(), caseInsensitive: fc.boolean(), casePreserving: fc.boolean() }),
    attrOnly,
  ),
);
roundTrip('COMMIT args', N.COMMIT.args, rec({ fh, offset: size, count: u32 }));
roundTrip('COMMIT res', N.COMMIT.res, res(rec({ wcc, verf }), rec({ wcc })));
