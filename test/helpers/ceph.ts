/**
 * A single-node Ceph cluster with an S3 gateway, for object-store tests.
 *
 * `startCeph()` lays out a cluster in a fresh temp directory and runs every
 * daemon in the foreground as a child of this process (no systemd, no
 * /etc/ceph, nothing written outside the directory):
 *
 *   ceph-mon (one monitor, `paxos propose interval` 0.1 s so map changes
 *   commit at once) → ceph-osd (one OSD on memstore: no disk image to
 *   create, and bluestore-on-a-file is not needed for a few hundred MiB of
 *   test data) → radosgw (beast on 127.0.0.1, a free port) → a user with
 *   keys made by radosgw-admin.
 *
 * Facts about Ceph 16.2 (Debian 12) this helper is built around:
 * - `auth ... required = none` keeps keyrings out of the way; but then every
 *   `ms * mode` must be `crc`: a daemon's default mon-client mode list
 *   prefers `secure`, which needs cephx, and radosgw hangs on
 *   "get_initial_auth_request returned -13" otherwise.
 * - The OSD's data dir is `osd data` with `$name` = `osd.0`; it must exist
 *   before `--mkfs` (memstore asserts in set_fsid if not).
 * - With one OSD, pools need size 1 (`mon allow pool size one`), and
 *   radosgw creates its pools on first start (takes a few seconds).
 * - Bucket names need at least 3 characters; If-None-Match: * is honoured
 *   (412 on an existing key).
 *
 * Measured here (2 cores, shared with other builds): mon ~0.4 s, OSD
 * ~3.5 s, radosgw ~2.5 s plus ~3 s for the user when idle, 16-29 s in all
 * under load; about 120 MiB RSS for the three daemons at start, 400 MiB
 * after the object-store tests (memstore holds the objects in memory).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { reservePort } from './ports.js';
import { hasFile, requirePrereq } from './prereq.js';

const run = promisify(execFile);

export interface Ceph {
  /** S3 endpoint, http://127.0.0.1:PORT */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  dir: string;
  /** Seconds from start to a usable S3 endpoint with a user. */
  startSeconds: number;
  /** Resident memory of the daemons now (bytes). */
  rssBytes(): Promise<number>;
  /** The daemons' process ids (mon, osd, radosgw), e.g. for their CPU time. */
  pids(): number[];
  stop(): Promise<void>;
}

/** Skip reason (false if all present); throws under CI when something is missing. */
export function cephPrereq(): string | false {
  return requirePrereq(
    hasFile('/usr/bin/ceph-mon', 'ceph-mon'),
    hasFile('/usr/bin/ceph-osd', 'ceph-osd'),
    hasFile('/usr/bin/radosgw', 'radosgw'),
    hasFile('/usr/bin/radosgw-admin', 'radosgw'),
    hasFile('/usr/bin/monmaptool', 'ceph-mon'),
    hasFile('/usr/bin/ceph', 'ceph-common'),
  );
}

const live = new Set<ChildProcess>();
let hook = false;
function track(c: ChildProcess): void {
  live.add(c);
  c.once('exit', () => live.delete(c));
  if (!hook) {
    hook = true;
    process.on('exit', () => {
      for (const p of live) p.kill('SIGKILL');
    });
  }
}

