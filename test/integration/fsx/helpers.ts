import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { LocalExport } from '../../../src/backends/local-export/local-export.js';
import { newSessionKey, writeKeyFile } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { createNfs3Server } from '../../../src/frontends/nfs3-server/server.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import type { RpcServer } from '../../../src/rpc/server.js';
import { tempDir } from '../../helpers/local-server.js';
import { forceUnmount, spawnMount, type MountProc } from '../fuse/mount-helper.js';

const run = promisify(execFile);
// dist/test/integration/fsx → the repository (the exerciser's source and build/ are not compiled into dist).
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
export const FSX_SRC = path.join(REPO, 'tools', 'fsx', 'gvfs-fsx.c');
export const FSX = path.join(REPO, 'build', 'gvfs-fsx');

/** build/gvfs-fsx, compiled here when scripts/setup.sh has not (or its source is newer). A missing compiler fails loudly. */
export async function ensureFsx(): Promise<string> {
  const src = await fs.stat(FSX_SRC);
  const bin = await fs.stat(FSX).catch(() => undefined);
  if (!bin || bin.mtimeMs < src.mtimeMs) {
    await fs.mkdir(path.dirname(FSX), { recursive: true });
    // Into a temporary name first: test files running one after another must never see half a binary.
    const tmp = `${FSX}.${process.pid}`;
    await run('cc', ['-O2', '-Wall', '-o', tmp, FSX_SRC]);
    await fs.rename(tmp, FSX);
  }
  return FSX;
}

export interface FsxResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The operation the run ended at (FSX-RESULT line), if it printed one. */
  op?: number;
  result?: 'ok' | 'mismatch' | 'error';
}

/** Runs gvfs-fsx (never rejects: the exit code is the verdict). */
export function runFsx(args: string[], o: { timeoutMs?: number; onStdout?: (text: string) => void; signal?: AbortSignal } = {}): Promise<FsxResult> {
  return new Promise((resolve) => {
    // `signal`: the run is given up (SIGKILL) when it aborts; it then ends without a result.
    const p = spawn(FSX, args, { stdio: ['ignore', 'pipe', 'pipe'], signal: o.signal, killSignal: 'SIGKILL' });
    p.on('error', () => undefined); // an abort: 'close' follows
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      o.onStdout?.(d.toString());
    });
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs ?? 600_000);
    p.once('close', (code, signal) => {
      clearTimeout(timer);
      const m = /FSX-RESULT (ok|mismatch|error) seed=\d+ op[s]?=(\d+)/.exec(stdout + stderr);
      resolve({ code, signal, stdout, stderr, result: m?.[1] as FsxResult['result'], op: m ? Number(m[2]) : undefined });
    });
  });
}

/** What a failed run printed, trimmed for an assertion message (the seed, the history, the first difference). */
export function describeRun(r: FsxResult): string {
  return `gvfs-fsx exit ${r.code ?? r.signal}\n${r.stderr.slice(-6000)}${r.stdout.slice(-1000)}`;
}

/**
 * The server side of every configuration: an upstream `gvfs serve` of a
 * temp directory (its attribute cache off, so what a test reads from the
 * directory is what the server has) behind a proxy server with session keys
 * (each mount its own session; all map to root so the mounts may create
 * files at the export's root).
 */
export interface FsxServer {
  base: string;
  exportDir: string;
  proxyServerPort: number;
  /** A new session key file (user alice) the proxy server accepts. */
  newKey(): Promise<string>;
  /** `gvfs mount` of the export with this key and these options; stopped by stop() if still running. */
  mount(name: string, keyFile: string, extra?: string[]): Promise<MountProc>;
  stop(): Promise<void>;
}

