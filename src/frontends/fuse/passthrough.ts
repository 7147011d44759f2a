import type { WholeFiles } from '../../backend/capabilities.js';
import type { Credentials } from '../../rpc/types.js';
import { fuseLl, type LlSession } from '../../native/fuse-ll.js';
import { logger } from '../../util/log.js';
import type { Node } from './lowlevel-inodes.js';

const log = logger('fuse');

/** One node's backing file while opens pass through to it. */
interface Backing {
  id: number;
  /** Opens answered with `id` and not yet released. */
  opens: number;
  /** The version (size:mtime) the file holds. */
  sig: string;
  release: () => void;
}

/**
 * FUSE passthrough (native/src/fuse_ll.c) for a read-only mount: an open of
 * a file the backend holds whole in one local file (backend/capabilities.ts
 * WholeFiles: the disk cache) is handed to that file, and the kernel reads
 * it itself — no READ reaches us, and the page cache is the local file's.
 *
 * Only on a read-only mount (the kernel refuses every open for writing):
 * a writer's open of a file in passthrough would have to pass through too
 * (the kernel's rule), and its shared writable mmap would then write the
 * cache's file, never the server.
 *
 * The kernel's rules this keeps: all opens of one inode in passthrough share
 * one backing file, and an open that does not pass through cannot coexist
 * with one that does (the open fails with EIO). So a node's first open
 * passes through only when no other open of it is held; later opens share
 * its backing while any is held — with direct I/O (reads come to us, of the
 * version the server has now) when the file changed since the backing was
 * chosen; the backing id is unregistered at the last release. A passed-
 * through open reads the version it opened, as NFS's close-to-open allows.
 */
export class Passthrough {
  private readonly backings = new Map<number, Backing>();
  private readonly deciding = new Map<number, Promise<void>>();
  /** Open file handle → node id, for opens answered with a backing. */
  private readonly byFh = new Map<number, number>();
  /** Opens answered with a backing, and those of them with direct I/O (the file had changed). */
  readonly counts = { passthroughOpens: 0, passthroughDirectOpens: 0 };
  private warned = false;

  constructor(
    private readonly whole: WholeFiles,
    private readonly session: () => LlSession | undefined,
  ) {}

  /**
   * Open `n` (version `sig`, `size` bytes): `register` makes the open's file
   * handle, called exactly once, once the node's backing is decided and
   * before anything else may decide it. `eligible`: a read-only open that
   * may pass through; `othersOpen`: whether other opens of the node are held.
   */
  async open(cred: Credentials, n: Node, sig: string, size: number, eligible: boolean, othersOpen: () => boolean, register: () => number): Promise<{ fh: number; backingId?: number; directIo?: boolean }> {
    for (let d = this.deciding.get(n.id); d; d = this.deciding.get(n.id)) await d;
    let b = this.backings.get(n.id);
    let done: (() => void) | undefined;
    if (!b && eligible && size > 0 && !othersOpen()) {
      this.deciding.set(n.id, new Promise<void>((r) => (done = r)));
      try {
        b = await this.choose(cred, n, sig, size, othersOpen);
      } catch (e) {
        log.debug({ err: (e as Error).message }, 'passthrough: no whole file (read through the mount instead)');
      }
    }
    try {
      const fh = register();
      if (!b) return { fh };
      b.opens++;
      this.byFh.set(fh, n.id);
      this.counts.passthroughOpens++;
      if (b.sig !== sig) this.counts.passthroughDirectOpens++;
      return { fh, backingId: b.id, directIo: b.sig !== sig };
    } finally {
      if (done) {
        this.deciding.delete(n.id);
        done();
      }
    }
  }

  private async choose(cred: Credentials, n: Node, sig: string, size: number, othersOpen: () => boolean): Promise<Backing | undefined> {
    const w = await this.whole.wholeFile(cred, n.fh);
    const s = this.session();
    // (Checked again: an open that does not pass through may have been made meanwhile.)
    if (!w || w.size !== size || !s || othersOpen()) {
      w?.release();
      return undefined;
    }
    const id = fuseLl().backingOpen(s, w.fd);
    if (id <= 0) {
      w.release();
      if (!this.warned) log.warn({ errno: -id }, 'passthrough: the kernel refused a backing file; reads go through the mount');
      this.warned = true;
      return undefined;
    }
    const b: Backing = { id, opens: 0, sig, release: w.release };
    this.backings.set(n.id, b);
    return b;
  }

  /**
   * Open `fh` ended: released by the kernel, or its answer never reached it
   * (an interrupted open). At a node's last open, its backing id goes.
   */
  closed(fh: number): void {
    const id = this.byFh.get(fh);
    if (id === undefined) return;
    this.byFh.delete(fh);
    const b = this.backings.get(id);
    if (!b || --b.opens > 0) return;
    this.backings.delete(id);
    const s = this.session();
    if (s) {
      const r = fuseLl().backingClose(s, b.id);
      if (r < 0) log.debug({ errno: -r }, 'passthrough: closing a backing id failed');
    }
    b.release();
  }

  /** Nodes with a backing file now. */
  get size(): number {
    return this.backings.size;
  }
}
