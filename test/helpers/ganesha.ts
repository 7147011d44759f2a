/**
 * nfs-ganesha 4 as an independent NFSv3 peer for tests and benchmarks.
 *
 * `startGanesha({ dir })` writes a private config into a work directory, runs
 * `ganesha.nfsd -F` (FSAL VFS, NFSv3 only, TCP only, bound to 127.0.0.1) and
 * resolves once `nfs-ls` can list the export. Nothing outside the work
 * directory is written except ganesha's rpcbind registrations (CCacheDir is
 * moved into the work directory, or ganesha would create /run/ganesha).
 *
 * Facts about ganesha 4.3 (Debian 12) this helper is built around:
 *
 * - NFS and MOUNT cannot share a port. Each program gets its own listening
 *   socket; with NFS_Port == MNT_Port both bind (SO_REUSEADDR) but only the NFS
 *   one listens, and it answers MOUNT calls with PROG_UNAVAIL. So an instance
 *   has two ports: `port` (NFS) and `mountPort` (MOUNT).
 * - It exits at start-up unless it can register with an rpcbind. It registers
 *   over the Unix socket /run/rpcbind.sock, so an rpcbind in its own, empty
 *   network namespace (`unshare -n rpcbind -f`) is enough and exposes no port.
 *   `ensureRpcbind()` starts one per process if none answers, detached and
 *   unref'd, and leaves it running; an rpcbind that already answers is used
 *   as is. Clients never need it: they are given both ports explicitly.
 * - Several instances coexist (checked): different ports, work directories
 *   (pid file, recovery root) and D-Bus name prefixes (there is no system bus
 *   here anyway; ganesha logs DBUS CRIT lines and carries on). The only
 *   shared state is rpcbind: the instance started last owns the NFS/MOUNT
 *   registrations, and any instance that stops removes them. That does not
 *   affect serving.
 * - NFSv4 grace is off (Graceless) and NLM, RQUOTA, NFSACL and UDP are off, so
 *   the server is usable as soon as it answers and binds no fixed port.
 * - The VFS FSAL needs root (open_by_handle_at), hence `ganeshaAvailable()`.
 * - Attributes are cached by ganesha's MDCACHE (Attr_Expiration_Time default,
 *   60 s): a change made to `dir` behind ganesha's back may not be visible to
 *   its clients at once.
 *
 * Lifetime: the child process is unref'd, so a running instance never keeps
 * the Node process alive; a process 'exit' hook SIGKILLs instances a test
 * forgot to stop (their rpcbind registrations then stay behind, harmlessly). The work directory (config, ganesha.log, stderr) is kept
 * after stop() for post-mortems.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { reservePort } from './ports.js';
import { hasFile, isRoot, requirePrereq } from './prereq.js';

export interface Ganesha {
  /** NFS program port on 127.0.0.1. */
  port: number;
  /** MOUNT program port on 127.0.0.1 (always differs from `port`, see above). */
  mountPort: number;
  /** The MOUNT dirpath clients use, e.g. '/export'. */
  exportPath: string;
  /** Pid of the current ganesha.nfsd (changes on restart). */
  pid: number;
  /** SIGTERM, wait for exit (SIGKILL after 10 s). Idempotent. */
  stop(): Promise<void>;
  /** Stop, then start again on the same ports and export; resolves when ready. */
  restart(): Promise<void>;
  logFile: string;
}

export interface GaneshaOptions {
  /** Directory to export (must exist). */
  dir: string;
  /** MOUNT dirpath (NFSv4 pseudo path); default '/export'. */
  exportPath?: string;
  /** NFS port; 0 or undefined picks a free one. */
  port?: number;
  /** MOUNT port; 0 or undefined picks a free one. */
  mountPort?: number;
  /** Where config, logs, pid and recovery dirs go; default a fresh mkdtemp. */
  workDir?: string;
}

const GANESHA = '/usr/bin/ganesha.nfsd';
const PLUGINS_DIR = '/usr/lib/x86_64-linux-gnu/ganesha';
const RPCBIND = '/usr/sbin/rpcbind';
/** Starts of one instance when its rpcbind registration loses a race with another instance's (#launch). */
const REGISTER_ATTEMPTS = 5;
/** Starts of a new instance on new ports when a port was taken before ganesha could bind it (startGanesha). */
const BIND_ATTEMPTS = 3;
const UNSHARE = '/usr/bin/unshare';
const NFS_LS = '/usr/bin/nfs-ls';
const RPCBIND_SOCK = '/run/rpcbind.sock';

