import { proveSession } from '../../src/channel/prove.js';
import type { SessionKey } from '../../src/channel/session-key.js';
import { dirpath, mntres, MOUNT_PROGRAM, MOUNT_V3, MountProc, MountStat } from '../../src/mount3/codec.js';
import * as X from '../../src/nfs3/codec.js';
import { FType, NFS_PROGRAM, NFS_V3, Nfs3Status, Proc, StableHow } from '../../src/nfs3/constants.js';
import type { Fattr3, Sattr3 } from '../../src/nfs3/types.js';
import { encodeAuthSys } from '../../src/rpc/auth.js';
import type { OpaqueAuth } from '../../src/rpc/types.js';
import type { XdrReader, XdrWriter } from '../../src/xdr/index.js';
import { RawRpc } from '../helpers/raw-rpc.js';

/** An AUTH_SYS credential exactly as a hostile client would send it. */
export const sys = (uid: number, gid: number, gids: number[] = []): OpaqueAuth => encodeAuthSys({ stamp: 7, machine: 'hostile', uid, gid, gids });

/** NFS status names for assertion messages. */
const NAMES: Record<number, string> = { 0: 'OK', 1: 'PERM', 2: 'NOENT', 13: 'ACCES', 17: 'EXIST', 22: 'INVAL' };
export const statusName = (s: number): string => NAMES[s] ?? String(s);

/**
 * NFSv3 over a bare RawRpc socket: every argument is encoded as given (no
 * client-side filtering of sattr3), and the status comes back as the number
 * on the wire. On a keyed proxy server the connection proves the key first.
 */
export class RawNfs {
  private xid = 1000;

  private constructor(readonly rpc: RawRpc) {}

  static async connect(port: number, key?: SessionKey): Promise<RawNfs> {
    const n = new RawNfs(await RawRpc.connect(port));
    if (key) await proveSession((prog, vers, proc, enc, dec, o) => n.call(prog, vers, proc, enc, dec, o?.cred ?? sys(0, 0)), key);
    return n;
  }

  async call<R>(prog: number, vers: number, proc: number, enc: (w: XdrWriter) => void, dec: (r: XdrReader) => R, cred: OpaqueAuth): Promise<R> {
    const xid = this.xid++;
    this.rpc.sendRecord(RawRpc.call(xid, prog, vers, proc, enc, cred));
    const r = await this.rpc.reply(xid, 30_000);
    if (r.kind !== 'success') throw new Error(`RPC ${prog}/${proc} failed: ${JSON.stringify(r)}`);
    return dec(r.body);
  }

  private nfs<R>(proc: Proc, c: { args: X.Codec<any>; res: X.Codec<R> }, args: unknown, cred: OpaqueAuth): Promise<R> {
    return this.call(NFS_PROGRAM, NFS_V3, proc, (w) => c.args.enc(w, args), (r) => c.res.dec(r), cred);
  }

  async mount(path: string, cred: OpaqueAuth): Promise<Buffer> {
    const r = await this.call(MOUNT_PROGRAM, MOUNT_V3, MountProc.MNT, (w) => dirpath.enc(w, path), mntres.dec, cred);
    if (r.status !== MountStat.OK) throw new Error(`MNT ${path}: status ${r.status}`);
    return r.fh;
  }

  lookup(cred: OpaqueAuth, dir: Buffer, name: string) {
    return this.nfs(Proc.LOOKUP, X.LOOKUP, { dir, name }, cred);
  }
  getattr(cred: OpaqueAuth, fh: Buffer) {
    return this.nfs(Proc.GETATTR, X.GETATTR, { fh }, cred);
  }
  setattr(cred: OpaqueAuth, fh: Buffer, attrs: Sattr3) {
    return this.nfs(Proc.SETATTR, X.SETATTR, { fh, attrs, guard: undefined }, cred);
  }
  access(cred: OpaqueAuth, fh: Buffer, access: number) {
    return this.nfs(Proc.ACCESS, X.ACCESS, { fh, access }, cred);
  }
  read(cred: OpaqueAuth, fh: Buffer, offset = 0, count = 4096) {
    return this.nfs(Proc.READ, X.READ, { fh, offset, count }, cred);
  }
  write(cred: OpaqueAuth, fh: Buffer, data: Buffer, offset = 0) {
    return this.nfs(Proc.WRITE, X.WRITE, { fh, offset, stable: StableHow.FILE_SYNC, data }, cred);
  }
  create(cred: OpaqueAuth, dir: Buffer, name: string, attrs: Sattr3) {
    return this.nfs(Proc.CREATE, X.CREATE, { where: { dir, name }, how: { mode: 'guarded', attrs } }, cred);
  }
  mkdir(cred: OpaqueAuth, dir: Buffer, name: string, attrs: Sattr3) {
    return this.nfs(Proc.MKDIR, X.MKDIR, { where: { dir, name }, attrs }, cred);
  }
  symlink(cred: OpaqueAuth, dir: Buffer, name: string, target: string, attrs: Sattr3) {
    return this.nfs(Proc.SYMLINK, X.SYMLINK, { where: { dir, name }, attrs, target }, cred);
  }
  mkfifo(cred: OpaqueAuth, dir: Buffer, name: string, attrs: Sattr3) {
    return this.nfs(Proc.MKNOD, X.MKNOD, { where: { dir, name }, what: { type: FType.FIFO, attrs } }, cred);
  }

  link(cred: OpaqueAuth, fh: Buffer, dir: Buffer, name: string) {
    return this.nfs(Proc.LINK, X.LINK, { fh, link: { dir, name } }, cred);
  }

  /** The handle of `name` in `dir` (as root on the wire: lookups need only search permission anyway). */
  async fh(dir: Buffer, name: string, cred: OpaqueAuth): Promise<Buffer> {
    const r = await this.lookup(cred, dir, name);
    if (r.status !== Nfs3Status.OK) throw new Error(`LOOKUP ${name}: ${statusName(r.status)}`);
    return (r as { fh: Buffer }).fh;
  }

  close(): void {
    this.rpc.close();
  }
}

export type { Fattr3 };
