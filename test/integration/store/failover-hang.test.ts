import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, ROOT } from '../../helpers/local-server.js';
import { keyFile } from '../../helpers/key-file.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { Relay } from '../../helpers/relay.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { FileStore } from '../../../src/store/file-store.js';
import { pushImage } from '../../../src/image/push.js';
import { readPublisherKey, writePublisherKey } from '../../../src/image/signature.js';
import { GUEST } from './guest-versions.js';
import { sshdSkip, startSshd } from '../../helpers/sshd.js';

/**
 * A clone (every file of the demo guest read through the proxy client, as
 * the vm suite's cold clone reads it) from two store-backed proxy servers;
 * server A fails half-way:
 * - hung: a relay in front of A stops forwarding (A keeps accepting and
 *   answers nothing). The client gives up on A after --timeout / 2 of
 *   silence and the clone finishes from B, bytes identical, the stalled
 *   read delayed by about that bound and no more;
 * - killed with SIGKILL (no drain, no FIN from a clean close).
 */
const TIMEOUT_MS = 10_000; // the per-call deadline; two servers: 5 s of silence abandons one
const STALL_MS = TIMEOUT_MS / 2;
const PIECE = 256 << 10;

describe('store failover when a proxy server hangs or is killed mid-clone', { timeout: 300_000 }, () => {
  const procs: GvfsProcess[] = [];
  const relays: Relay[] = [];
  after(async () => {
    for (const r of relays) r.close();
    for (const p of procs) await p.stop().catch(() => {});
  });

  async function setup() {
    const work = await tempDir('gvfs-failhang-');
    const { pubFile } = await writePublisherKey(path.join(work, 'pub'));
    await pushImage(new FileStore(path.join(work, 'store')), GUEST, 'guest', await readPublisherKey(path.join(work, 'pub')));
    const { file: sessionKey } = await keyFile(work, 'session.key');
    const secret = path.join(work, 'handle-secret');
    await writeFile(secret, randomBytes(32), { mode: 0o600 });
    const server = async (name: string) => {
      const p = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--store', `file://${path.join(work, 'store')}`, '--trust-publisher', pubFile, '--key', sessionKey, '--handle-secret', secret, '--state-dir', path.join(work, name)]);
      procs.push(p);
      return p;
    };
    return { work, sessionKey, a: await server('a'), b: await server('b') };
  }

  async function client(sessionKey: string, servers: string, extra: string[] = []): Promise<{ proc: GvfsProcess; nfs: RemoteNfs }> {
    const proc = await spawnGvfs(['proxy-client', '--listen', '127.0.0.1:0', '--server', servers, '--key', sessionKey, '--no-meta', '--timeout', String(TIMEOUT_MS), ...extra]);
    procs.push(proc);
    return { proc, nfs: new RemoteNfs({ host: '127.0.0.1', port: proc.port, timeoutMs: 120_000 }) };
  }

  /** Read every file of the guest in PIECE reads, 4 at a time; `midway` runs once half the bytes are in. Returns the slowest read (ms). */
  async function clone(nfs: RemoteNfs, midway: () => void | Promise<void>): Promise<{ files: Map<string, Buffer>; slowest: number }> {
    const root = (await nfs.mount('/', ROOT)).fh;
    const dir = (await nfs.lookup(ROOT, root, 'guest')).fh;
    const names = (await readdir(GUEST)).sort();
    const fhs = await Promise.all(names.map(async (n) => ({ n, fh: (await nfs.lookup(ROOT, dir, n)).fh, size: (await nfs.getattr(ROOT, (await nfs.lookup(ROOT, dir, n)).fh)).size })));
    const total = fhs.reduce((s, f) => s + f.size, 0);
    const jobs: Array<{ i: number; off: number }> = [];
    for (const [i, f] of fhs.entries()) for (let off = 0; off < f.size; off += PIECE) jobs.push({ i, off });
    const out = fhs.map((f) => Buffer.alloc(f.size));
    let done = 0;
    let fired = false;
    let slowest = 0;
    const worker = async () => {
      for (let j = jobs.shift(); j; j = jobs.shift()) {
        if (!fired && done >= total / 2) {
          fired = true;
          await midway();
        }
        const t0 = Date.now();
        const r = await nfs.read(ROOT, fhs[j.i].fh, j.off, PIECE);
        slowest = Math.max(slowest, Date.now() - t0);
        r.data.copy(out[j.i], j.off);
        done += r.count;
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    assert.ok(fired, 'the failure happened mid-clone');
    return { files: new Map(fhs.map((f, i) => [f.n, out[i]])), slowest };
  }

  async function assertIdentical(files: Map<string, Buffer>) {
    for (const [n, got] of files) assert.ok(got.equals(await readFile(path.join(GUEST, n))), `${n} differs`);
  }

  test('A hangs (relay stops forwarding): the clone completes from B within the silence bound, bytes identical', async () => {
    const { sessionKey, a, b } = await setup();
    const relay = new Relay(a.port);
    relays.push(relay);
    const rPort = await relay.listen();
    const { proc, nfs } = await client(sessionKey, `127.0.0.1:${rPort},127.0.0.1:${b.port}`);
    try {
      let frozenAt = 0;
      const { files, slowest } = await clone(nfs, () => {
        relay.freeze('both');
        frozenAt = Date.now();
      });
      await assertIdentical(files);
      assert.ok(relay.heldBytes > 0, 'calls were in flight to A when it hung');
      await proc.waitLog(/connection abandoned/, 5_000);
      await proc.waitLog(/failed over/, 5_000);
      // A read caught in the hang waits the silence bound, then a reconnect and its resend to B. Far below the
      // 10 s deadline's failure (an error), generous above the bound for a loaded machine.
      assert.ok(slowest >= STALL_MS - 500, `a read was delayed by the hang (slowest ${slowest} ms)`);
      assert.ok(slowest < STALL_MS + 4_000, `slowest read ${slowest} ms: failover took longer than the bound`);
      assert.ok(Date.now() - frozenAt > STALL_MS - 500);
    } finally {
      await nfs.close();
    }
  });

  test('A is killed with SIGKILL mid-clone: the clone completes from B, bytes identical', async () => {
    const { sessionKey, a, b } = await setup();
    const { proc, nfs } = await client(sessionKey, `127.0.0.1:${a.port},127.0.0.1:${b.port}`);
    try {
      const { files, slowest } = await clone(nfs, () => {
        a.proc.kill('SIGKILL');
      });
      await assertIdentical(files);
      await proc.waitLog(/failed over/, 5_000);
      assert.equal(a.proc.signalCode ?? (await new Promise((r) => a.proc.once('exit', (_c, s) => r(s)))), 'SIGKILL');
      // A dead server's connection closes at once: no wait for the silence bound.
      assert.ok(slowest < STALL_MS, `slowest read ${slowest} ms`);
    } finally {
      await nfs.close();
    }
  });

  test('through an SSH tunnel (--via) to both servers: A hangs mid-clone, the clone completes from B', { skip: sshdSkip() }, async () => {
    const { work, sessionKey, a, b } = await setup();
    const sshd = await startSshd(path.join(work, 'sshd'));
    try {
      const relay = new Relay(a.port);
      relays.push(relay);
      const rPort = await relay.listen();
      const via = ['--via', `ssh://root@127.0.0.1:${sshd.port}`, '--ssh-key', sshd.userKey, '--known-hosts', sshd.knownHosts];
      const { proc, nfs } = await client(sessionKey, `127.0.0.1:${rPort},127.0.0.1:${b.port}`, via);
      try {
        const { files, slowest } = await clone(nfs, () => relay.freeze('both'));
        await assertIdentical(files);
        assert.ok(relay.heldBytes > 0);
        await proc.waitLog(/failed over/, 5_000);
        assert.ok(slowest < STALL_MS + 4_000, `slowest read ${slowest} ms`);
      } finally {
        await nfs.close();
      }
    } finally {
      await sshd.stop();
    }
  });
});
