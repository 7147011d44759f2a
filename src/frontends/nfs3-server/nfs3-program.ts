import type { Backend } from '../../backend/backend.js';
import { readIntoOf, writeKeepsNoArgs } from '../../backend/capabilities.js';
import { FsError } from '../../backend/errors.js';
import * as X from '../../nfs3/codec.js';
import { ACCESS3_DELETE, ACCESS3_EXTEND, ACCESS3_MODIFY, FSF3_CANSETTIME, NFS_PROGRAM, NFS_V3 } from '../../nfs3/constants.js';
import { STATUS_OF } from '../../nfs3/status.js';
import type { Procedure, ProgramVersion } from '../../rpc/program.js';
import { VOID } from '../../rpc/program.js';
import { BufferPool } from '../../util/buffer-pool.js';
import { readOnlyRefusal, type GuardedProcedure, type ReadOnlyPolicy } from './read-only.js';
import { attrBody, dirAttrBody, dirWccBody, noBody, reply, wccBody } from './reply.js';

type Codecs = { args: X.Codec<any>; res: X.Codec<any> };
type Args<C extends Codecs> = ReturnType<C['args']['dec']>;
type Ctx = Parameters<Procedure['handle']>[1];

/**
 * One row of the NFSv3 table: codecs from nfs3/codec.ts, what the backend
 * does, the failure body, and the flags. A mutating row names the handles it
 * changes (`writes`): the front end refuses it on a read-only export with
 * NFS3ERR_ROFS and the row's own failure body (read-only.ts).
 */
function row<C extends Codecs, Ok extends object, Fail extends object>(
  name: string,
  c: C,
  flags: { idempotent: boolean; writes?: (a: Args<C>) => Buffer[]; lendsArgs?: boolean },
  run: (a: Args<C>, ctx: Ctx) => Promise<Ok>,
  failBody: (e: FsError) => Fail,
): GuardedProcedure {
  return {
    name,
    decode: c.args.dec,
    encode: c.res.enc,
    handle: (a: Args<C>, ctx: Ctx) => reply(name, () => run(a, ctx), failBody),
    idempotent: flags.idempotent,
    lendsArgs: flags.lendsArgs,
    needsCred: true,
    mutating: !!flags.writes,
    target: flags.writes && { handles: flags.writes, refused: (_a: Args<C>, e: FsError) => ({ status: STATUS_OF[e.code], ...failBody(e) }) },
  };
}

/**
 * READ buffers of this size and up come from a pool and go back to it once
 * the reply is on the socket (util/buffer-pool.ts: a fresh buffer's page
 * faults were most of a 1 MiB READ's time); up to POOL_HELD_BYTES of free
 * ones are kept per program instance.
 */
const POOLED_READ_MIN = 32 * 1024;
const POOLED_READ_MAX = 1 << 20;
const POOL_HELD_BYTES = 16 << 20;

/** What ACCESS may grant on a read-only export: nothing that changes the file or directory. */
const WRITE_BITS = ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;

/**
 * The NFSv3 program (RFC 1813) over any backend: each row decodes with the
 * shared codec, calls the backend with the caller's credentials, and shapes
 * the result. Rows marked non-idempotent go through the server's
 * duplicate-request cache; rows that change something are flagged mutating.
 * With `readOnly`, ACCESS never grants MODIFY/EXTEND/DELETE and FSINFO
 * clears FSF3_CANSETTIME on a read-only export (NFSv3 has no "read-only"
 * bit in FSINFO or PATHCONF: that is all it can say before a write is
 * refused).
 */
