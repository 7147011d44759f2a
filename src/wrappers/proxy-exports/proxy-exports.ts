import { createHmac, timingSafeEqual } from 'node:crypto';
import path from 'node:path';
import type { Backend, DirPage, ExportInfo } from '../../backend/backend.js';
import { FsError } from '../../backend/errors.js';
import type { StableHow } from '../../nfs3/constants.js';
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
  ReadResult,
  Sattr3,
  WccData,
  WriteResult,
} from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import { HandleJournal } from './handle-journal.js';

export interface ProxyExport {
  /** Path clients mount on the proxy. */
  name: string;
  /** Where it leads: any backend (remote NFS, a local export, a stack of wrappers). */
  backend: Backend;
  /** Path to mount on that backend. */
  path: string;
  /** Served read-only: the NFSv3 front end refuses every mutating call on its handles (see readOnlyHandle). */
  readOnly?: boolean;
}

/**
 * Handles seen by the proxy's clients are the proxy's own. An upstream
 * handle that fits is wrapped inline and authenticated; a longer one is
 * replaced by an id in a persistent table (NFSv3 allows only 64 bytes):
 *
 *   inline: 0x01 | export (1) | n (1) | upstream handle (n <= 53) | MAC (8)
 *   table:  0x02 | export (1) | id (8)                            | MAC (8)
 *
 * MAC = HMAC-SHA256(secret, session id || preceding bytes), first 8 bytes.
 * The secret lives in the proxy's state directory, so handles survive
 * restarts; a client can present only handles the proxy gave out to its own
 * session: an upstream handle presented directly, a forged one, or one
 * issued to another session is BADHANDLE.
 */
const INLINE = 1;
const TABLE = 2;
const MAC_LEN = 8;
/** (session, handle head) pairs whose MAC is remembered (ProxyExports.mac). */
const MAC_MEMO = 4096;
export const INLINE_MAX = 64 - 3 - MAC_LEN;

export interface ProxyExportsOptions {
  secret: Buffer;
  /** Directory for the handle journal (absent: table handles live in memory only). */
  stateDir?: string;
  /** Longest upstream handle wrapped inline (tests lower it to exercise the table). */
  inlineMax?: number;
}

/**
 * The proxy server's top backend: several exports behind one set of
 * handles, each routed to its own backend. Renames and links across exports
 * are XDEV.
 */
export class ProxyExports implements Backend {
  private readonly journal: HandleJournal;
  private readonly inlineMax: number;

  private constructor(
    private readonly list: ProxyExport[],
    private readonly opts: ProxyExportsOptions,
  ) {
    if (list.length === 0 || list.length > 255) throw new Error('a proxy serves 1 to 255 exports');
    this.journal = new HandleJournal(opts.stateDir ? path.join(opts.stateDir, 'handles.journal') : undefined);
    this.inlineMax = Math.min(opts.inlineMax ?? INLINE_MAX, INLINE_MAX);
  }

  static async open(list: ProxyExport[], opts: ProxyExportsOptions): Promise<ProxyExports> {
    const p = new ProxyExports(list, opts);
    await p.journal.load();
    return p;
  }

  /**
   * The MACs of recent (session, handle head) pairs: every call checks its
   * handles and every LOOKUP or CREATE issues one, and an HMAC object per
   * handle was the largest share of the proxy server's own CPU per
   * metadata call. Bounded; the oldest goes first.
   */
  private readonly macs = new Map<string, Buffer>();

  private mac(scope: string, bytes: Buffer): Buffer {
    const key = `${scope}\0${bytes.toString('latin1')}`;
    let m = this.macs.get(key);
    if (m) return m;
    m = createHmac('sha256', this.opts.secret).update(scope).update('\0').update(bytes).digest().subarray(0, MAC_LEN);
    if (this.macs.size >= MAC_MEMO) this.macs.delete(this.macs.keys().next().value!);
    this.macs.set(key, m);
    return m;
  }

