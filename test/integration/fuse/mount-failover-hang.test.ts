import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { tempDir } from '../../helpers/local-server.js';
import { keyFile } from '../../helpers/key-file.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { Relay } from '../../helpers/relay.js';
import { seeded } from '../store/guest-versions.js';
import { FileStore } from '../../../src/store/file-store.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, writePublisherKey } from '../../../src/image/signature.js';
import { fuseSkip, spawnMount, type MountProc } from './mount-helper.js';

/**
 * `gvfs mount --server A,B` on two store-backed proxy servers (one store,
 * one handle secret): a separate program reads a file through the kernel
 * and FUSE; half-way, A hangs (a relay in front of it stops forwarding,
 * A keeps the connection open and answers nothing). The mount abandons the
 * silent connection after --timeout / 2 and goes on with B; the program
 * sees a delay, never an error, and every byte is right.
 */
const TIMEOUT_MS = 10_000;
const PIECE = 256 << 10;

/**
 * The program: reads FILE in PIECE reads; after half, says "half" and waits for a line on stdin; then reads the rest
 * and all of LATE (a file it never opened before: whatever read-ahead did with FILE, LATE's bytes must come from a
 * server after A hung); at the end prints "<bytes> <sha256>" of FILE then LATE.
 */
const READER = `
const fs = require('node:fs'); const { createHash } = require('node:crypto');
const [file, late, piece] = [process.argv[1], process.argv[2], Number(process.argv[3])];
const h = createHash('sha256'); const buf = Buffer.alloc(piece); let total = 0;
const readAll = (fd, from, until) => {
  for (let off = from; off < until; ) {
    const n = fs.readSync(fd, buf, 0, Math.min(piece, until - off), off); if (n <= 0) throw new Error('short read at ' + off); h.update(buf.subarray(0, n)); off += n; total += n;
  }
};
const fd = fs.openSync(file, 'r'); const size = fs.fstatSync(fd).size; const half = Math.floor(size / 2 / piece) * piece;
readAll(fd, 0, half);
process.stdout.write('half\\n');
process.stdin.once('data', () => {
  readAll(fd, half, size);
  const fd2 = fs.openSync(late, 'r'); readAll(fd2, 0, fs.fstatSync(fd2).size);
  process.stdout.write(total + ' ' + h.digest('hex') + '\\n'); process.exit(0);
});
`;

describe('gvfs mount --server A,B: a program reading through FUSE goes on with B when A hangs', { skip: fuseSkip(), timeout: 300_000 }, () => {
  const procs: GvfsProcess[] = [];
  const relays: Relay[] = [];
  let m: MountProc | undefined;
  after(async () => {
    await m?.stop();
    for (const r of relays) r.close();
    for (const p of procs) await p.stop().catch(() => {});
  });

  test('A frozen half-way through a read: the program finishes with the right bytes, served by B', async () => {
    const work = await tempDir('gvfs-mount-failover-');
    const big = Buffer.concat([seeded(12 << 20, 'fo-1'), Buffer.alloc(1 << 20), seeded(11 << 20, 'fo-2')]);
    const src = path.join(work, 'src');
    await mkdir(src);
    await writeFile(path.join(src, 'big.img'), big);
    const late = seeded(3 << 20, 'fo-late');
    await writeFile(path.join(src, 'late.img'), late);
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    const storeDir = path.join(work, 'store');
    await pushImage(new FileStore(storeDir), src, 'img', await readPublisherKey(path.join(work, 'pub')));
    const { file: key } = await keyFile(work, 'session.key');
    const secret = path.join(work, 'handle-secret');
    await writeFile(secret, randomBytes(32), { mode: 0o600 });
    const server = async (name: string) => {
      const p = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--store', `file://${storeDir}`, '--trust-publisher', pubFile, '--key', key, '--handle-secret', secret, '--state-dir', path.join(work, name)]);
      procs.push(p);
      return p;
    };
    const a = await server('a');
    const b = await server('b');
    const relay = new Relay(a.port);
    relays.push(relay);
    const rPort = await relay.listen();
    m = await spawnMount(`127.0.0.1:${rPort},127.0.0.1:${b.port}`, path.join(work, 'mnt'), ['--key', key, '--export', '/', '--no-meta', '--cache-dir', path.join(work, 'cache'), '--trust-publisher', pubFile, '--timeout', String(TIMEOUT_MS)]);

    const reader = spawn(process.execPath, ['-e', READER, path.join(m.mnt, 'img', 'big.img'), path.join(m.mnt, 'img', 'late.img'), String(PIECE)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    reader.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => reader.once('exit', (c) => r(c)));
    const lines = createInterface({ input: reader.stdout! })[Symbol.asyncIterator]();
    const first = await lines.next();
    assert.equal(first.value, 'half', `reader: ${err}`);
    const bBefore = await cpuTicks(b.pid);
    relay.freeze('both');
    const t0 = Date.now();
    reader.stdin!.write('go\n');
    const last = await lines.next();
    const took = Date.now() - t0;
    assert.equal(await exited, 0, `the program failed: ${err}`);
    const [bytes, sum] = String(last.value).split(' ');
    assert.equal(Number(bytes), big.length + late.length);
    assert.equal(sum, createHash('sha256').update(big).update(late).digest('hex'), 'the bytes read through the mount differ from the image');
    assert.ok(relay.heldBytes > 0, 'the mount sent to A after it hung (late.img was never read before)');
    assert.match(m.stderr(), /failed over/, 'the mount moved to B');
    assert.ok((await cpuTicks(b.pid)) > bBefore, 'B did work after A hung');
    // The silence bound (timeout / 2) plus a reconnect; far below the per-call deadline's failure, generous under load.
    assert.ok(took < TIMEOUT_MS / 2 + 20_000, `the second half took ${took} ms`);
  });
});

async function cpuTicks(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}
