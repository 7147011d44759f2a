import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { FType, StableHow } from '../../../src/nfs3/constants.js';
import { AuthFlavor, type Credentials } from '../../../src/rpc/types.js';
import { spawnGvfs, type GvfsProcess, type RunAs } from '../../helpers/gvfs-proc.js';
import { tempDir } from '../../helpers/local-server.js';
import { until } from '../../helpers/services.js';
import { hasFile, isRoot, requirePrereq } from '../../helpers/prereq.js';
import { syncFaults } from '../../helpers/sync-faults.js';
import { attachStrace, detachStrace, STRACE } from '../../helpers/strace.js';

/**
 * RFC 1813 §1.6: CREATE, MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR, RENAME and
 * LINK are synchronous — what the reply says was done survives the server's
 * crash. A power loss cannot be staged here (no device mapper in this VM),
 * so the test watches the system calls instead: `gvfs serve` runs under
 * strace, and for each call the new object and every directory whose
 * entries changed must be fsync'd (or, for what cannot be opened, the file
 * system syncfs'd) before the reply goes out on the socket. Calls are
 * told apart by a LOOKUP of a unique missing name between them (its statx
 * is in the trace).
 */

interface Traced {
  server: GvfsProcess;
  strace: ChildProcess;
  log: string;
}


/** A `gvfs serve` of DIR/export with the shim loaded, a client of it as root and its root handle. */
interface Faulty {
  dir: string;
  exp: string;
  server: GvfsProcess;
  c: RemoteNfs;
  root: Buffer;
}