const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;
const LOG_TAIL_BYTES = 4096;

/** True if this machine can run the helper: ganesha, rpcbind, unshare and nfs-ls exist, and we are root. */
/** Skip reason for tests that need nfs-ganesha (see `ganeshaAvailable`). */
export function ganeshaSkip(): string | false {
  return requirePrereq(isRoot(), hasFile(GANESHA, 'nfs-ganesha, nfs-ganesha-vfs'), hasFile(RPCBIND, 'rpcbind'), hasFile(UNSHARE, 'util-linux'), hasFile(NFS_LS, 'libnfs-utils'));
}

export function ganeshaAvailable(): boolean {
  return (
    process.getuid?.() === 0 &&
    existsSync(GANESHA) &&
    existsSync(RPCBIND) &&
    existsSync(UNSHARE) &&
    existsSync(NFS_LS)
  );
}

export async function startGanesha(opts: GaneshaOptions): Promise<Ganesha> {
  if (!ganeshaAvailable()) {
    throw new Error(`ganesha helper needs root and ${GANESHA}, ${RPCBIND}, ${UNSHARE}, ${NFS_LS}`);
  }
  const dir = path.resolve(opts.dir);
  if (!(await stat(dir)).isDirectory()) throw new Error(`not a directory: ${dir}`);
  const exportPath = opts.exportPath ?? '/export';
  // Both go into the config file verbatim (quoted): refuse anything that could break out.
  if (!/^\/[A-Za-z0-9._/-]*$/.test(exportPath) || exportPath === '/') {
    throw new Error(`exportPath must be an absolute path other than '/' made of [A-Za-z0-9._/-]: ${exportPath}`);
  }
  if (/["\n\r;{}]/.test(dir)) throw new Error(`unsupported character in export dir: ${dir}`);

  const workDir = path.resolve(opts.workDir ?? (await mkdtemp(path.join(os.tmpdir(), 'gvfs-ganesha-'))));
  if (/["\n\r;{}]/.test(workDir)) throw new Error(`unsupported character in workDir: ${workDir}`);
  await mkdir(path.join(workDir, 'recovery'), { recursive: true });

  if (opts.port && opts.port === opts.mountPort) {
    throw new Error('port and mountPort must differ: ganesha 4 cannot serve NFS and MOUNT on one port');
  }
  await ensureRpcbind();
  for (let attempt = 1; ; attempt++) {
    const port = opts.port || (await reservePort());
    const mountPort = opts.mountPort || (await reservePort());
    const configFile = path.join(workDir, 'ganesha.conf');
    await writeFile(configFile, ganeshaConfig({ dir, exportPath, port, mountPort, workDir }));
    const server = new GaneshaServer(workDir, configFile, exportPath, port, mountPort);
    try {
      await server.launch();
      return server;
    } catch (err) {
      // A port of ours taken between the check and ganesha's bind (another
      // process's listener): new ports, unless the caller chose them.
      const chosen = Boolean(opts.port && opts.mountPort);
      if (chosen || attempt >= BIND_ATTEMPTS || !/Cannot bind/.test((err as Error).message)) throw err;
    }
  }
}

function ganeshaConfig(c: { dir: string; exportPath: string; port: number; mountPort: number; workDir: string }): string {
  return `# written by test/helpers/ganesha.ts
NFS_CORE_PARAM {
  NFS_Port = ${c.port};
  MNT_Port = ${c.mountPort};
  Bind_Addr = 127.0.0.1;
  NFS_Protocols = 3;
  Enable_UDP = false;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_NFSACL = false;
  Plugins_Dir = "${PLUGINS_DIR}";
  mount_path_pseudo = true;
  Clustered = false;
  Dbus_Name_Prefix = "gvfs_${c.port}";
}
NFSv4 {
  Graceless = true;
  RecoveryBackend = fs;
  RecoveryRoot = "${path.join(c.workDir, 'recovery')}";
}
NFS_KRB5 {
  Active_krb5 = false;
  CCacheDir = "${c.workDir}";
}
EXPORT {
  Export_Id = 1;
  Path = "${c.dir}";
  Pseudo = "${c.exportPath}";
  Access_Type = RW;
  Squash = No_Root_Squash;
  SecType = sys;
  Protocols = 3;
  Transports = TCP;
  FSAL { Name = VFS; }
}
`;
}

/** Instances not yet stopped; killed on process exit so a forgotten stop() leaks nothing. */
const live = new Set<GaneshaServer>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const s of live) s.killNow();
  });
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

class GaneshaServer implements Ganesha {
  readonly logFile: string;
  readonly #stderrFile: string;
  readonly #pidFile: string;
  #child: ChildProcess | undefined;
  #exited: Promise<Exit> | undefined;
  #pid = 0;
  /** Serializes launch/stop/restart. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly workDir: string,
    readonly configFile: string,
    readonly exportPath: string,
    readonly port: number,
    readonly mountPort: number,
  ) {
    this.logFile = path.join(workDir, 'ganesha.log');
    this.#stderrFile = path.join(workDir, 'ganesha.stderr');
    this.#pidFile = path.join(workDir, 'ganesha.pid');
  }

  get pid(): number {
    return this.#pid;
  }

  launch(): Promise<void> {
    return this.#serial(() => this.#launch());
  }

  stop(): Promise<void> {
    return this.#serial(() => this.#stop());
  }

  restart(): Promise<void> {
    return this.#serial(async () => {
      await this.#stop();
      await this.#launch();
    });
  }

  /** Synchronous last resort for the process 'exit' hook. */
  killNow(): void {
    if (this.#child && this.#child.exitCode === null && this.#child.signalCode === null) {
      try {
        this.#child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op, op);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Start, and start again when ganesha exited because its rpcbind
   * registration lost a race: two instances starting at once (two test runs
   * on one machine) can each unset and then set NFS v3 at the shared
   * rpcbind, and the later SET fails ("Cannot register NFS V3 on TCP",
   * seen once in a loaded run). Any other failure is final.
   */
  async #launch(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#launchOnce();
      } catch (err) {
        if (attempt >= REGISTER_ATTEMPTS || !/Cannot register/.test((err as Error).message)) throw err;
      }
    }
  }

  async #launchOnce(): Promise<void> {
    const logStart = await fileSize(this.logFile);
    const stderr = await open(this.#stderrFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(
        GANESHA,
        ['-F', '-f', this.configFile, '-L', this.logFile, '-p', this.#pidFile, '-N', 'NIV_EVENT'],
        { cwd: this.workDir, stdio: ['ignore', stderr.fd, stderr.fd] },
      );
    } finally {
      await stderr.close(); // the child has its own copy
    }
    this.#exited = new Promise<Exit>((resolve) => {
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    this.#child = child;
    this.#pid = child.pid ?? 0;
    child.unref();
    live.add(this);
    installExitHook();

    try {
      await this.#waitReady();
    } catch (err) {
      await this.#stop();
      const tail = await this.#logTail(logStart);
      throw new Error(`${(err as Error).message}\n--- ganesha log (${this.logFile}) ---\n${tail}`);
    }
  }

  async #waitReady(): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    const exited = this.#exited!;
    let died: Exit | undefined;
    void exited.then((e) => (died = e));
    let last = 'not yet tried';
    while (Date.now() < deadline) {
      if (died) {
        const how = died.error ? died.error.message : `code ${died.code} signal ${died.signal}`;
        throw new Error(`ganesha.nfsd exited during start-up (${how})`);
      }
      if (!(await tcpProbe(this.port))) last = `no TCP listener on 127.0.0.1:${this.port}`;
      else if (!(await tcpProbe(this.mountPort))) last = `no TCP listener on 127.0.0.1:${this.mountPort}`;
      else {
        const r = await nfsLs(this.#lsUrl());
        if (r.ok) return;
        last = `nfs-ls: ${r.message}`;
      }
      await delay(50);
    }
    throw new Error(`ganesha not ready after ${READY_TIMEOUT_MS} ms on port ${this.port}/${this.mountPort} (${last})`);
  }

  #lsUrl(): string {
    return `nfs://127.0.0.1${this.exportPath}/?version=3&nfsport=${this.port}&mountport=${this.mountPort}`;
  }

  async #stop(): Promise<void> {
    const child = this.#child;
    const exited = this.#exited;
    if (!child || !exited) return;
    child.ref(); // keep the loop alive until the exit is seen
    try {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
        try {
          await exited;
        } finally {
          clearTimeout(timer);
        }
      } else {
        await exited;
      }
    } finally {
      child.unref();
      live.delete(this);
      this.#child = undefined;
      this.#exited = undefined;
    }
  }

  async #logTail(from: number): Promise<string> {
    const log = await readTail(this.logFile, from);
    const err = await readTail(this.#stderrFile, 0);
    return err.trim() ? `${log}\n--- stderr ---\n${err}` : log;
  }
}

