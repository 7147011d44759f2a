import { GVFS_PROGRAM, GVFS_V1 } from '../../ext/codec.js';
import type { XdrReader, XdrWriter } from '../../xdr/index.js';
import os from 'node:os';
import type { Backend, DirPage, ExportInfo, SourcedRead } from '../../backend/backend.js';
import { FsError } from '../../backend/errors.js';
import { Mount3Client } from '../../mount3/client.js';
import { MountStat } from '../../mount3/codec.js';
import { codeOfMountStatus, mountRefusal } from '../../mount3/status.js';
import { Nfs3Client } from '../../nfs3/client.js';
import { Nfs3Status, type StableHow } from '../../nfs3/constants.js';
import { codeOfStatus } from '../../nfs3/status.js';
import { resendableElsewhere } from '../../nfs3/retransmit.js';
import type {
  CreateHow,
  DirEntry,
  DirEntryPlus,
  Fattr3,
  FsInfo,
  FsStat,
  MknodType,
  NewObject,
  NfsTime,
  PathConf,
  Res,
  Sattr3,
  WccData,
  WriteResult,
} from '../../nfs3/types.js';
import { encodeAuthSys } from '../../rpc/auth.js';
import { RpcClient, type Dialer, tcpDialer } from '../../rpc/client.js';
import { AuthFlavor, type Credentials, type OpaqueAuth, RpcError } from '../../rpc/types.js';

export interface RemoteNfsOptions {
  host: string;
  port: number;
  /** MOUNT port when it differs from the NFS port (portmapper lookups are not done). */
  mountPort?: number;
  /** Custom transport (TLS, SSH channel); overrides host/port for NFS. */
  dial?: Dialer;
  /** Connections to spread calls over (each pipelined). */
  connections?: number;
  /** Calls in flight per connection. */
  maxInFlight?: number;
  /** Per-call deadline (ms): a dead server yields an error after this, never a hang. */
  timeoutMs?: number;
  onConnect?: ConstructorParameters<typeof RpcClient>[0]['onConnect'];
  /** Programs the server may call back over these connections (RpcClientOptions.callbacks). */
  callbacks?: ConstructorParameters<typeof RpcClient>[0]['callbacks'];
  /** Abandon a connection silent this long with calls outstanding (RpcClientOptions.stallMs; failover). */
  stallMs?: number;
}

/**
 * The remote-NFS backend: the backend interface spoken as NFSv3 + MOUNT v3
 * to any server (ours, nfs-ganesha, a kernel nfsd, a filer). Calls are
 * pipelined over one or more connections; dropped connections are re-dialled
 * and in-flight calls resent (see RpcClient). An NFS failure status becomes
 * an FsError carrying the server's failure body, so a proxy can pass it on
 * unchanged.
 */
export class RemoteNfs implements Backend {
  readonly clients: Nfs3Client[];
  private readonly mountClient: Mount3Client;
  private next = 0;
  private readonly creds = new Map<string, OpaqueAuth>();
  private readonly machine = os.hostname().slice(0, 255);

  constructor(readonly opts: RemoteNfsOptions) {
    const n = Math.max(1, opts.connections ?? 1);
    const dial = opts.dial ?? tcpDialer(opts.host, opts.port);
    this.clients = Array.from(
      { length: n },
      (_, i) =>
        new Nfs3Client(
          new RpcClient({ dial, maxInFlight: opts.maxInFlight ?? 32, timeoutMs: opts.timeoutMs ?? 60_000, name: `nfs ${opts.host}:${opts.port}#${i}`, onConnect: opts.onConnect, maxRecord: (1 << 20) + 64 * 1024, callbacks: opts.callbacks, stallMs: opts.stallMs, resendable: resendableElsewhere }),
        ),
    );
    const mdial = opts.mountPort && !opts.dial ? tcpDialer(opts.host, opts.mountPort) : dial;
    this.mountClient = new Mount3Client(
      opts.mountPort && opts.mountPort !== opts.port && !opts.dial
        ? new RpcClient({ dial: mdial, timeoutMs: opts.timeoutMs ?? 60_000, name: `mount ${opts.host}:${opts.mountPort}`, onConnect: opts.onConnect, stallMs: opts.stallMs })
        : this.clients[0].rpc,
    );
  }

