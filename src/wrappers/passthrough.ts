import type { Backend, DirPage, ExportInfo, SourcedRead } from '../backend/backend.js';
import type { StableHow } from '../nfs3/constants.js';
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
  Sattr3,
  WccData,
  WriteResult,
} from '../nfs3/types.js';
import type { Credentials } from '../rpc/types.js';
import { heldAnswersOf, invalidationsOf, type HeldAnswers, type InvalidationSource } from '../backend/capabilities.js';

/**
 * The template for every wrapper (like ganesha's FSAL_NULL): forwards each
 * call unchanged to the backend it wraps. A wrapper extends this and
 * overrides only what it changes; `cred()` is the one hook every call goes
 * through, for wrappers that rewrite identities (it may throw an FsError to
 * refuse a caller; methods are async so that becomes a rejection).
 */
export class PassthroughBackend implements Backend {
  constructor(protected readonly inner: Backend) {}

  /** Optional capability (backend/capabilities.ts): handles pass unchanged, so the layer below's invalidations are ours. */
  get invalidations(): InvalidationSource | undefined {
    return invalidationsOf(this.inner);
  }

  /** Optional capability: handles pass unchanged, so what the layer below holds is what we answer with. */
  get heldAnswers(): HeldAnswers | undefined {
    return heldAnswersOf(this.inner);
  }

  /** Rewrite (or refuse) the caller's credentials before any call goes down. */
  protected cred(c: Credentials): Credentials {
    return c;
  }

  async mount(path: string, cred: Credentials): Promise<{ fh: Buffer; authFlavors: number[] }> {
    return this.inner.mount(path, this.cred(cred));
  }
  async exports(): Promise<ExportInfo[]> {
    return this.inner.exports();
  }
  async getattr(cred: Credentials, fh: Buffer): Promise<Fattr3> {
    return this.inner.getattr(this.cred(cred), fh);
  }
  async setattr(cred: Credentials, fh: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<WccData> {
    return this.inner.setattr(this.cred(cred), fh, attrs, guard);
  }
  async lookup(cred: Credentials, dir: Buffer, name: string): Promise<{ fh: Buffer; attr?: Fattr3; dirAttr?: Fattr3 }> {
    return this.inner.lookup(this.cred(cred), dir, name);
  }
  async access(cred: Credentials, fh: Buffer, mask: number): Promise<{ access: number; attr?: Fattr3 }> {
    return this.inner.access(this.cred(cred), fh, mask);
  }
  async readlink(cred: Credentials, fh: Buffer): Promise<{ path: string; attr?: Fattr3 }> {
    return this.inner.readlink(this.cred(cred), fh);
  }
  async read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead> {
    return this.inner.read(this.cred(cred), fh, offset, count);
  }
  async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    return this.inner.write(this.cred(cred), fh, offset, data, stable);
  }
  async create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    return this.inner.create(this.cred(cred), dir, name, how);
  }
  async mkdir(cred: Credentials, dir: Buffer, name: string, attrs: Sattr3): Promise<NewObject> {
    return this.inner.mkdir(this.cred(cred), dir, name, attrs);
  }
  async symlink(cred: Credentials, dir: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject> {
    return this.inner.symlink(this.cred(cred), dir, name, target, attrs);
  }
  async mknod(cred: Credentials, dir: Buffer, name: string, what: MknodType): Promise<NewObject> {
    return this.inner.mknod(this.cred(cred), dir, name, what);
  }
  async remove(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    return this.inner.remove(this.cred(cred), dir, name);
  }
  async rmdir(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    return this.inner.rmdir(this.cred(cred), dir, name);
  }
  async rename(cred: Credentials, fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<{ fromWcc: WccData; toWcc: WccData }> {
    return this.inner.rename(this.cred(cred), fromDir, fromName, toDir, toName);
  }
  async link(cred: Credentials, fh: Buffer, dir: Buffer, name: string): Promise<{ attr?: Fattr3; dirWcc: WccData }> {
    return this.inner.link(this.cred(cred), fh, dir, name);
  }
  async readdir(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, count: number): Promise<DirPage<DirEntry>> {
    return this.inner.readdir(this.cred(cred), dir, cookie, verf, count);
  }
  async readdirplus(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>> {
    return this.inner.readdirplus(this.cred(cred), dir, cookie, verf, dircount, maxcount);
  }
  async fsstat(cred: Credentials, fh: Buffer): Promise<FsStat> {
    return this.inner.fsstat(this.cred(cred), fh);
  }
  async fsinfo(cred: Credentials, fh: Buffer): Promise<FsInfo> {
    return this.inner.fsinfo(this.cred(cred), fh);
  }
  async pathconf(cred: Credentials, fh: Buffer): Promise<PathConf> {
    return this.inner.pathconf(this.cred(cred), fh);
  }
  async commit(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<{ wcc: WccData; verf: Buffer }> {
    return this.inner.commit(this.cred(cred), fh, offset, count);
  }
  async close(): Promise<void> {
    return this.inner.close();
  }
}
