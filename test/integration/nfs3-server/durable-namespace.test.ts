import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { FType } from '../../../src/nfs3/constants.js';
import { AuthFlavor, type Credentials } from '../../../src/rpc/types.js';
import { spawnGvfs, type GvfsProcess, type RunAs } from '../../helpers/gvfs-proc.js';
import { tempDir } from '../../helpers/local-server.js';
import { hasFile, isRoot, requirePrereq } from '../../helpers/prereq.js';

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
const STRACE = '/usr/bin/strace';

interface Traced {
  server: GvfsProcess;
  strace: ChildProcess;
  log: string;
}

/** Attach strace to every thread of `pid` (and threads it starts); resolves once attached. */
async function attach(pid: number, log: string): Promise<ChildProcess> {
  const st = spawn(STRACE, ['-f', '-yy', '-s', '256', '-e', 'trace=fsync,fdatasync,syncfs,statx,write,writev,sendmsg', '-o', log, '-p', String(pid)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    st.stderr!.on('data', (d) => {
      err += d;
      if (/attached/.test(err)) resolve();
    });
    st.on('exit', (code) => reject(new Error(`strace exited (${code}): ${err}`)));
  });
  return st;
}

interface Step {
  /** Paths fsync'd (fsync or fdatasync), in order. */
  synced: string[];
  /** syncfs calls. */
  syncfs: number;
  /** Index (in the step's lines) of the last write to a TCP socket: the call's reply. */
  replyAt: number;
  /** Index of each fsync / syncfs line. */
  syncAt: number[];
}

/** The trace cut at the marker LOOKUPs: step i is what happened between marker i and marker i+1. */
function steps(text: string, markers: string[]): Step[] {
  const lines = text.split('\n');
  const at = markers.map((m) => lines.findIndex((l) => l.includes(`"${m}"`)));
  at.forEach((i, k) => assert.ok(i >= 0, `marker ${markers[k]} not in the trace`));
  return at.slice(0, -1).map((from, k) => {
    const part = lines.slice(from, at[k + 1]);
    const s: Step = { synced: [], syncfs: 0, replyAt: -1, syncAt: [] };
    part.forEach((l, i) => {
      const call = /^\d+\s+(?:<\.\.\. )?(\w+)\(?(\d+)<([^>]*)>/.exec(l);
      if (!call) return;
      const [, name, , target] = call;
      if ((name === 'fsync' || name === 'fdatasync') && !l.includes('resumed')) {
        s.synced.push(target);
        s.syncAt.push(i);
      } else if (name === 'syncfs' && !l.includes('resumed')) {
        s.syncfs++;
        s.syncAt.push(i);
      } else if ((name === 'write' || name === 'writev' || name === 'sendmsg') && target.startsWith('TCP:')) s.replyAt = i;
    });
    return s;
  });
}

async function traced(dir: string, as?: RunAs): Promise<Traced> {
  const exp = path.join(dir, 'export');
  const state = path.join(dir, 'state');
  await fs.mkdir(exp);
  await fs.mkdir(state, { mode: 0o700 });
  if (as) await Promise.all([fs.chown(exp, as.uid, as.gid), fs.chown(state, as.uid, as.gid)]);
  const server = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', state], {}, as);
  const log = path.join(dir, 'strace.log');
  return { server, strace: await attach(server.pid, log), log };
}

async function finish(t: Traced): Promise<string> {
  t.strace.kill('SIGINT'); // detaches
  if (t.strace.exitCode === null) await once(t.strace, 'exit');
  return fs.readFile(t.log, 'utf8');
}

const cred = (uid: number, gid: number): Credentials => ({ flavor: AuthFlavor.AUTH_SYS, uid, gid, gids: [] });

/** Each step's syncs come before its reply; `want` in order (as a subsequence of what was synced). */
function assertSynced(s: Step, what: string, want: string[], syncfs = 0): void {
  let i = 0;
  for (const p of s.synced) if (i < want.length && p === want[i]) i++;
  assert.equal(i, want.length, `${what}: expected fsync of ${want.join(', ')} in this order, saw ${JSON.stringify(s.synced)}`);
  assert.ok(s.syncfs >= syncfs, `${what}: expected a syncfs, saw ${s.syncfs}`);
  assert.ok(s.replyAt >= 0, `${what}: no reply in the trace`);
  for (const a of s.syncAt) assert.ok(a < s.replyAt, `${what}: a sync came after the reply`);
}

describe('namespace changes are on disk before the reply (RFC 1813 §1.6)', { skip: requirePrereq(isRoot(), hasFile(STRACE, 'strace')), timeout: 240_000 }, () => {
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
    return { steps: steps(await finish(t), markers), exp: path.join(dir, 'export') };
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
    });
    const { steps: s, exp } = r;
    const A = path.join(exp, 'a');
    const B = path.join(exp, 'b');
    assert.equal(s.length, 10);
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