async function fileSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

/** The last LOG_TAIL_BYTES of `file` written after offset `from`. */
async function readTail(file: string, from: number): Promise<string> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch {
    return '(no log)';
  }
  try {
    const size = (await fh.stat()).size;
    const start = Math.max(from, size - LOG_TAIL_BYTES);
    const buf = Buffer.alloc(Math.max(0, size - start));
    await fh.read(buf, 0, buf.length, start);
    return buf.toString('utf8');
  } finally {
    await fh.close();
  }
}

function tcpProbe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function nfsLs(url: string): Promise<{ ok: boolean; message: string }> {
  return new Promise((resolve) => {
    execFile(NFS_LS, [url], { timeout: 5000, killSignal: 'SIGKILL' }, (err, _stdout, stderr) => {
      if (!err) resolve({ ok: true, message: '' });
      else resolve({ ok: false, message: (String(stderr).trim() || err.message).slice(0, 300) });
    });
  });
}

// ---------------------------------------------------------------------------
// rpcbind

let rpcbindReady: Promise<void> | undefined;

/**
 * Make sure an rpcbind answers on /run/rpcbind.sock. Started at most once per
 * process; a failed attempt is forgotten so a later call can retry.
 */
function ensureRpcbind(): Promise<void> {
  rpcbindReady ??= startRpcbindIfNeeded().catch((err: unknown) => {
    rpcbindReady = undefined;
    throw err;
  });
  return rpcbindReady;
}

