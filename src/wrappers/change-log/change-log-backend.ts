import type { Backend, DirPage } from '../../backend/backend.js';
import { isFsError } from '../../backend/errors.js';
import type { StableHow } from '../../nfs3/constants.js';
import type { CreateHow, DirEntryPlus, Fattr3, MknodType, NewObject, NfsTime, Sattr3, WccData, WriteResult } from '../../nfs3/types.js';
import type { Credentials } from '../../rpc/types.js';
import { PassthroughBackend } from '../passthrough.js';
import type { ChangeLog } from './change-log.js';
import { NameMemo } from './name-memo.js';

/** Failures that may have come after the server did the work (no reply, or a fault): what a call changed is unknown. */
const uncertain = (e: unknown): boolean => !isFsError(e) || e.code === 'IO' || e.code === 'SERVERFAULT' || e.code === 'JUKEBOX';

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
 *
 * Which object a name led to comes from the name memo (name-memo.ts) when
 * it knows, else from a LOOKUP before the call (one more round trip to the
 * upstream server). The call's own wcc then says whether the memo was
 * still right when the call ran; when it cannot say so, what was taken off
 * the name is unknown and the log is marked lost (every poll client drops
 * everything once): correct, and rare, as it takes a change by someone else
 * in that directory since this server last saw it.
 */
export class ChangeLogBackend extends PassthroughBackend {
  /** What names lead to, as of changes and lookups seen here. */
  readonly names = new NameMemo();

  constructor(
    inner: Backend,
    readonly log: ChangeLog,
  ) {
    super(inner);
  }

  /** A change made by another program (the disk watcher): logged, and the memo forgets what it held of that object. */
  changedElsewhere(fh: Buffer): void {
    this.names.forget(fh);
    this.log.record(fh);
  }

  /** Changes made elsewhere were lost: nothing the memo holds is known to stand, and every poll client must drop everything. */
  lostElsewhere(): void {
    this.names.clear();
    this.log.lost();
  }

