import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HASH_RE } from './auth.js';

/**
 * Stored chunks on the tier's disk, one file per chunk (DIR/HASH), bounded
 * by bytes: least recently used first out. The index lives in memory and is
 * rebuilt from the directory at start (oldest modification first). A write
 * goes to a temporary name then is renamed: a crash leaves no partial chunk
 * under its hash (and hosts verify every chunk anyway).
 */
export class DiskLru {
  private readonly index = new Map<string, number>();
  private bytes = 0;

  private constructor(
    private readonly dir: string,
    readonly maxBytes: number,
  ) {}

  static async open(dir: string, maxBytes: number): Promise<DiskLru> {
    const d = new DiskLru(dir, maxBytes);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const found: Array<{ h: string; size: number; t: number }> = [];
    for (const name of await readdir(dir)) {
      const f = path.join(dir, name);
      if (!HASH_RE.test(name)) {
        if (name.startsWith('.tmp-')) await unlink(f).catch(() => {});
        continue;
      }
      const s = await stat(f).catch(() => undefined);
      if (s?.isFile()) found.push({ h: name, size: s.size, t: s.mtimeMs });
    }
    found.sort((a, b) => a.t - b.t);
    for (const x of found) {
      d.index.set(x.h, x.size);
      d.bytes += x.size;
    }
    await d.evict();
    return d;
  }

  get usedBytes(): number {
    return this.bytes;
  }
  get count(): number {
    return this.index.size;
  }

  /** The stored chunk, or undefined (not here, or vanished from the disk). */
  async get(hash: string): Promise<Buffer | undefined> {
    const size = this.index.get(hash);
    if (size === undefined) return undefined;
    this.index.delete(hash);
    this.index.set(hash, size);
    try {
      return await readFile(path.join(this.dir, hash));
    } catch {
      this.drop(hash);
      return undefined;
    }
  }

  async put(hash: string, data: Buffer): Promise<void> {
    if (this.index.has(hash) || data.length > this.maxBytes) return;
    const tmp = path.join(this.dir, `.tmp-${randomBytes(8).toString('hex')}`);
    await writeFile(tmp, data, { mode: 0o600 });
    await rename(tmp, path.join(this.dir, hash));
    this.index.set(hash, data.length);
    this.bytes += data.length;
    await this.evict();
  }

  /** Forget and delete a stored chunk (a reader found it corrupt). */
  async remove(hash: string): Promise<void> {
    if (!this.index.has(hash)) return;
    this.drop(hash);
    await unlink(path.join(this.dir, hash)).catch(() => {});
  }

  private drop(hash: string): void {
    const s = this.index.get(hash);
    if (s === undefined) return;
    this.index.delete(hash);
    this.bytes -= s;
  }

  private async evict(): Promise<void> {
    while (this.bytes > this.maxBytes && this.index.size > 0) {
      const h = this.index.keys().next().value as string;
      this.drop(h);
      await unlink(path.join(this.dir, h)).catch(() => {});
    }
  }
}