async function startRpcbindIfNeeded(): Promise<void> {
  if (await rpcbindAnswers()) return;
  // Own network namespace: its TCP/UDP port 111 exist only in an empty
  // namespace; ganesha reaches it through the Unix socket. No -w: a warm start
  // would resurrect stale registrations.
  const child = spawn(UNSHARE, ['-n', RPCBIND, '-f'], { detached: true, stdio: 'ignore' });
  let exit: string | undefined;
  child.once('error', (e) => (exit = e.message));
  child.once('exit', (code, signal) => (exit = `exit code ${code} signal ${signal}`));
  child.unref();
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (await rpcbindAnswers()) return;
    // Exiting is fine if another rpcbind won a race and answers now.
    if (exit !== undefined && !(await rpcbindAnswers())) {
      throw new Error(`could not start rpcbind (unshare -n ${RPCBIND} -f: ${exit})`);
    }
    await delay(50);
  }
  throw new Error(`rpcbind started but ${RPCBIND_SOCK} does not answer`);
}

/** PMAP v2 NULL call over the Unix socket; true on an accepted, successful reply. */
function rpcbindAnswers(): Promise<boolean> {
  return new Promise((resolve) => {
    const xid = (Math.random() * 0x7fffffff) >>> 0;
    const call = Buffer.alloc(44);
    call.writeUInt32BE(0x80000000 + 40, 0); // last fragment, 40 bytes
    // xid, CALL, rpcvers 2, PMAP 100000, v2, NULL, cred AUTH_NONE, verf AUTH_NONE
    [xid, 0, 2, 100000, 2, 0, 0, 0, 0, 0].forEach((v, i) => call.writeUInt32BE(v, 4 + 4 * i));
    const s = net.connect({ path: RPCBIND_SOCK });
    let got = Buffer.alloc(0);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    s.once('error', () => done(false));
    s.once('connect', () => s.write(call));
    s.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length > 256) return done(false);
      if (got.length < 28) return;
      // mark, xid, REPLY(1), MSG_ACCEPTED(0), verf flavor, verf len 0, SUCCESS(0)
      done(
        got.readUInt32BE(4) === xid &&
          got.readUInt32BE(8) === 1 &&
          got.readUInt32BE(12) === 0 &&
          got.readUInt32BE(20) === 0 &&
          got.readUInt32BE(24) === 0,
      );
    });
  });
}
