import fs from 'node:fs';

/**
 * Promise wrappers over node:fs's callback API, for the cache's request
 * path (fs/promises costs 3-6x more per call here; see local-export/fsx.ts).
 * Only what the cache uses.
 */
type Cb<T> = (e: NodeJS.ErrnoException | null, v: T) => void;
const p =
  <T>(f: (cb: Cb<T>) => void) =>
  () =>
    new Promise<T>((res, rej) => f((e, v) => (e ? rej(e) : res(v))));

export const open = (path: string, flags: string | number, mode = 0o600) => p<number>((cb) => fs.open(path, flags, mode, cb))();
export const close = (fd: number) => p<void>((cb) => fs.close(fd, (e) => cb(e, undefined)))();
export const pread = (fd: number, buf: Buffer, off: number, len: number, pos: number) =>
  p<number>((cb) => fs.read(fd, buf, off, len, pos, (e, n) => cb(e, n)))();
export const pwrite = (fd: number, buf: Buffer, off: number, len: number, pos: number | null) =>
  p<number>((cb) => fs.write(fd, buf, off, len, pos, (e, n) => cb(e, n)))();
export const writev = (fd: number, bufs: Buffer[], pos: number) => p<number>((cb) => fs.writev(fd, bufs, pos, (e, n) => cb(e, n)))();
export const fdatasync = (fd: number) => p<void>((cb) => fs.fdatasync(fd, (e) => cb(e, undefined)))();
export const fsync = (fd: number) => p<void>((cb) => fs.fsync(fd, (e) => cb(e, undefined)))();
export const ftruncate = (fd: number, len: number) => p<void>((cb) => fs.ftruncate(fd, len, (e) => cb(e, undefined)))();
export const fstat = (fd: number) => p<fs.Stats>((cb) => fs.fstat(fd, cb))();
export const stat = (path: string) => p<fs.Stats>((cb) => fs.stat(path, cb))();
export const rename = (a: string, b: string) => p<void>((cb) => fs.rename(a, b, (e) => cb(e, undefined)))();
export const unlink = (path: string) => p<void>((cb) => fs.unlink(path, (e) => cb(e, undefined)))();
export const rmdir = (path: string) => p<void>((cb) => fs.rmdir(path, (e) => cb(e, undefined)))();
export const mkdir = (path: string) => p<void>((cb) => fs.mkdir(path, { recursive: true, mode: 0o700 }, (e) => cb(e, undefined)))();
export const readdir = (path: string) => p<string[]>((cb) => fs.readdir(path, cb))();

/** Write a whole buffer at a position (loops over short writes). */
export async function writeAll(fd: number, buf: Buffer, pos: number): Promise<void> {
  let done = 0;
  while (done < buf.length) done += await pwrite(fd, buf, done, buf.length - done, pos + done);
}

/** Read up to `len` bytes at `pos` into buf[off..]; returns how many came (short only at end of file). */
export async function readFully(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  let done = 0;
  while (done < len) {
    const n = await pread(fd, buf, off + done, len - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** fsync a directory so a new or renamed entry in it survives a crash of the machine. */
export async function syncDir(dir: string): Promise<void> {
  const fd = await open(dir, 'r');
  try {
    await fsync(fd);
  } finally {
    await close(fd);
  }
}

export const isNoEnt = (e: unknown) => (e as NodeJS.ErrnoException)?.code === 'ENOENT';
