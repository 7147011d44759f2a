import { randomBytes } from 'node:crypto';
import type { Backend } from '../../src/backend/backend.js';
import { StableHow } from '../../src/nfs3/constants.js';
import type { Credentials } from '../../src/rpc/types.js';

/**
 * Workloads driven through the backend interface (in practice the
 * remote-NFS client), so the same client code measures every server.
 * Each returns a rate: MiB/s for data, operations/s for metadata.
 */
export interface Target {
  nfs: Backend;
  root: Buffer;
  cred: Credentials;
}

const MiB = 1 << 20;

/** Run `n` tasks with at most `window` in flight. */
async function windowed(n: number, window: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, worker));
}

export async function seqWrite(t: Target, name: string, bytes: number, xfer: number, window: number): Promise<number> {
  const f = await t.nfs.create(t.cred, t.root, name, { mode: 'unchecked', attrs: { mode: 0o644, size: 0 } });
  const buf = randomBytes(xfer);
  const t0 = performance.now();
  await windowed(Math.ceil(bytes / xfer), window, async (i) => {
    await t.nfs.write(t.cred, f.fh!, i * xfer, buf, StableHow.UNSTABLE);
  });
  await t.nfs.commit(t.cred, f.fh!, 0, 0);
  return bytes / MiB / ((performance.now() - t0) / 1000);
}

export async function seqRead(t: Target, name: string, bytes: number, xfer: number, window: number): Promise<number> {
  const { fh } = await t.nfs.lookup(t.cred, t.root, name);
  let got = 0;
  const t0 = performance.now();
  await windowed(Math.ceil(bytes / xfer), window, async (i) => {
    const r = await t.nfs.read(t.cred, fh, i * xfer, xfer);
    got += r.data.length;
  });
  if (got !== bytes) throw new Error(`read ${got} of ${bytes} bytes`);
  return bytes / MiB / ((performance.now() - t0) / 1000);
}

/** Random 4 KiB reads: operations per second with `window` in flight. */
export async function randomReads(t: Target, name: string, fileBytes: number, ops: number, window: number): Promise<number> {
  const { fh } = await t.nfs.lookup(t.cred, t.root, name);
  const blocks = Math.floor(fileBytes / 4096);
  const t0 = performance.now();
  await windowed(ops, window, async () => {
    const r = await t.nfs.read(t.cred, fh, Math.floor(Math.random() * blocks) * 4096, 4096);
    if (r.data.length !== 4096) throw new Error('short read');
  });
  return ops / ((performance.now() - t0) / 1000);
}

/** Create, stat (GETATTR via LOOKUP) and remove `n` files, one at a time (latency-bound, like a program). */
export async function createStatRemove(t: Target, dirName: string, n: number): Promise<{ opsPerSec: number; latencyUs: number }> {
  const d = await t.nfs.mkdir(t.cred, t.root, dirName, { mode: 0o755 });
  const dir = d.fh!;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await t.nfs.create(t.cred, dir, `f${i}`, { mode: 'guarded', attrs: { mode: 0o644 } });
  for (let i = 0; i < n; i++) {
    const l = await t.nfs.lookup(t.cred, dir, `f${i}`);
    await t.nfs.getattr(t.cred, l.fh);
  }
  for (let i = 0; i < n; i++) await t.nfs.remove(t.cred, dir, `f${i}`);
  const secs = (performance.now() - t0) / 1000;
  await t.nfs.rmdir(t.cred, t.root, dirName);
  const ops = n * 4;
  return { opsPerSec: ops / secs, latencyUs: (secs / ops) * 1e6 };
}