  /** Counters summed over the connections (calls, resends, reconnects, bytes). */
  get stats(): RpcClient['stats'] {
    const s = { calls: 0, resends: 0, reconnects: 0, bytesOut: 0, bytesIn: 0, directBytesIn: 0, stalls: 0, notResent: 0 };
    for (const c of this.clients) for (const k of Object.keys(s) as Array<keyof typeof s>) s[k] += c.rpc.stats[k];
    return s;
  }

  /** A call to the GVFS extension program (ext/meta-client.ts) as `cred`, on the next connection. */
  ext<R>(proc: number, enc: (w: XdrWriter) => void, dec: (r: XdrReader) => R, cred: Credentials): Promise<R> {
    return this.nfs().rpc.call(GVFS_PROGRAM, GVFS_V1, proc, enc, dec, { cred: this.auth(cred) });
  }

  private nfs(): Nfs3Client {
    const c = this.clients[this.next];
    this.next = (this.next + 1) % this.clients.length;
    return c;
  }

  private auth(cred: Credentials): OpaqueAuth {
    if (cred.flavor === AuthFlavor.AUTH_NONE) return { flavor: AuthFlavor.AUTH_NONE, body: Buffer.alloc(0) };
    const key = `${cred.uid}:${cred.gid}:${cred.gids.join(',')}`;
    let a = this.creds.get(key);
    if (!a) {
      a = encodeAuthSys({ stamp: 0, machine: this.machine, uid: cred.uid, gid: cred.gid, gids: cred.gids });
      if (this.creds.size > 1024) this.creds.clear();
      this.creds.set(key, a);
    }
    return a;
  }

  /** OK → the resok body; failure → FsError with the failure body attached. */
  private async ok<Ok, Fail extends { attr?: Fattr3; dirAttr?: Fattr3; wcc?: WccData; dirWcc?: WccData; fromWcc?: WccData; toWcc?: WccData }>(
    what: string,
    p: Promise<Res<Ok, Fail>>,
  ): Promise<Ok> {
    let r: Res<Ok, Fail>;
    try {
      r = await p;
    } catch (e) {
      if (e instanceof RpcError) {
        // The server is unreachable or refused the call: not an NFS status, but callers need one.
        const code = e.kind === 'auth_error' ? 'ACCES' : e.kind === 'garbage_args' ? 'INVAL' : e.kind === 'proc_unavail' ? 'NOTSUPP' : 'IO';
        throw Object.assign(new FsError(code, `${what}: ${e.message}`), { cause: e });
      }
      throw e;
    }
    if (r.status === Nfs3Status.OK) {
      const { status: _s, ...ok } = r as { status: Nfs3Status } & Ok;
      return ok as unknown as Ok;
    }
    const f = r as unknown as Fail & { status: number };
    throw new FsError(codeOfStatus(f.status), `${what}: NFS3ERR ${f.status}`, {
      attr: f.attr ?? f.dirAttr,
      wcc: f.wcc ?? f.dirWcc ?? f.fromWcc,
      wcc2: f.toWcc,
    });
  }

  async mount(path: string, cred: Credentials): Promise<{ fh: Buffer; authFlavors: number[] }> {
    let r;
    try {
      r = await this.mountClient.mnt(path, this.auth(cred));
    } catch (e) {
      throw Object.assign(new FsError('IO', `MNT ${path}: ${(e as Error).message}`), { cause: e });
    }
    if (r.status !== MountStat.OK) {
      throw new FsError(codeOfMountStatus(r.status), mountRefusal(r.status, path));
    }
    return { fh: r.fh, authFlavors: r.authFlavors };
  }

  async exports(): Promise<ExportInfo[]> {
    return (await this.mountClient.export()).map((e) => ({ path: e.dir, groups: e.groups }));
  }

