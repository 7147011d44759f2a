import type { StableHow } from '../../nfs3/constants.js';
import type { CreateHow, Fattr3, MknodType, NewObject, NfsTime, Sattr3, WccData, WriteResult } from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import { PassthroughBackend } from '../passthrough.js';
import type { Backend } from '../../backend/backend.js';
import type { ChangeLog } from './change-log.js';

/**
 * Records in an export's change log (change-log.ts) every file a call
 * through this export may have changed: its attributes (WRITE, SETATTR,
 * LINK), its names (the directories of CREATE, REMOVE, RENAME ...), and the
 * objects a name operation touches (the file removed or renamed, whose link
 * count and ctime move, and a file renamed over). Recorded when the call
 * settles, success or not (a failed call may have done part of its work;
 * listing a file too often only costs a client one GETATTR).
 *
 * Sits below the proxy handles, over each export, so the log holds the
 * export's own handles, the same whichever session made the change.
 */
export class ChangeLogBackend extends PassthroughBackend {
  constructor(
    inner: Backend,
    readonly log: ChangeLog,
  ) {
    super(inner);
  }

  private async after<T>(p: Promise<T>, ...fhs: Array<Buffer | undefined>): Promise<T> {
    try {
      return await p;
    } finally {
      for (const fh of fhs) if (fh) this.log.record(fh);
    }
  }

  /** The handle a name leads to now (undefined if none): what a REMOVE or RENAME is about to change. */
  private async target(cred: Credentials, dir: Buffer, name: string): Promise<Buffer | undefined> {
    return this.inner.lookup(cred, dir, name).then((r) => r.fh, () => undefined);
  }

  override async setattr(cred: Credentials, fh: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<WccData> {
    return this.after(super.setattr(cred, fh, attrs, guard), fh);
  }
  override async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    return this.after(super.write(cred, fh, offset, data, stable), fh);
  }
  private async made(dir: Buffer, p: Promise<NewObject>): Promise<NewObject> {
    let r: NewObject | undefined;
    try {
      r = await p;
      return r;
    } finally {
      this.log.record(dir);
      if (r?.fh) this.log.record(r.fh);
    }
  }
  override async create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    // CREATE UNCHECKED of an existing name may truncate that file: it is listed through the reply's handle.
    return this.made(dir, super.create(cred, dir, name, how));
  }
  override async mkdir(cred: Credentials, dir: Buffer, name: string, attrs: Sattr3): Promise<NewObject> {
    return this.made(dir, super.mkdir(cred, dir, name, attrs));
  }
  override async symlink(cred: Credentials, dir: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject> {
    return this.made(dir, super.symlink(cred, dir, name, target, attrs));
  }
  override async mknod(cred: Credentials, dir: Buffer, name: string, what: MknodType): Promise<NewObject> {
    return this.made(dir, super.mknod(cred, dir, name, what));
  }
  override async remove(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    const obj = await this.target(cred, dir, name);
    return this.after(super.remove(cred, dir, name), dir, obj);
  }
  override async rmdir(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    const obj = await this.target(cred, dir, name);
    return this.after(super.rmdir(cred, dir, name), dir, obj);
  }
  override async rename(cred: Credentials, fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<{ fromWcc: WccData; toWcc: WccData }> {
    const [moved, over] = await Promise.all([this.target(cred, fromDir, fromName), this.target(cred, toDir, toName)]);
    return this.after(super.rename(cred, fromDir, fromName, toDir, toName), fromDir, toDir, moved, over);
  }
  override async link(cred: Credentials, fh: Buffer, dir: Buffer, name: string): Promise<{ attr?: Fattr3; dirWcc: WccData }> {
    return this.after(super.link(cred, fh, dir, name), fh, dir);
  }
}
