import type { Backend, SourcedRead } from '../../backend/backend.js';
import type { StableHow } from '../../nfs3/constants.js';
import type { Fattr3, NfsTime, Sattr3, WccData, WriteResult } from '../../nfs3/types.js';
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
 * (changes). Not covered yet: name operations (REMOVE/RENAME of a delegated
 * file recall nothing).
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
