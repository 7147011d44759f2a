import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { setTimeout as delay } from 'node:timers/promises';
import { newSessionKey } from '../../src/channel/session-key.js';
import { gvfsArgv } from '../../src/cli/self.js';
import { makeSelfSignedCert } from '../../src/channel/tls.js';
import type { AgentConfig } from '../../src/services/agent/agent.js';
import type { KeyDoc } from '../../src/services/api/types.js';
import { request, type HttpReply } from '../../src/services/api/https.js';
import { addUser } from '../../src/services/sessiond/users.js';
import { tempDir } from './local-server.js';

const run = promisify(execFile);

export const ALICE_ACCOUNT = { uid: 2001, gid: 2001, gids: [2001] };
export const BOB_ACCOUNT = { uid: 2002, gid: 2002, gids: [] as number[] };

export interface Proc {
  proc: ChildProcess;
  info: any;
  stderr(): string;
  /** SIGTERM (or the given signal) and wait for the exit. */
  stop(sig?: NodeJS.Signals): Promise<void>;
}

/** `gvfs ARGS --json` in its own process; resolves with its first JSON line. */
export async function startGvfs(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Proc> {
  const proc = spawn(process.execPath, gvfsArgv([...args, '--json']), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GVFS_LOG_LEVEL: process.env.GVFS_LOG_LEVEL ?? 'warn', ...env } });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 1 << 20) err = err.slice(-(1 << 19));
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve);
    void exited.then(() => reject(new Error(`gvfs ${args[0]} exited (${proc.exitCode ?? proc.signalCode}):\n${err}`)));
  });
  return {
    proc,
    info: JSON.parse(line),
    stderr: () => err,
    async stop(sig: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
      await exited;
    },
  };
}

export interface HostDirs {
  name: string;
  state: string;
  exports: string;
  mnt: string;
}

export interface Cluster {
  base: string;
  hosts: Record<string, HostDirs>;
  agents: Record<string, Proc>;
  sessiond: Proc;
  url: string;
  fingerprint: string;
  tokens: { alice: string; bob: string; admin: string };
  usersFile: string;
  /** A call to the session service as `token` (undefined: no Authorization). */
  api<T = any>(token: string | undefined, method: string, p: string, body?: unknown): Promise<HttpReply<T>>;
  /** A call to an agent as its session service (mutual TLS with the service's certificate). */
  agentApi<T = any>(name: string, method: string, p: string, body?: unknown): Promise<HttpReply<T>>;
  /** Kill an agent (SIGKILL by default: no chance to tidy up) and start it again on the same port and state. */
  restartAgent(name: string, sig?: NodeJS.Signals): Promise<void>;
  stopAgent(name: string, sig?: NodeJS.Signals): Promise<void>;
  startAgent(name: string): Promise<void>;
  restartSessiond(sig?: NodeJS.Signals): Promise<void>;
  /** Environment for `gvfs session` as `who`. */
  env(who: 'alice' | 'bob' | 'admin'): NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

/**
 * Three hosts on this machine (agents state, data and compute on their own
 * loopback ports, each with its own state directory) and a session service
 * over them, all as `gvfs` processes; users alice, bob and an admin.
 */
export async function startCluster(o: { names?: string[]; agentArgs?: Record<string, string[]> } = {}): Promise<Cluster> {
  const base = await tempDir('gvfs-services-');
  const c = { base, hosts: {}, agents: {} } as Cluster;
  try {
    const sdTls = await makeSelfSignedCert(path.join(base, 'sessiond', 'tls'), 'gvfs-sessiond');
    c.fingerprint = sdTls.fingerprint;
    c.usersFile = path.join(base, 'users.json');
    c.tokens = {
      alice: await addUser(c.usersFile, 'alice', [ALICE_ACCOUNT], false),
      bob: await addUser(c.usersFile, 'bob', [BOB_ACCOUNT], false),
      admin: await addUser(c.usersFile, 'admin', [], true),
    };
    const agentArgs = new Map<string, string[]>();
    c.startAgent = async (name: string) => {
      c.agents[name] = await startGvfs(agentArgs.get(name)!);
      agentArgs.get(name)![agentArgs.get(name)!.indexOf('--listen') + 1] = `127.0.0.1:${c.agents[name].info.listening.port}`;
    };
    for (const name of o.names ?? ['state', 'data', 'compute']) {
      const h: HostDirs = { name, state: path.join(base, name, 'state'), exports: path.join(base, name, 'exports'), mnt: path.join(base, name, 'mnt') };
      for (const d of [h.exports, h.mnt]) await fs.mkdir(d, { recursive: true });
      c.hosts[name] = h;
      agentArgs.set(name, ['agent', '--name', name, '--state-dir', h.state, '--controller', sdTls.fingerprint, '--listen', '127.0.0.1:0', '--export-root', h.exports, '--mount-root', h.mnt, ...(o.agentArgs?.[name] ?? [])]);
      await c.startAgent(name);
    }
    const sdArgs = ['sessiond', '--state-dir', path.join(base, 'sessiond'), '--users', c.usersFile, '--listen', '127.0.0.1:0', '--tls-cert', sdTls.cert, '--tls-key', sdTls.key];
    for (const [name, a] of Object.entries(c.agents)) sdArgs.push('--agent', `${name}=${a.info.url},${a.info.fingerprint}`);
    c.sessiond = await startGvfs(sdArgs);
    c.url = c.sessiond.info.url;
    sdArgs[sdArgs.indexOf('--listen') + 1] = `127.0.0.1:${c.sessiond.info.listening.port}`;
    c.api = (token, method, p, body) => request({ url: c.url, fingerprint: c.fingerprint, token }, method, p, body, { timeoutMs: 10 * 60_000 });
    const sdCert = await fs.readFile(sdTls.cert);
    const sdKey = await fs.readFile(sdTls.key);
    c.agentApi = (name, method, p, body) => request({ url: c.agents[name].info.url, fingerprint: c.agents[name].info.fingerprint, cert: sdCert, key: sdKey }, method, p, body, { timeoutMs: 10 * 60_000 });
    c.stopAgent = (name, sig = 'SIGKILL') => c.agents[name].stop(sig);
    c.restartAgent = async (name, sig = 'SIGKILL') => {
      await c.agents[name].stop(sig);
      await c.startAgent(name);
    };
    c.restartSessiond = async (sig = 'SIGKILL') => {
      await c.sessiond.stop(sig);
      c.sessiond = await startGvfs(sdArgs);
    };
    c.env = (who) => ({ GVFS_SESSIOND: c.url, GVFS_SESSIOND_FINGERPRINT: c.fingerprint, GVFS_TOKEN: c.tokens[who], GVFS_TOKEN_FILE: '' });
    c.stop = () => stopCluster(c);
    return c;
  } catch (e) {
    await stopCluster(c).catch(() => undefined);
    throw e;
  }
}

/** Stop the services, then every process still running from the cluster's directory (proxies, mounts), unmount what is left, remove the directory. */
async function stopCluster(c: Cluster): Promise<void> {
  await c.sessiond?.stop().catch(() => undefined);
  for (const a of Object.values(c.agents)) await a.stop().catch(() => undefined);
  for (let round = 0; round < 3; round++) {
    const pids = await processesUnder(c.base);
    if (!pids.length) break;
    for (const p of pids) {
      try {
        process.kill(p, round === 0 ? 'SIGTERM' : 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (let i = 0; i < 100 && (await processesUnder(c.base)).length; i++) await delay(50);
  }
  for (const m of await mountsUnder(c.base)) await run('fusermount', ['-uz', m]).catch(() => undefined);
  await fs.rm(c.base, { recursive: true, force: true }).catch(() => undefined);
}

export async function processesUnder(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    const st = await fs.readFile(`/proc/${p}/stat`, 'utf8').catch(() => '');
    if (cmd.includes(dir) && !/\) Z /.test(st)) out.push(Number(p));
  }
  return out;
}

export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m) => m && m.startsWith(dir));
}

