import type { DirPage } from '../../backend/backend.js';
import { FsError } from '../../backend/errors.js';
import { META_DIR } from '../../meta/format.js';
import type { CreateHow, DirEntry, DirEntryPlus, MknodType, NewObject, Sattr3, WccData } from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import { PassthroughBackend } from '../passthrough.js';

/**
 * Hides the meta-data directory (`.gvfs-meta`) from a session's namespace
 * (proxy server: below the proxy handles, over each export): it never shows
 * in READDIR, LOOKUP says NOENT, and nothing can create, remove or rename
 * anything under that name. Meta-data travels only through the GVFS
 * extension procedures (proxy/meta-server.ts), which use the export's
 * backend under this wrapper.
 */
export class HideMetaBackend extends PassthroughBackend {
  override async lookup(cred: Credentials, dir: Buffer, name: string) {
    if (name === META_DIR) throw new FsError('NOENT', 'no such entry');
    return super.lookup(cred, dir, name);
  }

  override async readdir(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, count: number): Promise<DirPage<DirEntry>> {
    return this.filtered((c, v) => super.readdir(cred, dir, c, v, count), cookie, verf);
  }

  override async readdirplus(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>> {
    return this.filtered((c, v) => super.readdirplus(cred, dir, c, v, dircount, maxcount), cookie, verf);
  }

  /** A page without the hidden entry; a page that held only it is followed by the next, so no page is empty before EOF. */
  private async filtered<E extends DirEntry>(page: (cookie: bigint, verf: Buffer) => Promise<DirPage<E>>, cookie: bigint, verf: Buffer): Promise<DirPage<E>> {
    for (;;) {
      const p = await page(cookie, verf);
      const entries = p.entries.filter((e) => e.name !== META_DIR);
      if (entries.length || p.eof || !p.entries.length) return { ...p, entries };
      cookie = p.entries[p.entries.length - 1].cookie;
      verf = p.verf;
    }
  }

  private refuse(name: string, body: object): void {
    if (name === META_DIR) throw new FsError('ACCES', `${META_DIR} is reserved for GVFS meta-data`, body);
  }

  override async create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    this.refuse(name, { wcc: {} });
    return super.create(cred, dir, name, how);
  }
  override async mkdir(cred: Credentials, dir: Buffer, name: string, attrs: Sattr3): Promise<NewObject> {
    this.refuse(name, { wcc: {} });
    return super.mkdir(cred, dir, name, attrs);
  }
  override async symlink(cred: Credentials, dir: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject> {
    this.refuse(name, { wcc: {} });
    return super.symlink(cred, dir, name, target, attrs);
  }
  override async mknod(cred: Credentials, dir: Buffer, name: string, what: MknodType): Promise<NewObject> {
    this.refuse(name, { wcc: {} });
    return super.mknod(cred, dir, name, what);
  }
  override async remove(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    this.refuse(name, { wcc: {} });
    return super.remove(cred, dir, name);
  }
  override async rmdir(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    this.refuse(name, { wcc: {} });
    return super.rmdir(cred, dir, name);
  }
  override async rename(cred: Credentials, fromDir: Buffer, fromName: string, toDir: Buffer, toName: string) {
    this.refuse(fromName, { wcc: {}, wcc2: {} });
    this.refuse(toName, { wcc: {}, wcc2: {} });
    return super.rename(cred, fromDir, fromName, toDir, toName);
  }
  override async link(cred: Credentials, fh: Buffer, dir: Buffer, name: string) {
    this.refuse(name, { wcc: {} });
    return super.link(cred, fh, dir, name);
  }
}