  /** The memo named what a call took off a name, and the call's outcome cannot confirm it was still so. */
  private unsure(dir: Buffer): void {
    this.names.forget(dir);
    this.log.lost();
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
    try {
      const w = await this.after(super.setattr(cred, fh, attrs, guard), fh);
      // A directory's ctime moved: the memo follows (else the next REMOVE in it could not confirm its memo).
      if (this.names.stampOf(fh) !== undefined) this.names.changed(fh, w, []);
      return w;
    } catch (e) {
      if (uncertain(e)) this.names.forget(fh);
      throw e;
    }
  }
  override async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    return this.after(super.write(cred, fh, offset, data, stable), fh);
  }
  override async lookup(cred: Credentials, dir: Buffer, name: string): Promise<{ fh: Buffer; attr?: Fattr3; dirAttr?: Fattr3 }> {
    const r = await super.lookup(cred, dir, name);
    if (name !== '.' && name !== '..') this.names.found(dir, r.dirAttr, [[name, r.fh]]);
    return r;
  }
  override async readdirplus(cred: Credentials, dir: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>> {
    const page = await super.readdirplus(cred, dir, cookie, verf, dircount, maxcount);
    // `rm -r` lists a directory, then removes what it listed: no LOOKUP before each REMOVE.
    const named: Array<[string, Buffer]> = [];
    for (const e of page.entries) if (e.fh && e.name !== '.' && e.name !== '..') named.push([e.name, e.fh]);
    this.names.found(dir, page.dirAttr, named);
    return page;
  }

  private async made(dir: Buffer, name: string, p: Promise<NewObject>): Promise<NewObject> {
    let r: NewObject | undefined;
    try {
      r = await p;
      this.names.changed(dir, r.dirWcc, [[name, r.fh]]);
      return r;
    } catch (e) {
      if (uncertain(e)) this.names.forget(dir);
      throw e;
    } finally {
      this.log.record(dir);
      if (r?.fh) this.log.record(r.fh);
    }
  }
  override async create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    // CREATE UNCHECKED of an existing name may truncate that file: it is listed through the reply's handle.
    return this.made(dir, name, super.create(cred, dir, name, how));
  }
  override async mkdir(cred: Credentials, dir: Buffer, name: string, attrs: Sattr3): Promise<NewObject> {
    return this.made(dir, name, super.mkdir(cred, dir, name, attrs));
  }
  override async symlink(cred: Credentials, dir: Buffer, name: string, target: string, attrs: Sattr3): Promise<NewObject> {
    return this.made(dir, name, super.symlink(cred, dir, name, target, attrs));
  }
  override async mknod(cred: Credentials, dir: Buffer, name: string, what: MknodType): Promise<NewObject> {
    return this.made(dir, name, super.mknod(cred, dir, name, what));
  }

  /** REMOVE or RMDIR: the object the name led to is logged with the directory. */
  private async takeOff(cred: Credentials, dir: Buffer, name: string, run: () => Promise<WccData>): Promise<WccData> {
    const memo = this.names.get(dir, name);
    const obj = memo ?? (await this.target(cred, dir, name));
    let wcc: WccData;
    try {
      wcc = await run();
    } catch (e) {
      this.log.record(dir);
      if (obj) this.log.record(obj);
      // A refusal took nothing off; a failure that may have come after the work leaves the memo unconfirmed.
      if (uncertain(e)) {
        if (memo) this.unsure(dir);
        else this.names.forget(dir);
      }
      throw e;
    }
    const held = this.names.changed(dir, wcc, [[name, undefined]]);
    if (obj) this.names.forget(obj); // a directory removed: nothing is in it any more
    this.log.record(dir);
    if (obj) this.log.record(obj);
    if (memo && !held) this.unsure(dir);
    return wcc;
  }
  override async remove(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    return this.takeOff(cred, dir, name, () => super.remove(cred, dir, name));
  }
  override async rmdir(cred: Credentials, dir: Buffer, name: string): Promise<WccData> {
    return this.takeOff(cred, dir, name, () => super.rmdir(cred, dir, name));
  }

  override async rename(cred: Credentials, fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<{ fromWcc: WccData; toWcc: WccData }> {
    const memoMoved = this.names.get(fromDir, fromName);
    const memoOver = this.names.get(toDir, toName);
    // A name the memo does not hold may still be there: only a LOOKUP says what a rename replaces.
    const [moved, over] = await Promise.all([memoMoved ?? this.target(cred, fromDir, fromName), memoOver ?? this.target(cred, toDir, toName)]);
    const logAll = () => {
      for (const fh of [fromDir, toDir, moved, over]) if (fh) this.log.record(fh);
    };
    let r: { fromWcc: WccData; toWcc: WccData };
    try {
      r = await super.rename(cred, fromDir, fromName, toDir, toName);
    } catch (e) {
      logAll();
      if (uncertain(e)) {
        if (memoMoved || memoOver) this.log.lost();
        this.names.forget(fromDir);
        this.names.forget(toDir);
      }
      throw e;
    }
    let heldFrom: boolean;
    let heldTo: boolean;
    if (fromDir.equals(toDir)) heldFrom = heldTo = this.names.changed(fromDir, r.fromWcc, [[fromName, undefined], [toName, moved]]);
    else {
      heldFrom = this.names.changed(fromDir, r.fromWcc, [[fromName, undefined]]);
      heldTo = this.names.changed(toDir, r.toWcc, [[toName, moved]]);
    }
    // A directory renamed over is gone; one moved has a new ctime (and a new ".."), so what the memo held of it no longer confirms.
    if (over) this.names.forget(over);
    if (moved) this.names.forget(moved);
    logAll();
    if ((memoMoved && !heldFrom) || (memoOver && !heldTo)) {
      this.names.forget(fromDir);
      this.names.forget(toDir);
      this.log.lost();
    }
    return r;
  }
  override async link(cred: Credentials, fh: Buffer, dir: Buffer, name: string): Promise<{ attr?: Fattr3; dirWcc: WccData }> {
    try {
      const r = await this.after(super.link(cred, fh, dir, name), fh, dir);
      this.names.changed(dir, r.dirWcc, [[name, fh]]);
      return r;
    } catch (e) {
      if (uncertain(e)) this.names.forget(dir);
      throw e;
    }
  }
}
