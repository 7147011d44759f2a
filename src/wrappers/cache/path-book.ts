/**
 * Where a handle was last seen in the namespace: handle → (directory handle,
 * name), learnt from the replies that name objects (LOOKUP, CREATE, MKDIR,
 * RENAME, LINK, READDIRPLUS), so log lines about a file (a failed flush) can
 * say its path rather than a hex handle. Memory only, bounded (oldest
 * forgotten first); a path is resolved by walking these links up to an
 * export root — no server call, so it costs nothing on the hot path and is
 * only computed when a line is logged. A path may be stale (renamed or
 * removed elsewhere since): it is what this session last saw.
 */
export class PathBook {
  private readonly up = new Map<string, { dir: string; name: string }>();
  /** Mounted directories: handle → their path in the export (MOUNT's argument, '/' for the export itself). */
  private readonly roots = new Map<string, string>();

  constructor(private readonly max = 200_000) {}

  /** A mounted directory (MOUNT's handle) and its path in the export: paths end here. */
  root(fh: Buffer, mountPath = '/'): void {
    const p = ('/' + mountPath.split('/').filter(Boolean).join('/'));
    this.roots.set(fh.toString('hex'), p);
  }

  /** `fh` is `name` in `dir`. */
  note(dir: Buffer | string, name: string, fh: Buffer): void {
    if (name === '.' || name === '..') return;
    const k = fh.toString('hex');
    this.up.delete(k); // re-inserted last: the map's order is the age
    this.up.set(k, { dir: typeof dir === 'string' ? dir : dir.toString('hex'), name });
    if (this.up.size > this.max) this.up.delete(this.up.keys().next().value as string);
  }

  /**
   * The path of `fh` relative to its export ('/dir/file'), or, when the
   * walk does not reach a root, the part known ('…/dir/file'); undefined
   * when nothing is known.
   */
  pathOf(fh: Buffer | string): string | undefined {
    let k = typeof fh === 'string' ? fh : fh.toString('hex');
    const top = this.roots.get(k);
    if (top !== undefined) return top;
    const parts: string[] = [];
    for (let depth = 0; depth < 256; depth++) {
      const e = this.up.get(k);
      if (!e) break;
      parts.unshift(e.name);
      k = e.dir;
      const r = this.roots.get(k);
      if (r !== undefined) return (r === '/' ? '' : r) + '/' + parts.join('/');
    }
    return parts.length ? '…/' + parts.join('/') : undefined;
  }
}