/** Run `body` against a new Faulty server whose shim is set by `env(dir)`; everything is stopped and removed after. */
async function withFaultyServer(prefix: string, env: (dir: string) => Record<string, string>, body: (s: Faulty) => Promise<void>): Promise<void> {
  const dir = await tempDir(prefix);
  const exp = path.join(dir, 'export');
  await fs.mkdir(exp);
  const server = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(dir, 'state')], {
    LD_PRELOAD: await syncFaults(dir),
    ...env(dir),
  });
  const c = new RemoteNfs({ host: '127.0.0.1', port: server.port, timeoutMs: 60_000 });
  try {
    await body({ dir, exp, server, c, root: (await c.mount('/', cred(0, 0))).fh });
  } finally {
    await c.close();
    await server.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** A sync in the trace: what it synced (a path; for syncfs the descriptor's), the line it began on and the line it returned on. */
interface Sync {
  target: string;
  syncfs: boolean;
  start: number;
  end: number;
}

interface Step {
  syncs: Sync[];
  /** Line of the last write to a TCP socket before the next marker: the call's reply. */
  replyAt: number;
}

/**
 * The trace cut at the marker LOOKUPs: step i holds the syncs that began between marker i and marker i+1
 * and the reply written last in between. A sync that strace shows in two parts (`<unfinished ...>`, then
 * `<... fsync resumed>` from the same thread) ends where it returned.
 */
function steps(text: string, markers: string[]): Step[] {
  const lines = text.split('\n');
  const syncs: Sync[] = [];
  const writes: number[] = [];
  const open = new Map<string, Sync>();
  lines.forEach((l, i) => {
    const call = /^(\d+)\s+(fsync|fdatasync|syncfs)\(\d+<([^>]*)>(.*)$/.exec(l);
    if (call) {
      const s: Sync = { target: call[3], syncfs: call[2] === 'syncfs', start: i, end: call[4].includes('<unfinished') ? -1 : i };
      syncs.push(s);
      if (s.end < 0) open.set(call[1], s);
      return;
    }
    const resumed = /^(\d+)\s+<\.\.\. (?:fsync|fdatasync|syncfs) resumed>/.exec(l);
    if (resumed && open.has(resumed[1])) {
      open.get(resumed[1])!.end = i;
      open.delete(resumed[1]);
      return;
    }
    if (/^\d+\s+(?:write|writev|sendmsg)\(\d+<TCP:/.test(l)) writes.push(i);
  });
  const at = markers.map((m) => lines.findIndex((l) => l.includes(`"${m}"`)));
  at.forEach((i, k) => assert.ok(i >= 0, `marker ${markers[k]} not in the trace`));
  return at.slice(0, -1).map((from, k) => ({
    syncs: syncs.filter((s) => s.start > from && s.start < at[k + 1]),
    replyAt: Math.max(-1, ...writes.filter((w) => w > from && w < at[k + 1])),
  }));
}

/**
 * `gvfs serve` of DIR/export under strace. Every sync returns 100 ms late (the shim), so a reply that did not
 * wait for one goes out before it returns.
 */
async function traced(dir: string, as?: RunAs): Promise<Traced> {
  const exp = path.join(dir, 'export');
  const state = path.join(dir, 'state');
  await fs.mkdir(exp);
  await fs.mkdir(state, { mode: 0o700 });
  if (as) await Promise.all([fs.chown(exp, as.uid, as.gid), fs.chown(state, as.uid, as.gid)]);
  const env = { LD_PRELOAD: await syncFaults(dir), GVFS_SYNC_DELAY_MS: '100' };
  const server = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', state], env, as);
  const log = path.join(dir, 'strace.log');
  const args = ['-yy', '-s', '256', '-e', 'trace=fsync,fdatasync,syncfs,statx,write,writev,sendmsg,openat2,unlinkat,renameat2'];
  return { server, strace: await attachStrace(server.pid, args, log), log };
}

async function finish(t: Traced): Promise<string> {
  return detachStrace(t.strace, t.log);
}

const cred = (uid: number, gid: number): Credentials => ({ flavor: AuthFlavor.AUTH_SYS, uid, gid, gids: [] });

/** Each step's syncs returned before its reply went out; `want` in order (as a subsequence of what was fsync'd). */
function assertSynced(s: Step, what: string, want: string[], syncfs = 0): void {
  const synced = s.syncs.filter((x) => !x.syncfs).map((x) => x.target);
  let i = 0;
  for (const p of synced) if (i < want.length && p === want[i]) i++;
  assert.equal(i, want.length, `${what}: expected fsync of ${want.join(', ')} in this order, saw ${JSON.stringify(synced)}`);
  assert.ok(s.syncs.filter((x) => x.syncfs).length >= syncfs, `${what}: expected a syncfs`);
  assert.ok(s.replyAt >= 0, `${what}: no reply in the trace`);
  for (const x of s.syncs) assert.ok(x.end >= 0 && x.end < s.replyAt, `${what}: the sync of ${x.target} returned after the reply went out`);
}

describe('namespace changes are on disk before the reply (RFC 1813 §1.6)', { skip: requirePrereq(isRoot(), hasFile(STRACE, 'strace'), hasFile('/usr/bin/cc', 'build-essential')), timeout: 240_000 }, () => {
  const cleanup: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  async function run(as: RunAs | undefined, body: (c: RemoteNfs, root: Buffer, mark: () => Promise<void>) => Promise<void>) {
    const dir = await tempDir('gvfs-durable-');
    await fs.chmod(dir, 0o755);
    const t = await traced(dir, as);
    const c = new RemoteNfs({ host: '127.0.0.1', port: t.server.port, timeoutMs: 60_000 });
    cleanup.push(async () => {
      await c.close();
      await t.server.stop();
      if (t.strace.exitCode === null) t.strace.kill('SIGKILL');
      await fs.rm(dir, { recursive: true, force: true });
    });
    const me = as ? cred(as.uid, as.gid) : cred(0, 0);
    const root = (await c.mount('/', me)).fh;
    const markers: string[] = [];
    const mark = async () => {
      const m = `mark-${markers.length}`;
      markers.push(m);
      await assert.rejects(c.lookup(me, root, m), /NFS3ERR 2\b|NOENT/);
    };
    await body(c, root, mark);
    await mark();
    const text = await finish(t);
    return { steps: steps(text, markers), exp: path.join(dir, 'export'), text, markers };
  }

  test('a root server: every kind of change, its object and directories synced before the reply', async () => {
    const me = cred(0, 0);
    const r = await run(undefined, async (c, root, mark) => {
      const a = (await c.mkdir(me, root, 'a', { mode: 0o755 })).fh!;
      const b = (await c.mkdir(me, root, 'b', { mode: 0o755 })).fh!;
      await mark(); // 0 CREATE (one trip)
      const f = (await c.create(me, a, 'f', { mode: 'guarded', attrs: { mode: 0o644 } })).fh!;
      await mark(); // 1 CREATE given away (root, with a uid)
      await c.create(me, a, 'g', { mode: 'guarded', attrs: { mode: 0o644, uid: 2001, gid: 2001 } });
      await mark(); // 2 MKDIR
      await c.mkdir(me, a, 'sub', { mode: 0o755 });
      await mark(); // 3 MKDIR given away
      await c.mkdir(me, a, 'sub2', { mode: 0o755, uid: 2001, gid: 2001 });
      await mark(); // 4 SYMLINK
      await c.symlink(me, a, 'l', 'f', {});
      await mark(); // 5 MKNOD (FIFO)
      await c.mknod(me, a, 'p', { type: FType.FIFO, attrs: { mode: 0o600 } });
      await mark(); // 6 LINK
      await c.link(me, f, b, 'h');
      await mark(); // 7 RENAME across directories
      await c.rename(me, a, 'f', b, 'f2');
      await mark(); // 8 REMOVE
      await c.remove(me, b, 'f2');
      await mark(); // 9 RMDIR
      await c.rmdir(me, a, 'sub');
      await mark(); // 10 CREATE of a name that is there (UNCHECKED): answered OK, so synced too
      await c.create(me, a, 'g', { mode: 'unchecked', attrs: { mode: 0o644 } });
      const verf = Buffer.from('01234567');
      await mark(); // 11 CREATE EXCLUSIVE
      await c.create(me, a, 'x', { mode: 'exclusive', verf });
      await mark(); // 12 the same CREATE EXCLUSIVE again (a retransmission finds its own file)
      await c.create(me, a, 'x', { mode: 'exclusive', verf });
      await mark(); // 13 RENAME within one directory
      await c.rename(me, a, 'x', a, 'y');
      await mark(); // 14 RENAME over an existing name
      await c.rename(me, a, 'y', b, 'h');
      await mark(); // 15 MKDIR of a name that is there: EXIST says it is, so it is synced too
      await assert.rejects(c.mkdir(me, a, 'sub2', { mode: 0o755 }), /NFS3ERR 17\b|EXIST/);
    });
    const { steps: s, exp } = r;
    const A = path.join(exp, 'a');
    const B = path.join(exp, 'b');
    assert.equal(s.length, 16);
    assertSynced(s[0], 'CREATE', [path.join(A, 'f'), A]);
    assertSynced(s[1], 'CREATE given away', [path.join(A, 'g'), A, path.join(A, 'g')]);
    assertSynced(s[2], 'MKDIR', [path.join(A, 'sub'), A]);
    assertSynced(s[3], 'MKDIR given away', [path.join(A, 'sub2'), A]);
    assertSynced(s[4], 'SYMLINK', [A], 1);
    assertSynced(s[5], 'MKNOD', [A], 1);
    assertSynced(s[6], 'LINK', [path.join(B, 'h'), B]);
    assertSynced(s[7], 'RENAME', [B, A]);
    assertSynced(s[8], 'REMOVE', [B]);
    assertSynced(s[9], 'RMDIR', [A]);
    assertSynced(s[10], 'CREATE of an existing name', [path.join(A, 'g'), A]);
    assertSynced(s[11], 'CREATE EXCLUSIVE', [path.join(A, 'x'), A]);
    assertSynced(s[12], 'CREATE EXCLUSIVE again', [path.join(A, 'x'), A]);
    assertSynced(s[13], 'RENAME in one directory', [A]);
    assertSynced(s[14], 'RENAME over a name', [B, A]);
    assertSynced(s[15], 'MKDIR of an existing name', [path.join(A, 'sub2'), A]);
  });

  test('a one-trip change is made and synced by one thread of the sync lane: no hand-off between threads', async () => {
    const me = cred(0, 0);
    const r = await run(undefined, async (c, root, mark) => {
      const a = (await c.mkdir(me, root, 'a', { mode: 0o755 })).fh!;
      const b = (await c.mkdir(me, root, 'b', { mode: 0o755 })).fh!;
      await mark(); // 0 CREATE
      await c.create(me, a, 'f', { mode: 'guarded', attrs: { mode: 0o644 } });
      await mark(); // 1 RENAME across directories
      await c.rename(me, a, 'f', b, 'f2');
      await mark(); // 2 REMOVE
      await c.remove(me, b, 'f2');
    });
    const lines = r.text.split('\n');
    const at = r.markers.map((m) => lines.findIndex((l) => l.includes(`"${m}"`)));
    const change = [/^(\d+)\s+openat2\(\d+<[^>]*\/a>, "f", \{flags=[^}]*O_CREAT/, /^(\d+)\s+renameat2\(\d+<[^>]*\/a>, "f",/, /^(\d+)\s+unlinkat\(\d+<[^>]*\/b>, "f2",/];
    ['CREATE', 'RENAME', 'REMOVE'].forEach((what, k) => {
      const step = lines.slice(at[k] + 1, at[k + 1]);
      const made = step.map((l) => change[k].exec(l)).filter((x) => x !== null);
      assert.equal(made.length, 1, `${what}: its change not found once in the trace`);
      const syncers = step.map((l) => /^(\d+)\s+(?:fsync|fdatasync|syncfs)\(/.exec(l)).filter((x) => x !== null).map((x) => x[1]);
      assert.ok(syncers.length >= 1, `${what}: no sync in the trace`);
      assert.deepEqual([...new Set(syncers)], [made[0]![1]], `${what}: made by thread ${made[0]![1]}, synced by ${[...new Set(syncers)].join(', ')}`);
    });
  });

  test('a server that is not root (changes made in several trips): synced before the reply', async () => {
    const as = { uid: 2001, gid: 2001 };
    const me = cred(as.uid, as.gid);
    const r = await run(as, async (c, root, mark) => {
      const a = (await c.mkdir(me, root, 'a', { mode: 0o755 })).fh!;
      const b = (await c.mkdir(me, root, 'b', { mode: 0o755 })).fh!;
      await mark(); // 0 CREATE
      const f = (await c.create(me, a, 'f', { mode: 'guarded', attrs: { mode: 0o644 } })).fh!;
      await mark(); // 1 RENAME across directories
      await c.rename(me, a, 'f', b, 'f2');
      await mark(); // 2 LINK
      await c.link(me, f, a, 'back');
      await mark(); // 3 REMOVE
      await c.remove(me, b, 'f2');
    });
    const { steps: s, exp } = r;
    const A = path.join(exp, 'a');
    const B = path.join(exp, 'b');
    assert.equal(s.length, 4);
    assertSynced(s[0], 'CREATE', [path.join(A, 'f'), A]);
    assertSynced(s[1], 'RENAME', [B, A]);
    assertSynced(s[2], 'LINK', [path.join(A, 'back'), A]);
    assertSynced(s[3], 'REMOVE', [B]);
  });
});

/**
 * A sync that fails after the change was made (the disk refuses it): the
 * caller hears IO, the log says so, and the server's own caches follow the
 * disk at once — a name removed or moved is not found again, a name made is.
 */
describe('a namespace change whose sync fails', { skip: requirePrereq(isRoot(), hasFile('/usr/bin/cc', 'build-essential')), timeout: 120_000 }, () => {
  test('REMOVE, RENAME, CREATE and MKDIR answer IO; lookups right after show what the disk holds', async () => {
    await withFaultyServer('gvfs-syncfail-', (dir) => ({ GVFS_SYNC_FAIL_DIRS: path.join(dir, 'fail-now') }), async ({ dir, exp, server, c, root }) => {
      const flag = path.join(dir, 'fail-now');
      const me = cred(0, 0);
      const make = async (name: string) => (await c.create(me, root, name, { mode: 'guarded', attrs: { mode: 0o644 } })).attr!.fileid;
      await make('x');
      const yId = await make('y');
      await make('z');
      // The server's caches learn all three (lookups answered from them afterwards).
      for (const n of ['x', 'y', 'z']) await c.lookup(me, root, n);
      await fs.writeFile(flag, '');
      await assert.rejects(c.remove(me, root, 'x'), /NFS3ERR 5\b|IO/);
      await assert.rejects(c.rename(me, root, 'y', root, 'z'), /NFS3ERR 5\b|IO/);
      await assert.rejects(make('w'), /NFS3ERR 5\b|IO/);
      await assert.rejects(c.mkdir(me, root, 'm', { mode: 0o755 }), /NFS3ERR 5\b|IO/);
      await fs.rm(flag);
      await server.waitLog(/a sync failed/, 10_000);
      // Each change was made on disk; the server answers as the disk is, at once.
      await assert.rejects(c.lookup(me, root, 'x'), /NFS3ERR 2\b|NOENT/, 'x was removed');
      await assert.rejects(c.lookup(me, root, 'y'), /NFS3ERR 2\b|NOENT/, 'y was moved');
      assert.equal((await c.lookup(me, root, 'z')).attr?.fileid, yId, 'z is the moved y');
      assert.equal((await c.lookup(me, root, 'w')).attr?.fileid, BigInt((await fs.stat(path.join(exp, 'w'))).ino));
      assert.equal((await c.lookup(me, root, 'm')).attr?.type, FType.DIR);
      // A retry of the CREATE finds the file and answers OK (synced now).
      assert.ok((await c.create(me, root, 'w', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh);
    });
  });
});

/**
 * Syncs have a lane of their own in the native pool: an fsync that waits
 * long behind other writes to the disk holds no worker that a LOOKUP needs.
 * Every sync here takes 2 s (the shim); eight CREATEs at once would hold all
 * four workers for seconds without the lane.
 */
describe('slow syncs do not hold up other calls', { skip: requirePrereq(isRoot(), hasFile('/usr/bin/cc', 'build-essential')), timeout: 120_000 }, () => {
  /** `gvfs serve` whose every sync takes 2 s and is logged as it begins; `body` gets a client and the root. */
  async function slowSyncs(body: (c: RemoteNfs, root: Buffer, begun: () => Promise<number>, exp: string) => Promise<void>) {
    const log = (dir: string) => path.join(dir, 'syncs.log');
    await withFaultyServer('gvfs-synclane-', (dir) => ({ GVFS_SYNC_DELAY_MS: '2000', GVFS_SYNC_LOG: log(dir) }), async ({ dir, exp, c, root }) => {
      await fs.writeFile(path.join(exp, 'w'), 'x'.repeat(4096));
      const begun = async () => (await fs.readFile(log(dir), 'utf8').catch(() => '')).split('\n').length - 1;
      await body(c, root, begun, exp);
    });
  }

  /**
   * Eight calls whose syncs are slow, then (four syncs under way: without the lane, all four workers in
   * them) `probe`, a call on a missing name that needs a worker and no sync (a LOOKUP by default): answered first.
   */
  async function lookupFirst(c: RemoteNfs, root: Buffer, begun: () => Promise<number>, calls: Array<() => Promise<unknown>>, probe: () => Promise<unknown> = () => c.lookup(cred(0, 0), root, 'missing')) {
    const order: string[] = [];
    const base = await begun();
    const running = calls.map((call, i) => call().then(() => order.push(`call ${i}`)));
    await until('four syncs under way', async () => (await begun()) - base >= 4, 30_000);
    await assert.rejects(probe(), /NFS3ERR 2\b|NOENT/);
    order.push('lookup');
    await Promise.all(running);
    assert.equal(order[0], 'lookup', `answered in this order: ${order.join(', ')}`);
    assert.equal(order.length, calls.length + 1);
  }

  test('a LOOKUP sent while eight CREATEs wait on their syncs is answered before any of them', async () => {
    await slowSyncs(async (c, root, begun) => {
      const me = cred(0, 0);
      await lookupFirst(c, root, begun, Array.from({ length: 8 }, (_, i) => () => c.create(me, root, `f${i}`, { mode: 'guarded', attrs: { mode: 0o644 } })));
    });
  });

  test('a LOOKUP sent while eight FILE_SYNC WRITEs wait on their syncs is answered before any of them', async () => {
    await slowSyncs(async (c, root, begun, exp) => {
      const me = cred(0, 0);
      const w = (await c.lookup(me, root, 'w')).fh;
      const data = Buffer.alloc(512, 1);
      await lookupFirst(c, root, begun, Array.from({ length: 8 }, (_, i) => () => c.write(me, w, i * 512, data, StableHow.FILE_SYNC)));
      assert.deepEqual((await fs.readFile(path.join(exp, 'w'))).subarray(0, 4096), Buffer.alloc(4096, 1));
    });
  });

  test('a REMOVE of a missing name sent while eight FILE_SYNC WRITEs wait on their syncs is answered before any of them', async () => {
    // A namespace change is made on the sync lane only while one of its threads is idle: with the lane
    // busy, a worker makes it, and one that fails (no sync owed) does not wait behind the lane's syncs.
    await slowSyncs(async (c, root, begun) => {
      const me = cred(0, 0);
      const w = (await c.lookup(me, root, 'w')).fh;
      const data = Buffer.alloc(512, 1);
      await lookupFirst(c, root, begun, Array.from({ length: 8 }, (_, i) => () => c.write(me, w, i * 512, data, StableHow.FILE_SYNC)), () => c.remove(me, root, 'missing'));
    });
  });
});
