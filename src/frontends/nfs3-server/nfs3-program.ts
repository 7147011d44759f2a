import type { Backend } from '../../backend/backend.js';
import * as X from '../../nfs3/codec.js';
import { NFS_PROGRAM, NFS_V3 } from '../../nfs3/constants.js';
import type { Procedure, ProgramVersion } from '../../rpc/program.js';
import { VOID } from '../../rpc/program.js';
import { attrBody, dirAttrBody, dirWccBody, noBody, reply, wccBody } from './reply.js';

type Codecs = { args: X.Codec<any>; res: X.Codec<any> };

/** One row of the NFSv3 table: codecs from nfs3/codec.ts, a handler, and the flags. */
function row<C extends Codecs>(name: string, c: C, idempotent: boolean, handle: (a: ReturnType<C['args']['dec']>, ctx: Parameters<Procedure['handle']>[1]) => Promise<ReturnType<C['res']['dec']>>): Procedure {
  return { name, decode: c.args.dec, encode: c.res.enc, handle, idempotent, needsCred: true };
}

/**
 * The NFSv3 program (RFC 1813) over any backend: each row decodes with the
 * shared codec, calls the backend with the caller's credentials, and shapes
 * the result. Rows marked non-idempotent go through the server's
 * duplicate-request cache.
 */
export function nfs3Program(b: Backend): ProgramVersion {
  const procedures: Procedure[] = [
    { name: 'NULL', ...VOID, handle: () => undefined, idempotent: true, public: true },
    row('GETATTR', X.GETATTR, true, (a, { cred }) => reply('GETATTR', async () => ({ attr: await b.getattr(cred, a.fh) }), noBody)),
    row('SETATTR', X.SETATTR, false, (a, { cred }) => reply('SETATTR', async () => ({ wcc: await b.setattr(cred, a.fh, a.attrs, a.guard) }), wccBody)),
    row('LOOKUP', X.LOOKUP, true, (a, { cred }) => reply('LOOKUP', () => b.lookup(cred, a.dir, a.name), dirAttrBody)),
    row('ACCESS', X.ACCESS, true, (a, { cred }) => reply('ACCESS', () => b.access(cred, a.fh, a.access), attrBody)),
    row('READLINK', X.READLINK, true, (a, { cred }) => reply('READLINK', () => b.readlink(cred, a.fh), attrBody)),
    row('READ', X.READ, true, (a, { cred }) => reply('READ', () => b.read(cred, a.fh, a.offset, a.count), attrBody)),
    row('WRITE', X.WRITE, false, (a, { cred }) => reply('WRITE', () => b.write(cred, a.fh, a.offset, a.data, a.stable), wccBody)),
    row('CREATE', X.CREATE, false, (a, { cred }) => reply('CREATE', () => b.create(cred, a.where.dir, a.where.name, a.how), dirWccBody)),
    row('MKDIR', X.MKDIR, false, (a, { cred }) => reply('MKDIR', () => b.mkdir(cred, a.where.dir, a.where.name, a.attrs), dirWccBody)),
    row('SYMLINK', X.SYMLINK, false, (a, { cred }) => reply('SYMLINK', () => b.symlink(cred, a.where.dir, a.where.name, a.target, a.attrs), dirWccBody)),
    row('MKNOD', X.MKNOD, false, (a, { cred }) => reply('MKNOD', () => b.mknod(cred, a.where.dir, a.where.name, a.what), dirWccBody)),
    row('REMOVE', X.REMOVE, false, (a, { cred }) => reply('REMOVE', async () => ({ dirWcc: await b.remove(cred, a.dir, a.name) }), dirWccBody)),
    row('RMDIR', X.RMDIR, false, (a, { cred }) => reply('RMDIR', async () => ({ dirWcc: await b.rmdir(cred, a.dir, a.name) }), dirWccBody)),
    row('RENAME', X.RENAME, false, (a, { cred }) =>
      reply('RENAME', () => b.rename(cred, a.from.dir, a.from.name, a.to.dir, a.to.name), (e) => ({ fromWcc: e.wcc ?? {}, toWcc: e.wcc2 ?? {} })),
    ),
    row('LINK', X.LINK, false, (a, { cred }) => reply('LINK', () => b.link(cred, a.fh, a.link.dir, a.link.name), (e) => ({ attr: e.attr, dirWcc: e.wcc ?? {} }))),
    row('READDIR', X.READDIR, true, (a, { cred }) => reply('READDIR', () => b.readdir(cred, a.dir, a.cookie, a.verf, a.count), dirAttrBody)),
    row('READDIRPLUS', X.READDIRPLUS, true, (a, { cred }) =>
      reply('READDIRPLUS', () => b.readdirplus(cred, a.dir, a.cookie, a.verf, a.dircount, a.maxcount), dirAttrBody),
    ),
    row('FSSTAT', X.FSSTAT, true, (a, { cred }) => reply('FSSTAT', () => b.fsstat(cred, a.fh), attrBody)),
    row('FSINFO', X.FSINFO, true, (a, { cred }) => reply('FSINFO', () => b.fsinfo(cred, a.fh), attrBody)),
    row('PATHCONF', X.PATHCONF, true, (a, { cred }) => reply('PATHCONF', () => b.pathconf(cred, a.fh), attrBody)),
    row('COMMIT', X.COMMIT, true, (a, { cred }) => reply('COMMIT', () => b.commit(cred, a.fh, a.offset, a.count), wccBody)),
  ];
  return { prog: NFS_PROGRAM, vers: NFS_V3, name: 'nfs3', procedures };
}
