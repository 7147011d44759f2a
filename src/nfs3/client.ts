import type { CallOptions, RpcClient } from '../rpc/client.js';
import type { OpaqueAuth } from '../rpc/types.js';
import * as X from './codec.js';
import { NFS_PROGRAM, NFS_V3, Proc } from './constants.js';

type Args<C> = C extends { args: X.Codec<infer A> } ? A : never;
type Result<C> = C extends { res: X.Codec<infer R> } ? R : never;

/**
 * Typed NFSv3 stubs over an RpcClient: the raw layer (like libnfs's
 * rpc_nfs3_*). Each returns the procedure's result union as the server
 * sent it; the remote-NFS backend turns those into backend results/errors.
 */
export class Nfs3Client {
  constructor(readonly rpc: RpcClient) {}

  private call<C extends { args: X.Codec<any>; res: X.Codec<any> }>(proc: Proc, c: C, args: Args<C>, cred?: OpaqueAuth, lend?: CallOptions['lend']): Promise<Result<C>> {
    return this.rpc.call(NFS_PROGRAM, NFS_V3, proc, (w) => c.args.enc(w, args), (r) => c.res.dec(r), { cred, lend });
  }

  null(): Promise<void> {
    return this.rpc.call(NFS_PROGRAM, NFS_V3, Proc.NULL, () => undefined, () => undefined);
  }
  getattr(a: Args<typeof X.GETATTR>, cred?: OpaqueAuth) {
    return this.call(Proc.GETATTR, X.GETATTR, a, cred);
  }
  setattr(a: Args<typeof X.SETATTR>, cred?: OpaqueAuth) {
    return this.call(Proc.SETATTR, X.SETATTR, a, cred);
  }
  lookup(a: Args<typeof X.LOOKUP>, cred?: OpaqueAuth) {
    return this.call(Proc.LOOKUP, X.LOOKUP, a, cred);
  }
  access(a: Args<typeof X.ACCESS>, cred?: OpaqueAuth) {
    return this.call(Proc.ACCESS, X.ACCESS, a, cred);
  }
  readlink(a: Args<typeof X.READLINK>, cred?: OpaqueAuth) {
    return this.call(Proc.READLINK, X.READLINK, a, cred);
  }
  /** `lend`: see CallOptions.lend (the data may be a view of a pooled record: give it back once done). */
  read(a: Args<typeof X.READ>, cred?: OpaqueAuth, lend?: CallOptions['lend']) {
    return this.call(Proc.READ, X.READ, a, cred, lend);
  }
  write(a: Args<typeof X.WRITE>, cred?: OpaqueAuth) {
    return this.call(Proc.WRITE, X.WRITE, a, cred);
  }
  create(a: Args<typeof X.CREATE>, cred?: OpaqueAuth) {
    return this.call(Proc.CREATE, X.CREATE, a, cred);
  }
  mkdir(a: Args<typeof X.MKDIR>, cred?: OpaqueAuth) {
    return this.call(Proc.MKDIR, X.MKDIR, a, cred);
  }
  symlink(a: Args<typeof X.SYMLINK>, cred?: OpaqueAuth) {
    return this.call(Proc.SYMLINK, X.SYMLINK, a, cred);
  }
  mknod(a: Args<typeof X.MKNOD>, cred?: OpaqueAuth) {
    return this.call(Proc.MKNOD, X.MKNOD, a, cred);
  }
  remove(a: Args<typeof X.REMOVE>, cred?: OpaqueAuth) {
    return this.call(Proc.REMOVE, X.REMOVE, a, cred);
  }
  rmdir(a: Args<typeof X.RMDIR>, cred?: OpaqueAuth) {
    return this.call(Proc.RMDIR, X.RMDIR, a, cred);
  }
  rename(a: Args<typeof X.RENAME>, cred?: OpaqueAuth) {
    return this.call(Proc.RENAME, X.RENAME, a, cred);
  }
  link(a: Args<typeof X.LINK>, cred?: OpaqueAuth) {
    return this.call(Proc.LINK, X.LINK, a, cred);
  }
  readdir(a: Args<typeof X.READDIR>, cred?: OpaqueAuth) {
    return this.call(Proc.READDIR, X.READDIR, a, cred);
  }
  readdirplus(a: Args<typeof X.READDIRPLUS>, cred?: OpaqueAuth) {
    return this.call(Proc.READDIRPLUS, X.READDIRPLUS, a, cred);
  }
  fsstat(a: Args<typeof X.FSSTAT>, cred?: OpaqueAuth) {
    return this.call(Proc.FSSTAT, X.FSSTAT, a, cred);
  }
  fsinfo(a: Args<typeof X.FSINFO>, cred?: OpaqueAuth) {
    return this.call(Proc.FSINFO, X.FSINFO, a, cred);
  }
  pathconf(a: Args<typeof X.PATHCONF>, cred?: OpaqueAuth) {
    return this.call(Proc.PATHCONF, X.PATHCONF, a, cred);
  }
  commit(a: Args<typeof X.COMMIT>, cred?: OpaqueAuth) {
    return this.call(Proc.COMMIT, X.COMMIT, a, cred);
  }
}