export function nfs3Program(b: Backend, readOnly?: ReadOnlyPolicy): ProgramVersion {
  const ro = async (fh: Buffer, cred: Ctx['cred']) => !!readOnly && (await readOnlyRefusal(readOnly, [fh], cred)) !== undefined;
  const R = { idempotent: true };
  // Only a backend that declares ReadInto reads into our buffers; any other READ allocates its own.
  const into = readIntoOf(b);
  const pool = into && new BufferPool(POOLED_READ_MIN, POOLED_READ_MAX, POOL_HELD_BYTES);
  const read = async (a: { fh: Buffer; offset: number; count: number }, ctx: Ctx) => {
    const buf = pool?.take(a.count);
    if (!buf) {
      const r = await b.read(ctx.cred, a.fh, a.offset, a.count);
      // Its data lent from below (a proxy's pooled reply record): given back once this reply has left.
      if (r.release) ctx.sent = r.release;
      return r;
    }
    try {
      const r = await into!.readInto(ctx.cred, a.fh, a.offset, buf);
      ctx.sent = () => pool!.give(buf);
      return r;
    } catch (e) {
      pool!.give(buf);
      throw e;
    }
  };
  const procedures: Procedure[] = [
    { name: 'NULL', ...VOID, handle: () => undefined, idempotent: true, public: true },
    row('GETATTR', X.GETATTR, R, async (a, { cred }) => ({ attr: await b.getattr(cred, a.fh) }), noBody),
    row('SETATTR', X.SETATTR, { idempotent: false, writes: (a) => [a.fh] }, async (a, { cred }) => ({ wcc: await b.setattr(cred, a.fh, a.attrs, a.guard) }), wccBody),
    row('LOOKUP', X.LOOKUP, R, (a, { cred }) => b.lookup(cred, a.dir, a.name), dirAttrBody),
    row(
      'ACCESS',
      X.ACCESS,
      R,
      async (a, { cred }) => {
        const r = await b.access(cred, a.fh, a.access);
        return (await ro(a.fh, cred)) ? { ...r, access: r.access & ~WRITE_BITS } : r;
      },
      attrBody,
    ),
    row('READLINK', X.READLINK, R, (a, { cred }) => b.readlink(cred, a.fh), attrBody),
    row('READ', X.READ, R, read, attrBody),
    // The read-only guard reads the handle during the call only; the record is free once the backend is done.
    row('WRITE', X.WRITE, { idempotent: false, writes: (a) => [a.fh], lendsArgs: writeKeepsNoArgs(b) }, (a, { cred }) => b.write(cred, a.fh, a.offset, a.data, a.stable), wccBody),
    row('CREATE', X.CREATE, { idempotent: false, writes: (a) => [a.where.dir] }, (a, { cred }) => b.create(cred, a.where.dir, a.where.name, a.how), dirWccBody),
    row('MKDIR', X.MKDIR, { idempotent: false, writes: (a) => [a.where.dir] }, (a, { cred }) => b.mkdir(cred, a.where.dir, a.where.name, a.attrs), dirWccBody),
    row('SYMLINK', X.SYMLINK, { idempotent: false, writes: (a) => [a.where.dir] }, (a, { cred }) => b.symlink(cred, a.where.dir, a.where.name, a.target, a.attrs), dirWccBody),
    row('MKNOD', X.MKNOD, { idempotent: false, writes: (a) => [a.where.dir] }, (a, { cred }) => b.mknod(cred, a.where.dir, a.where.name, a.what), dirWccBody),
    row('REMOVE', X.REMOVE, { idempotent: false, writes: (a) => [a.dir] }, async (a, { cred }) => ({ dirWcc: await b.remove(cred, a.dir, a.name) }), dirWccBody),
    row('RMDIR', X.RMDIR, { idempotent: false, writes: (a) => [a.dir] }, async (a, { cred }) => ({ dirWcc: await b.rmdir(cred, a.dir, a.name) }), dirWccBody),
    row(
      'RENAME',
      X.RENAME,
      { idempotent: false, writes: (a) => [a.from.dir, a.to.dir] },
      (a, { cred }) => b.rename(cred, a.from.dir, a.from.name, a.to.dir, a.to.name),
      (e) => ({ fromWcc: e.wcc ?? {}, toWcc: e.wcc2 ?? {} }),
    ),
    // LINK changes the file's link count as well as the directory.
    row('LINK', X.LINK, { idempotent: false, writes: (a) => [a.fh, a.link.dir] }, (a, { cred }) => b.link(cred, a.fh, a.link.dir, a.link.name), (e) => ({ attr: e.attr, dirWcc: e.wcc ?? {} })),
    row('READDIR', X.READDIR, R, (a, { cred }) => b.readdir(cred, a.dir, a.cookie, a.verf, a.count), dirAttrBody),
    row('READDIRPLUS', X.READDIRPLUS, R, (a, { cred }) => b.readdirplus(cred, a.dir, a.cookie, a.verf, a.dircount, a.maxcount), dirAttrBody),
    row('FSSTAT', X.FSSTAT, R, (a, { cred }) => b.fsstat(cred, a.fh), attrBody),
    row(
      'FSINFO',
      X.FSINFO,
      R,
      async (a, { cred }) => {
        const r = await b.fsinfo(cred, a.fh);
        return (await ro(a.fh, cred)) ? { ...r, properties: r.properties & ~FSF3_CANSETTIME } : r;
      },
      attrBody,
    ),
    row('PATHCONF', X.PATHCONF, R, (a, { cred }) => b.pathconf(cred, a.fh), attrBody),
    // COMMIT is idempotent (no duplicate-request cache) but still a write: it makes unstable data durable.
    row('COMMIT', X.COMMIT, { idempotent: true, writes: (a) => [a.fh] }, (a, { cred }) => b.commit(cred, a.fh, a.offset, a.count), wccBody),
  ];
  return { prog: NFS_PROGRAM, vers: NFS_V3, name: 'nfs3', procedures };
}
