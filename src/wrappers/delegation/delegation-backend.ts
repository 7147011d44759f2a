import type { Backend, SourcedRead } from '../../backend/backend.js';
import type { StableHow } from '../../nfs3/constants.js';
import type { CreateHow, Fattr3, MknodType, NewObject, NfsTime, Sattr3, WccData, WriteResult } from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import { PassthroughBackend } from '../passthrough.js';
import type { DelegationTable } from './delegations.js';

/** The table's name for a file: export index and the export's own handle (the same for every session). */
export const delegationKey = (ex: number, ufh: Buffer): string => `${ex}:${ufh.toString('hex')}`;

/**
 * Sits below the proxy handles over one export (like the change log): every
 * call that reads or changes a file first settles the delegations other
 * sessions hold on it (DelegationTable.before: recall, wait, or refuse a
 * fenced session's change).
 *
 * Covered: GETATTR, ACCESS, READ, READLINK (reads); WRITE, SETATTR, COMMIT
 * (changes). Name operations change the files they name and the
 * directories whose entries change: REMOVE and RMDIR (the object, looked up
 * first, and its directory), RENAME (the object moved, the object it
 * replaces, both directories), LINK (the file, whose link count changes,
 * and the directory), CREATE/MKDIR/SYMLINK/MKNOD (the directory; CREATE
 * also the file it may truncate). A holder of any of them is recalled (it
 * flushes first) before the change, so a write-back write lands before its
 * file is renamed, replaced or removed. Directories are delegated like
 * files (the cache takes a read delegation on the GETATTR of a directory):
 * a recall drops the holder's attributes and cached names of it. A grant
 * made while a change is under way (after its recalls, before it is on the
 * disk) is recalled before the change is answered: what came with that
 * grant may predate the change.
 */
export class DelegationBackend extends PassthroughBackend {
  constructor(
    inner: Backend,
    private readonly table: DelegationTable,
    private readonly ex: number,
  ) {
    super(inner);
  }

  private gate(cred: Credentials, fh: Buffer, kind: 'read' | 'write'): Promise<void> {
    return this.table.before(cred.session, delegationKey(this.ex, fh), kind);
  }

  /** The object a name leads to now (only looked up while some file is delegated: the lookup costs a call upstream). */
  private async named(cred: Credentials, dir: Buffer, name: string): Promise<Buffer | undefined> {
    if (!this.table.delegatedFiles) return undefined;
    return this.inner.lookup(this.cred(cred), dir, name).then((r) => r.fh, () => undefined);
  }

  /**
   * A change to the files `fhs` (absent ones skipped): each file's other
   * holders recalled before it runs (`before`), and those granted while it
   * ran recalled before it is answered (DelegationTable.changed).
   */
  private async change<T>(cred: Credentials, fhs: Array<Buffer | undefined>, run: () => Promise<T>): Promise<T> {
    const files = fhs.filter((fh): fh is Buffer => fh !== undefined).map((fh) => delegationKey(this.ex, fh));
    // Taken before the recalls: a grant that slips in while they are waited for is as late as one during the call.
    const mark = this.table.mark();
    for (const file of files) await this.table.before(cred.session, file, 'write');
    try {
      return await run();
    } finally {
      for (const file of files) await this.table.changed(cred.session, file, mark);
    }
  }

  override async remove(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    return this.change(cred, [dir, await this.named(cred, dir, name)], () => super.remove(cred, dir, name));
  }
  override async rmdir(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    return this.change(cred, [dir, await this.named(cred, dir, name)], () => super.rmdir(cred, dir, name));
  }
  override async rename(cred: Credentials, fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<{ fromWcc: WccData; toWcc: WccData }> {
    const same = fromDir.equals(toDir);
    const moved = [fromDir, same ? undefined : toDir, await this.named(cred, fromDir, fromName), await this.named(cred, toDir, toName)];
    return this.change(cred, moved, () => super.rename(cred, fromDir, fromName, toDir, toName));
  }
  override async link(cred: Credentials, fh: Buffer, dir: Buffer, name: string): Promise<{ attr?: Fattr3; dirWcc: WccData }> {
    return this.change(cred, [fh, dir], () => super.link(cred, fh, dir, name));
  }
  override async create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    // UNCHECKED/GUARDED with a size truncates an existing file.
    return this.change(cred, [dir, how.mode !== 'exclusive' ? await this.named(cred, dir, name) : undefined], () => super.create(cred, dir, name, how));
  }
  override async mkdir(cred: Credentials, dir: Buffer, name: string, attrs: Sattr3): Promise<NewObject> {
    return this.change(cred, [dir], () => super.mkdir(cred, dir, name, attrs));
  }
  override async symlink(cred: Credentials, dir: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject> {
    return this.change(cred, [dir], () => super.symlink(cred, dir, name, target, attrs));
  }
  override async mknod(cred: Credentials, dir: Buffer, name: string, what: MknodType): Promise<NewObject> {
    return this.change(cred, [dir], () => super.mknod(cred, dir, name, what));
  }

  override async getattr(cred: Credentials, fh: Buffer): Promise<Fattr3> {
    await this.gate(cred, fh, 'read');
    return super.getattr(cred, fh);
  }
  override async access(cred: Credentials, fh: Buffer, mask: number): Promise<{ access: number; attr?: Fattr3 }> {
    await this.gate(cred, fh, 'read');
    return super.access(cred, fh, mask);
  }
  override async readlink(cred: Credentials, fh: Buffer): Promise<{ path: string; attr?: Fattr3 }> {
    await this.gate(cred, fh, 'read');
    return super.readlink(cred, fh);
  }
  override async read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead> {
    await this.gate(cred, fh, 'read');
    return super.read(cred, fh, offset, count);
  }
  override async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    return this.change(cred, [fh], () => super.write(cred, fh, offset, data, stable));
  }
  override async setattr(cred: Credentials, fh: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<WccData> {
    return this.change(cred, [fh], () => super.setattr(cred, fh, attrs, guard));
  }
  override async commit(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<{ wcc: WccData; verf: Buffer }> {
    // Nothing becomes visible at a COMMIT (the WRITEs did that): the holders are recalled first (a write holder's data), none after.
    await this.gate(cred, fh, 'write');
    return super.commit(cred, fh, offset, count);
  }
}