export async function startFsxServer(): Promise<FsxServer> {
  const base = await tempDir('gvfs-fsx-');
  const exportDir = path.join(base, 'export');
  await fs.mkdir(exportDir);
  const upstream = await LocalExport.open({ root: exportDir, stateDir: path.join(base, 'up-state'), attrCacheMs: 0 });
  const upServer: RpcServer = createNfs3Server({ backend: upstream });
  const upPort = (await upServer.listen(0, '127.0.0.1')).port;
  // The proxy server refuses an empty registry; the first key is handed out by the first newKey().
  const keyList = [newSessionKey('alice')];
  const sessions = new SessionRegistry(keyList);
  const ps: ProxyServer = await createProxyServer({
    sessions,
    exports: [{ kind: 'upstream', url: { host: '127.0.0.1', port: upPort, mountPort: upPort, path: '/' } }],
    map: new Map([['alice', { uid: 0, gid: 0, gids: [] }]]),
    stateDir: path.join(base, 'ps-state'),
  });
  const proxyServerPort = (await ps.listen(0, '127.0.0.1')).port;
  const mounts: MountProc[] = [];
  let keys = 0;
  return {
    base,
    exportDir,
    proxyServerPort,
    async newKey() {
      const key = keys === 0 ? keyList[0] : newSessionKey('alice');
      if (keys > 0) sessions.add(key);
      const file = path.join(base, `key-${keys++}`);
      await writeKeyFile(file, key);
      return file;
    },
    async mount(name, keyFile, extra = []) {
      const m = await spawnMount(`127.0.0.1:${proxyServerPort}`, path.join(base, name), ['--key', keyFile, ...extra]);
      mounts.push(m);
      return m;
    },
    async stop() {
      for (const m of mounts) {
        if (m.proc.exitCode === null && m.proc.signalCode === null) await m.stop().catch(() => undefined);
        else await forceUnmount(m.mnt).catch(() => undefined);
      }
      await ps.close();
      await upServer.close();
      await upstream.close();
      await fs.rm(base, { recursive: true, force: true });
    },
  };
}

/** The fsync log's last line: the operation of the last fsync that returned (0: none yet). */
export async function lastFsync(logFile: string): Promise<number> {
  if (!existsSync(logFile)) return 0;
  const lines = (await fs.readFile(logFile, 'utf8')).trim().split('\n').filter(Boolean);
  return lines.length ? Number(lines[lines.length - 1].split(' ')[0]) : 0;
}

/** The mount configurations the exerciser runs on. */
export const CONFIGS = ['write-back', 'write-through', 'no-cache', 'two-mounts'] as const;
export type ConfigName = (typeof CONFIGS)[number];

export interface FsxTarget {
  config: ConfigName;
  /** The exerciser's file for a seed, through the (first) mount. */
  file(seed: number): string;
  /** The same file through the second mount (two-mounts only): gvfs-fsx -C checks it after every close. */
  other?(seed: number): string;
  /** The same file in the server's directory. */
  serverFile(seed: number): string;
  mounts: MountProc[];
  /** Ends the mounts with SIGTERM (a write-back mount flushes first); returns their exit codes. */
  stop(): Promise<Array<number | null>>;
}

/**
 * Mount options per configuration. Write-back delivers a write at most 1 s
 * after it was made (--dirty-max-age 1), so flushes, and the server's
 * attributes they bring back, interleave with the exerciser's operations
 * instead of waiting for the end. The second mount of two-mounts trusts no
 * attribute (--attr-timeout 0), so a reopen right after the first mount's
 * close must see the new contents (close-to-open, README "What other hosts
 * see, and when").
 */
export function mountArgs(config: ConfigName, cacheDir: string): string[][] {
  switch (config) {
    case 'write-back':
      return [['--cache-dir', cacheDir, '--write-back', '--dirty-max-age', '1']];
    case 'write-through':
      return [['--cache-dir', cacheDir, '--write-through']];
    case 'no-cache':
      return [[]];
    case 'two-mounts':
      return [[], ['--attr-timeout', '0']];
  }
}

export async function startTarget(s: FsxServer, config: ConfigName): Promise<FsxTarget> {
  const mounts: MountProc[] = [];
  const args = mountArgs(config, path.join(s.base, `cache-${config}`));
  for (let i = 0; i < args.length; i++) mounts.push(await s.mount(`mnt-${config}-${i}`, await s.newKey(), args[i]));
  const name = (seed: number) => `fsx-${config}-${seed}.bin`;
  return {
    config,
    mounts,
    file: (seed) => path.join(mounts[0].mnt, name(seed)),
    other: mounts[1] ? (seed) => path.join(mounts[1].mnt, name(seed)) : undefined,
    serverFile: (seed) => path.join(s.exportDir, name(seed)),
    stop: () => Promise.all(mounts.map((m) => m.stop())),
  };
}

/** gvfs-fsx arguments for one run on a target. */
export function fsxArgs(t: FsxTarget, seed: number, ops: number, extra: string[] = []): string[] {
  return ['-S', String(seed), '-N', String(ops), ...(t.other ? ['-C', t.other(seed)] : []), ...extra, t.file(seed)];
}