export const gvfs = (args: string[], env: NodeJS.ProcessEnv) => run(process.execPath, gvfsArgv(args), { env: { ...process.env, ...env }, timeout: 10 * 60_000 });

/** Poll until `cond` holds (an explicit wait on an outcome, no fixed sleeps), or fail after `ms`. */
export async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}

/** A create request for alice: the state host's `vm` directory and the data host's `alice` directory mounted on the compute host. */
export function aliceRequest(c: Cluster, tag: string, extra: Record<string, unknown> = {}): any {
  return {
    compute: 'compute',
    exports: [
      { role: 'state', host: 'state', path: path.join(c.hosts.state.exports, 'vm'), mountpoint: path.join(c.hosts.compute.mnt, tag, 'vm') },
      { role: 'data', host: 'data', path: path.join(c.hosts.data.exports, 'alice'), mountpoint: path.join(c.hosts.compute.mnt, tag, 'data') },
    ],
    cache: { mode: 'write-back', size: 256 << 20 },
    lifetime: 600,
    ...extra,
  };
}

/** The exported directories aliceRequest names: the state host's vm/ and the data host's alice/ (owned by alice's account). */
export async function makeExports(c: Cluster): Promise<void> {
  await fs.mkdir(path.join(c.hosts.state.exports, 'vm'), { recursive: true });
  await fs.mkdir(path.join(c.hosts.data.exports, 'alice'), { recursive: true });
  await fs.chown(path.join(c.hosts.data.exports, 'alice'), ALICE_ACCOUNT.uid, ALICE_ACCOUNT.gid);
}

/** An in-process agent's setting on a fresh temp dir: TLS identity, state dir, one export root (dir/exports, made). */
export interface AgentBed {
  dir: string;
  /** The export root (`cfg.exportRoots[0]`). */
  exports: string;
  cfg: AgentConfig;
  /** Kill every process still running from `dir` (proxy servers the agent started), remove it. */
  stop(): Promise<void>;
}

export async function agentBed(prefix: string): Promise<AgentBed> {
  const dir = await tempDir(prefix);
  const tls = await makeSelfSignedCert(path.join(dir, 'tls'));
  const exports = path.join(dir, 'exports');
  await fs.mkdir(exports, { recursive: true });
  const cfg: AgentConfig = { name: 'state', stateDir: path.join(dir, 'state'), certFile: tls.cert, keyFile: tls.key, fingerprint: tls.fingerprint, exportRoots: [exports], mountRoots: [], proxyHost: '127.0.0.1', monitorMs: 200 };
  return {
    dir,
    exports,
    cfg,
    async stop() {
      for (const p of await processesUnder(dir)) process.kill(p, 'SIGKILL');
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** A fresh session key of alice's (account 2001) as an agent's order carries it. */
export const aliceKeyDoc = (): KeyDoc => {
  const k = newSessionKey('alice', undefined, { uid: 2001, gid: 2001, gids: [] });
  return { id: k.id, key: k.key.toString('base64'), user: k.user, account: k.account };
};

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
