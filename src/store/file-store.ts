import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { checkKey, StoreError, type ObjectInfo, type ObjectStore } from './store.js';

/**
 * A directory as an object store (`file:///path`), for users without S3.
 * A key is a relative path under the root. Writes go to a temporary file
 * in the same directory, are fsync'd, then renamed into place (replace) or
 * hard-linked (ifAbsent: link fails with EEXIST if the key exists), and the
 * directory is fsync'd: a crash leaves the old object or the new one.
 */
export class FileStore implements ObjectStore {
  readonly url: string;
  constructor(readonly root: string) {
    this.url = `file://${root}`;
  }

  private file(key: string): string {
    checkKey(key);
    return path.join(this.root, key);
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await readFile(this.file(key));
    } catch (e) {
      throw mapErr(e, key);
    }
  }

  async head(key: string): Promise<ObjectInfo> {
    try {
      const s = await stat(this.file(key));
      if (!s.isFile()) throw new StoreError('NOT_FOUND', `${key}: not an object`);
      return { key, size: s.size, mtime: s.mtime };
    } catch (e) {
      throw mapErr(e, key);
    }
  }

  async put(key: string, data: Buffer, opts: { ifAbsent?: boolean } = {}): Promise<void> {
    const f = this.file(key);
    const dir = path.dirname(f);
    await mkdir(dir, { recursive: true });
    const tmp = path.join(dir, `.tmp-${randomBytes(8).toString('hex')}`);
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      if (opts.ifAbsent) {
        await link(tmp, f);
        await unlink(tmp);
      } else await rename(tmp, f);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw mapErr(e, key);
    }
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Walk the directory that holds the prefix; keys are compared as strings like S3 does.
    const slash = prefix.lastIndexOf('/');
    const base = slash >= 0 ? prefix.slice(0, slash) : '';
    if (base) checkKey(base);
    const walk = async function* (this: FileStore, rel: string): AsyncIterable<ObjectInfo> {
      let names;
      try {
        names = await readdir(path.join(this.root, rel), { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
      names.sort((a, b) => (a.name < b.name ? -1 : 1));
      for (const d of names) {
        if (d.name.startsWith('.tmp-')) continue;
        const k = rel ? `${rel}/${d.name}` : d.name;
        if (d.isDirectory()) {
          if (k.startsWith(prefix) || prefix.startsWith(k + '/')) yield* walk.call(this, k);
        } else if (d.isFile() && k.startsWith(prefix)) {
          const s = await stat(path.join(this.root, k)).catch(() => undefined);
          if (s) yield { key: k, size: s.size, mtime: s.mtime };
        }
      }
    };
    yield* walk.call(this, base);
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.file(key));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw mapErr(e, key);
    }
  }

  async close(): Promise<void> {}
}

function mapErr(e: unknown, key: string): Error {
  if (e instanceof StoreError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new StoreError('NOT_FOUND', `${key}: no such object`);
  if (code === 'EEXIST') return new StoreError('EXISTS', `${key}: exists`);
  return new StoreError('IO', `${key}: ${(e as Error).message}`);
}
