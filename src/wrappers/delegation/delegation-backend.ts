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
 * a recall drops the holder's attributes and cached names of it.
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

  private async gateAll(cred: Credentials, fhs: Array<Buffer | undefined>): Promise<void> {
    for (const fh of fhs) if (fh) await this.gate(cred, fh, 'write');
  }

  override async remove(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    await this.gateAll(cred, [dir, await this.named(cred, dir, name)]);
    return super.remove(cred, dir, name);
  }
  override async rmdir(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    await this.gateAll(cred, [dir, await this.named(cred, dir, name)]);
    return super.rmdir(cred, dir, name);
  }
  override async rename(cred: Credentials, fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<{ fromWcc: WccData; toWcc: WccData }> {
    const same = fromDir.equals(toDir);
    await this.gateAll(cred, [fromDir, same ? undefined : toDir, await this.named(cred, fromDir, fromName), await this.named(cred, toDir, toName)]);
    return super.rename(cred, fromDir, fromName, toDir, toName);
  }
  override async link(cred: Credentials, fh: Buffer, dir: Buffer, name: string): Promise<{ attr?: Fattr3; dirWcc: WccData }> {
    await this.gateAll(cred, [fh, dir]);
    return super.link(cred, fh, dir, name);
  }
  override async create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    // UNCHECKED/GUARDED with a size truncates an existing file.
    await this.gateAll(cred, [dir, how.mode !== 'exclusive' ? await this.named(cred, dir, name) : undefined]);
    return super.create(cred, dir, name, how);
  }
  override async mkdir(cred: Credentials, dir: Buffer, name: string, attrs: Sattr3): Promise<NewObject> {
    await this.gate(cred, dir, 'write');
    return super.mkdir(cred, dir, name, attrs);
  }
  override async symlink(cred: Credentials, dir: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject> {
    await this.gate(cred, dir, 'write');
    return super.symlink(cred, dir, name, target, attrs);
  }
  override async mknod(cred: Credentials, dir: Buffer, name: string, what: MknodType): Promise<NewObject> {
    await this.gate(cred, dir, 'write');
    return super.mknod(cred, dir, name, what);
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
    await this.gate(cred, fh, 'write');
    return super.write(cred, fh, offset, data, stable);
  }
  override async setattr(cred: Credentials, fh: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<WccData> {
    await this.gate(cred, fh, 'write');
    return super.setattr(cred, fh, attrs, guard);
  }
  override async commit(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<{ wcc: WccData; verf: Buffer }> {
    await this.gate(cred, fh, 'write');
    return super.commit(cred, fh, offset, count);
  }
}