  async getattr(cred: Credentials, fh: Buffer): Promise<Fattr3> {
    return (await this.ok('GETATTR', this.nfs().getattr({ fh }, this.auth(cred)))).attr;
  }
  async setattr(cred: Credentials, fh: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<WccData> {
    return (await this.ok('SETATTR', this.nfs().setattr({ fh, attrs, guard }, this.auth(cred)))).wcc;
  }
  lookup(cred: Credentials, dir: Buffer, name: string) {
    return this.ok('LOOKUP', this.nfs().lookup({ dir, name }, this.auth(cred)));
  }
  access(cred: Credentials, fh: Buffer, mask: number) {
    return this.ok('ACCESS', this.nfs().access({ fh, access: mask }, this.auth(cred)));
  }
  readlink(cred: Credentials, fh: Buffer) {
    return this.ok('READLINK', this.nfs().readlink({ fh }, this.auth(cred)));
  }
  /** The data of a large reply is a view of a pooled record: `release` gives it back (SourcedRead.release). */
  async read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead> {
    let release: (() => void) | undefined;
    try {
      const r = await this.ok('READ', this.nfs().read({ fh, offset, count }, this.auth(cred), (rel) => (release = rel)));
      return release ? { ...r, release } : r;
    } catch (e) {
      release?.(); // an NFS error: its body refers to no data
      throw e;
    }
  }
  write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    return this.ok('WRITE', this.nfs().write({ fh, offset, stable, data }, this.auth(cred)));
  }
  create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    return this.ok('CREATE', this.nfs().create({ where: { dir, name }, how }, this.auth(cred)));
  }
  mkdir(cred: Credentials, dir: Buffer, name: string, attrs: Sattr3): Promise<NewObject> {
    return this.ok('MKDIR', this.nfs().mkdir({ where: { dir, name }, attrs }, this.auth(cred)));
  }
  symlink(cred: Credentials, dir: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject> {
    return this.ok('SYMLINK', this.nfs().symlink({ where: { dir, name }, attrs, target }, this.auth(cred)));
  }
  mknod(cred: Credentials, dir: Buffer, name: string, what: MknodType): Promise<NewObject> {
    return this.ok('MKNOD', this.nfs().mknod({ where: { dir, name }, what }, this.auth(cred)));
  }
  async remove(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    return (await this.ok('REMOVE', this.nfs().remove({ dir, name }, this.auth(cred)))).dirWcc;
  }
  async rmdir(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    return (await this.ok('RMDIR', this.nfs().rmdir({ dir, name }, this.auth(cred)))).dirWcc;
  }
  rename(cred: Credentials, fromDir: Buffer, fromName: string, toDir: Buffer, toName: string) {
    return this.ok('RENAME', this.nfs().rename({ from: { dir: fromDir, name: fromName }, to: { dir: toDir, name: toName } }, this.auth(cred)));
  }
  link(cred: Credentials, fh: Buffer, dir: Buffer, name: string) {
    return this.ok('LINK', this.nfs().link({ fh, link: { dir, name } }, this.auth(cred)));
  }
  readdir(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, count: number): Promise<DirPage<DirEntry>> {
    return this.ok('READDIR', this.nfs().readdir({ dir, cookie, verf, count }, this.auth(cred)));
  }
  readdirplus(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>> {
    return this.ok('READDIRPLUS', this.nfs().readdirplus({ dir, cookie, verf, dircount, maxcount }, this.auth(cred)));
  }
  fsstat(cred: Credentials, fh: Buffer): Promise<FsStat> {
    return this.ok('FSSTAT', this.nfs().fsstat({ fh }, this.auth(cred)));
  }
  fsinfo(cred: Credentials, fh: Buffer): Promise<FsInfo> {
    return this.ok('FSINFO', this.nfs().fsinfo({ fh }, this.auth(cred)));
  }
  pathconf(cred: Credentials, fh: Buffer): Promise<PathConf> {
    return this.ok('PATHCONF', this.nfs().pathconf({ fh }, this.auth(cred)));
  }
  commit(cred: Credentials, fh: Buffer, offset: number, count: number) {
    return this.ok('COMMIT', this.nfs().commit({ fh, offset, count }, this.auth(cred)));
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.rpc.close();
    if (this.mountClient.rpc !== this.clients[0].rpc) this.mountClient.rpc.close();
  }
}