  /** Upstream handle → proxy handle for the caller's session (durable before it is returned). */
  async wrap(cred: Credentials, ex: number, ufh: Buffer): Promise<Buffer> {
    let head: Buffer;
    if (ufh.length <= this.inlineMax) {
      head = Buffer.concat([Buffer.from([INLINE, ex, ufh.length]), ufh]);
    } else {
      const id = createHmac('sha256', this.opts.secret).update(Buffer.from([ex])).update(ufh).digest().subarray(0, 8);
      await this.journal.put(id.toString('hex'), ufh);
      head = Buffer.concat([Buffer.from([TABLE, ex]), id]);
    }
    return Buffer.concat([head, this.mac(cred.session ?? '', head)]);
  }

  /** Proxy handle → export and upstream handle (only for the session it was issued to). */
  unwrap(fh: Buffer, cred: Credentials): { ex: number; b: Backend; ufh: Buffer } {
    if (fh.length < 2 + MAC_LEN) throw new FsError('BADHANDLE', 'malformed handle');
    const head = fh.subarray(0, fh.length - MAC_LEN);
    if (!timingSafeEqual(this.mac(cred.session ?? '', head), fh.subarray(fh.length - MAC_LEN))) throw new FsError('BADHANDLE', 'handle not issued by this proxy to this session');
    const ex = head[1];
    const e = this.list[ex];
    if (!e) throw new FsError('STALE', 'export no longer served');
    if (head[0] === INLINE && head.length === 3 + head[2]) return { ex, b: e.backend, ufh: head.subarray(3) };
    if (head[0] === TABLE && head.length === 10) {
      const ufh = this.journal.get(head.subarray(2, 10).toString('hex'));
      if (!ufh) throw new FsError('STALE', 'handle unknown to this proxy');
      return { ex, b: e.backend, ufh };
    }
    throw new FsError('BADHANDLE', 'malformed handle');
  }

  /**
   * Is this handle in a read-only export? The front end's write guard asks
   * before any mutating call (frontends/nfs3-server/read-only.ts). A handle
   * this proxy did not issue to the caller's session throws (BADHANDLE,
   * STALE), which refuses the call.
   */
  readOnlyHandle(fh: Buffer, cred: Credentials): boolean {
    return !!this.list[this.unwrap(fh, cred).ex].readOnly;
  }

  private async wrapNew(cred: Credentials, ex: number, r: NewObject): Promise<NewObject> {
    return { ...r, fh: r.fh && (await this.wrap(cred, ex, r.fh)) };
  }

  async mount(p: string, cred: Credentials): Promise<{ fh: Buffer; authFlavors: number[] }> {
    const want = p.replace(/\/+$/, '') || '/';
    for (let i = 0; i < this.list.length; i++) {
      const e = this.list[i];
      const name = e.name.replace(/\/+$/, '') || '/';
      let rest: string | undefined;
      if (want === name) rest = '';
      else if (want.startsWith(name === '/' ? '/' : name + '/')) rest = want.slice(name === '/' ? 0 : name.length);
      if (rest === undefined) continue;
      if (rest.split('/').some((c) => c === '..' || c === '.')) throw new FsError('INVAL', 'mount path may not contain "." or ".."');
      const upstream = rest ? path.posix.join(e.path, rest) : e.path;
      const r = await e.backend.mount(upstream, cred);
      return { fh: await this.wrap(cred, i, r.fh), authFlavors: r.authFlavors };
    }
    throw new FsError('NOENT', `no export ${p}`);
  }

  async exports(): Promise<ExportInfo[]> {
    return this.list.map((e) => ({ path: e.name, groups: [] }));
  }