async function waitFor(what: string, deadlineMs: number, probe: () => Promise<boolean>, died: () => string | undefined): Promise<void> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const d = died();
    if (d) throw new Error(`ceph: ${what}: ${d}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`ceph: ${what} not ready after ${deadlineMs} ms`);
    await delay(100);
  }
}

export async function startCeph(opts: { timeoutMs?: number } = {}): Promise<Ceph> {
  const t0 = performance.now();
  const timeout = opts.timeoutMs ?? 90_000;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gvfs-ceph-'));
  const fsid = randomUUID();
  const monPort = await reservePort();
  const conf = path.join(dir, 'ceph.conf');
  for (const d of ['run', 'log', 'mon', 'osd/osd.0', 'rgw']) await mkdir(path.join(dir, d), { recursive: true });
  await writeFile(
    conf,
    `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
ms bind ipv6 = false
run dir = ${dir}/run
log file = ${dir}/log/$name.log
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
keyring = ${dir}/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
[mon]
mon data = ${dir}/mon/$name
paxos propose interval = 0.1
[osd]
osd data = ${dir}/osd/$name
osd objectstore = memstore
memstore device bytes = 402653184
osd max object name len = 460
osd max object namespace len = 64
[client.rgw]
rgw data = ${dir}/rgw
`,
  );
  const procs: ChildProcess[] = [];
  const stderrOf = new Map<ChildProcess, string>();
  const start = (cmd: string, args: string[]): ChildProcess => {
    const c = spawn(cmd, ['-c', conf, '-f', ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    track(c);
    stderrOf.set(c, '');
    c.stderr!.on('data', (b: Buffer) => stderrOf.set(c, (stderrOf.get(c)! + b.toString()).slice(-2000)));
    procs.push(c);
    return c;
  };
  const deadOf = (c: ChildProcess) => () => (c.exitCode !== null || c.signalCode !== null ? `${c.spawnargs[0]} exited (${c.exitCode ?? c.signalCode}): ${stderrOf.get(c)}` : undefined);
  const ceph = (...a: string[]) => run('ceph', ['-c', conf, '--connect-timeout', '10', ...a], { cwd: dir, timeout: 30_000 });
  const stop = async () => {
    await Promise.all(
      procs.reverse().map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const gone = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        const t = setTimeout(() => c.kill('SIGKILL'), 5000);
        await gone;
        clearTimeout(t);
      }),
    );
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await run('ceph-authtool', ['--create-keyring', path.join(dir, 'keyring'), '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']);
    await run('monmaptool', ['--create', '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, '--fsid', fsid, path.join(dir, 'monmap')]);
    await run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', path.join(dir, 'monmap')]);
    const mon = start('ceph-mon', ['-i', 'a']);
    await waitFor('ceph-mon', timeout, async () => (await ceph('mon', 'stat')).stdout.includes('quorum'), deadOf(mon));
    const osdUuid = randomUUID();
    const id = (await ceph('osd', 'new', osdUuid)).stdout.trim();
    if (id !== '0') throw new Error(`ceph: expected osd id 0, got ${id}`);
    await run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid], { cwd: dir });
    const osd = start('ceph-osd', ['-i', '0']);
    await waitFor('ceph-osd', timeout, async () => /1 up/.test((await ceph('osd', 'stat')).stdout), deadOf(osd));
    const rgwPort = await reservePort();
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    const rgw = start('radosgw', ['-n', 'client.rgw', '--rgw-frontends', `beast endpoint=127.0.0.1:${rgwPort}`]);
    await waitFor('radosgw', timeout, async () => (await fetch(endpoint + '/')).status === 200, deadOf(rgw));
    const accessKeyId = 'GVFS' + randomUUID().replace(/-/g, '').slice(0, 16).toUpperCase();
    const secretAccessKey = randomUUID().replace(/-/g, '') + randomUUID().replace(/-/g, '');
    await run('radosgw-admin', ['-c', conf, '-n', 'client.rgw', 'user', 'create', '--uid', 'gvfs-test', '--display-name', 'gvfs test', '--access-key', accessKeyId, '--secret', secretAccessKey], { cwd: dir, timeout: 60_000 });
    const startSeconds = (performance.now() - t0) / 1000;
    return {
      endpoint,
      accessKeyId,
      secretAccessKey,
      dir,
      startSeconds,
      async rssBytes() {
        let sum = 0;
        for (const c of procs) {
          const s = await readFile(`/proc/${c.pid}/status`, 'utf8').catch(() => '');
          const m = /VmRSS:\s+(\d+) kB/.exec(s);
          if (m) sum += Number(m[1]) * 1024;
        }
        return sum;
      },
      pids: () => procs.map((c) => c.pid).filter((p): p is number => p !== undefined),
      stop,
    };
  } catch (e) {
    await stop().catch(() => {});
    throw e;
  }
}
