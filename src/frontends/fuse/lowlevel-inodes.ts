import { FsError } from '../../backend/errors.js';
import type { Fattr3 } from '../../nfs3/types.js';

/** FUSE_ROOT_ID: the kernel's node id of the mount's root. */
export const ROOT_ID = 1;

/** One file the kernel knows: our node id for it, its handle, and how many lookups the kernel holds. */
export interface Node {
  id: number;
  fh: Buffer;
  /** The handle as a map key (base64), shared with OpenFiles. */
  key: string;
  nlookup: number;
  /** The attributes last seen (served again only while `said` vouches for them: see LowLevelFrontend.cachedFor). */
  last?: Fattr3;
  /**
   * `last` is what the server said at `at` (performance.now(): when we asked, or earlier when the layer
   * below answered from what it holds), and nothing of ours has changed the file since (`gen` still the
   * node's, `epoch` still the front end's): a GETATTR may be answered from it for what is left of the
   * attribute budget. `renew`: the layer below renews it when asked in its second half. Cleared by every
   * change we make.
   */
  said?: { at: number; gen: number; epoch: number; renew?: boolean };
  /** Changes of ours to this file begun so far (SETATTR, WRITE, changes of a directory's entries), the last at `changedAt`. */
  gen?: number;
  changedAt?: number;
  /** size and mtime at the last open: the page cache is kept across opens only while they stay the same. */
  openSig?: string;
  /** WRITEs of ours in flight, and answered so far: a GETATTR overlapping one may predate it. */
  writing?: number;
  /** `last` came from our own WRITE / SETATTR reply (not from a fetch). */
  lastOwn?: boolean;
  writes?: number;
  /** Unlinked while open: the hidden name it lives under until its last descriptor goes. */
  hidden?: { dir: Buffer; name: string };
}

/**
 * The inode table: node ids are our file identities. A node is keyed by the
 * backend's file handle, so every name of a hard-linked file (one handle) is
 * one node — one kernel inode, whose nlink, ctime and pages all names share.
 * The kernel counts lookups (every entry reply, readdirplus entry, create,
 * mknod, mkdir, symlink, link) and gives them back by FORGET; a node whose
 * count reaches 0 is dropped. Ids are never reused while the process runs
 * (a 53-bit counter), so generation 0 is always right.
 */
export class Inodes {
  private readonly byId = new Map<number, Node>();
  private readonly byKey = new Map<string, Node>();
  private next = ROOT_ID + 1;

  constructor(rootFh: Buffer) {
    const root: Node = { id: ROOT_ID, fh: rootFh, key: rootFh.toString('base64'), nlookup: 1 };
    this.byId.set(ROOT_ID, root);
    this.byKey.set(root.key, root);
  }

  get size(): number {
    return this.byId.size;
  }

  /** The node the kernel names; ESTALE if the kernel forgot it already (a bug somewhere, never a guess). */
  get(id: number): Node {
    const n = this.byId.get(id);
    if (!n) throw new FsError('STALE', `node ${id} is not in the inode table`);
    return n;
  }

  /** The node of a handle, made if new. Its lookup count is raised by `ref` once the kernel has the answer. */
  of(fh: Buffer): Node {
    const key = fh.toString('base64');
    let n = this.byKey.get(key);
    if (!n) {
      n = { id: this.next++, fh, key, nlookup: 0 };
      this.byId.set(n.id, n);
      this.byKey.set(key, n);
    }
    return n;
  }

  /** The kernel now holds one more lookup of `n`. */
  ref(n: Node): void {
    n.nlookup++;
    // Dropped by a FORGET between `of` and the reply: back in the table.
    if (!this.byId.has(n.id)) {
      this.byId.set(n.id, n);
      this.byKey.set(n.key, n);
    }
  }

  /** A node that was made for an answer that was never given (the reply failed): drop it if nothing holds it. */
  unref(n: Node): void {
    if (n.nlookup === 0 && n.id !== ROOT_ID) this.drop(n);
  }

  /** FORGET: the kernel gives back `count` lookups. */
  forget(id: number, count: number): void {
    const n = this.byId.get(id);
    if (!n || id === ROOT_ID) return;
    n.nlookup -= count;
    if (n.nlookup <= 0) this.drop(n);
  }

  private drop(n: Node): void {
    this.byId.delete(n.id);
    if (this.byKey.get(n.key) === n) this.byKey.delete(n.key);
  }

  /** The node of a handle key (OpenFiles' key) if the kernel holds one. */
  peekKey(key: string): Node | undefined {
    return this.byKey.get(key);
  }

  /** Every node the kernel holds (for an invalidation of everything). */
  nodes(): IterableIterator<Node> {
    return this.byId.values();
  }

  /** The node of a handle if the kernel holds one. */
  peek(fh: Buffer): Node | undefined {
    return this.byKey.get(fh.toString('base64'));
  }
}