  getattr(cred: Credentials, fh: Buffer): Promise<Fattr3> {
    const u = this.unwrap(fh, cred);
    return u.b.getattr(cred, u.ufh);
  }
  setattr(cred: Credentials, fh: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<WccData> {
    const u = this.unwrap(fh, cred);
    return u.b.setattr(cred, u.ufh, attrs, guard);
  }
  async lookup(cred: Credentials, dir: Buffer, name: string): Promise<{ fh: Buffer; attr?: Fattr3; dirAttr?: Fattr3 }> {
    const u = this.unwrap(dir, cred);
    const r = await u.b.lookup(cred, u.ufh, name);
    return { ...r, fh: await this.wrap(cred, u.ex, r.fh) };
  }
  access(cred: Credentials, fh: Buffer, mask: number): Promise<{ access: number; attr?: Fattr3 }> {
    const u = this.unwrap(fh, cred);
    return u.b.access(cred, u.ufh, mask);
  }
  readlink(cred: Credentials, fh: Buffer): Promise<{ path: string; attr?: Fattr3 }> {
    const u = this.unwrap(fh, cred);
    return u.b.readlink(cred, u.ufh);
  }
  read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<ReadResult> {
    const u = this.unwrap(fh, cred);
    return u.b.read(cred, u.ufh, offset, count);
  }
  write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    const u = this.unwrap(fh, cred);
    return u.b.write(cred, u.ufh, offset, data, stable);
  }
  async create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    const u = this.unwrap(dir, cred);
    return this.wrapNew(cred, u.ex, await u.b.create(cred, u.ufh, name, how));
  }
  async mkdir(cred: Credentials, dir: Buffer, name: string, attrs: Sattr3): Promise<NewObject> {
    const u = this.unwrap(dir, cred);
    return this.wrapNew(cred, u.ex, await u.b.mkdir(cred, u.ufh, name, attrs));
  }
  async symlink(cred: Credentials, dir: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject> {
    const u = this.unwrap(dir, cred);
    return this.wrapNew(cred, u.ex, await u.b.symlink(cred, u.ufh, name, target, attrs));
  }
  async mknod(cred: Credentials, dir: Buffer, name: string, what: MknodType): Promise<NewObject> {
    const u = this.unwrap(dir, cred);
    return this.wrapNew(cred, u.ex, await u.b.mknod(cred, u.ufh, name, what));
  }
  remove(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    const u = this.unwrap(dir, cred);
    return u.b.remove(cred, u.ufh, name);
  }
  rmdir(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    const u = this.unwrap(dir, cred);
    return u.b.rmdir(cred, u.ufh, name);
  }
  async rename(cred: Credentials, fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<{ fromWcc: WccData; toWcc: WccData }> {
    const f = this.unwrap(fromDir, cred);
    const t = this.unwrap(toDir, cred);
    if (f.ex !== t.ex) throw new FsError('XDEV', 'rename across exports', { wcc: {}, wcc2: {} });
    return f.b.rename(cred, f.ufh, fromName, t.ufh, toName);
  }
  async link(cred: Credentials, fh: Buffer, dir: Buffer, name: string): Promise<{ attr?: Fattr3; dirWcc: WccData }> {
    const o = this.unwrap(fh, cred);
    const d = this.unwrap(dir, cred);
    if (o.ex !== d.ex) throw new FsError('XDEV', 'link across exports', { wcc: {} });
    return o.b.link(cred, o.ufh, d.ufh, name);
  }
  readdir(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, count: number): Promise<DirPage<DirEntry>> {
    const u = this.unwrap(dir, cred);
    return u.b.readdir(cred, u.ufh, cookie, verf, count);
  }
  async readdirplus(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>> {
    const u = this.unwrap(dir, cred);
    // Our handles may be longer than the upstream's: ask for less so the reply still fits maxcount.
    const page = await u.b.readdirplus(cred, u.ufh, cookie, verf, dircount, Math.max(1024, Math.floor(maxcount * 0.75)));
    const entries = await Promise.all(page.entries.map(async (e) => ({ ...e, fh: e.fh && (await this.wrap(cred, u.ex, e.fh)) })));
    return { ...page, entries };
  }
  fsstat(cred: Credentials, fh: Buffer): Promise<FsStat> {
    const u = this.unwrap(fh, cred);
    return u.b.fsstat(cred, u.ufh);
  }
  async fsinfo(cred: Credentials, fh: Buffer): Promise<FsInfo> {
    const u = this.unwrap(fh, cred);
    return u.b.fsinfo(cred, u.ufh);
  }
  pathconf(cred: Credentials, fh: Buffer): Promise<PathConf> {
    const u = this.unwrap(fh, cred);
    return u.b.pathconf(cred, u.ufh);
  }
  commit(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<{ wcc: WccData; verf: Buffer }> {
    const u = this.unwrap(fh, cred);
    return u.b.commit(cred, u.ufh, offset, count);
  }
  async close(): Promise<void> {
    await this.journal.close();
    for (const e of this.list) await e.backend.close();
  }
}
