import os from 'node:os';
import type { WholeFiles } from '../../backend/capabilities.js';
import type { Credentials } from '../../rpc/types.js';
import { fuseLl, type LlSession } from '../../native/fuse-ll.js';
import { logger } from '../../util/log.js';
import type { Node } from './lowlevel-inodes.js';

const log = logger('fuse');
const E = os.constants.errno;

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
 * its backing while any is held; the backing id is unregistered at the last
 * release. So every open of a file reads one version at a time: one made
 * after the file changed on the server, while earlier ones are held, reads
 * their version too (counted as stale), read() and mmap alike — direct I/O
 * would send its reads to us (the new version) but its mmap to the backing
 * (the old one), and a program that does both (a loader: the header read,
 * the segments mapped) would mix two versions. The change shows at the
 * first open once all are closed. O_DIRECT opens never start a backing (the
 * kernel would open the cache's file O_DIRECT, with its alignment rules);
 * beside one they pass through with direct I/O (reads come to us).
 *
 * When the kernel cannot pass through at all (not agreed in INIT, no
 * CAP_SYS_ADMIN, a cache directory on a stacked file system), nothing is
 * asked of the backend again: whole files are made only for opens that can
 * use them.
 */
export class Passthrough {
  private readonly backings = new Map<number, Backing>();
  private readonly deciding = new Map<number, Promise<void>>();
  /** Open file handle → node id, for opens answered with a backing. */
  private readonly byFh = new Map<number, number>();
  /** Opens answered with a backing, and those of them that read an older version than the server's (held opens' backing). */
  readonly counts = { passthroughOpens: 0, passthroughStaleOpens: 0 };
  /** Why passthrough cannot work on this mount, once known. */
  private off?: string;

  constructor(
    private readonly whole: WholeFiles,
    private readonly session: () => LlSession | undefined,
  ) {}

  /**
   * Open `n` (version `sig`, `size` bytes): `register` makes the open's file
   * handle, called exactly once, once the node's backing is decided and
   * before anything else may decide it. `how.eligible`: a read-only open
   * that may start a backing; `how.direct`: an O_DIRECT open; `othersOpen`:
   * whether other opens of the node are held.
   */
  async open(cred: Credentials, n: Node, sig: string, size: number, how: { eligible: boolean; direct: boolean }, othersOpen: () => boolean, register: () => number): Promise<{ fh: number; backingId?: number; directIo?: boolean }> {
    for (let d = this.deciding.get(n.id); d; d = this.deciding.get(n.id)) await d;
    let b = this.backings.get(n.id);
    let done: (() => void) | undefined;
    if (!b && how.eligible && !how.direct && size > 0 && !this.off && !othersOpen() && this.agreed()) {
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
      if (b.sig !== sig) this.counts.passthroughStaleOpens++;
      return { fh, backingId: b.id, directIo: how.direct };
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
      // For good: not root (EPERM), no passthrough (ENOTTY, EOPNOTSUPP), a cache on a stacked file system (ELOOP).
      if ([E.EPERM, E.ENOTTY, E.EOPNOTSUPP, E.ELOOP].includes(-id)) {
        this.off = `errno ${-id}`;
        log.warn({ errno: -id }, 'passthrough: the kernel refuses backing files on this mount; reads go through the mount');
      } else log.debug({ errno: -id }, 'passthrough: the kernel refused a backing file; this open reads through the mount');
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

  /** The kernel agreed to passthrough in INIT (else nothing is asked for: set off). */
  private agreed(): boolean {
    const s = this.session();
    if (s && fuseLl().passthrough(s)) return true;
    if (s && !this.off) {
      this.off = 'not agreed in INIT';
      log.info('passthrough: the kernel did not agree to it (Linux 6.9+ built with FUSE passthrough); reads go through the mount');
    }
    return false;
  }

  /** Nodes with a backing file now. */
  get size(): number {
    return this.backings.size;
  }
}
