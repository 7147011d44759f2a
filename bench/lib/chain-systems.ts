import path from 'node:path';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { startGanesha } from '../../test/helpers/ganesha.js';
import { spawnGvfs } from '../../test/helpers/gvfs-proc.js';
import { startRelay } from './relay.js';

/** Where nfsbench connects for one system, and the processes that serve it (name → pid). */
export interface ChainEnd {
  nfsPort: number;
  mountPort: number;
  pids: Record<string, number>;
}

export interface ChainSystems {
  /** nfs-ganesha's export path (every system serves the same export). */
  exportPath: string;
  /** chain: proxy client → proxy server → ganesha; relay: two C relays → ganesha; direct: ganesha. */
  systems: { chain: ChainEnd; relay: ChainEnd; direct: ChainEnd };
  /** Everything started, last first. */
  stop(): Promise<void>;
}

/**
 * The chain suite's three systems over one export `exp` (working files in
 * `dir`): nfs-ganesha; proxy client → proxy server (session key, plain TCP on
 * loopback) → ganesha, each proxy its own gvfs process; and two
 * byte-forwarding relays (bench/native/relay.c) where the proxies stand, the
 * floor of two user-level hops. MOUNT goes to ganesha directly for the
 * relays: only the NFS calls, the timed ones, cross them. A failed start
 * stops what had started.
 */
export async function startChainSystems(dir: string, exp: string): Promise<ChainSystems> {
  const started: Array<{ stop(): Promise<void> }> = [];
  const start = async <T extends { stop(): Promise<void> }>(p: Promise<T>): Promise<T> => {
    const t = await p;
    started.unshift(t);
    return t;
  };
  const stop = async () => {
    for (const t of started.splice(0)) await t.stop();
  };
  try {
    const gan = await start(startGanesha({ dir: exp, workDir: path.join(dir, 'ganesha') }));
    const keyFile = path.join(dir, 'session.key');
    await writeKeyFile(keyFile, newSessionKey('bench', undefined, { uid: 0, gid: 0, gids: [] }));
    const ps = await start(spawnGvfs([
      'proxy-server',
      '--listen', '127.0.0.1:0',
      '--upstream', `nfs://127.0.0.1:${gan.port}${gan.exportPath}?mountport=${gan.mountPort}`,
      '--key', keyFile,
      '--state-dir', path.join(dir, 'ps'),
    ]));
    const pc = await start(spawnGvfs(['proxy-client', '--listen', '127.0.0.1:0', '--server', `127.0.0.1:${ps.port}`, '--key', keyFile]));
    const relayB = await start(startRelay(gan.port));
    const relayA = await start(startRelay(relayB.port));
    return {
      exportPath: gan.exportPath,
      systems: {
        chain: { nfsPort: pc.port, mountPort: pc.port, pids: { 'proxy client': pc.pid, 'proxy server': ps.pid, ganesha: gan.pid } },
        relay: { nfsPort: relayA.port, mountPort: gan.mountPort, pids: { 'relay A': relayA.pid, 'relay B': relayB.pid, ganesha: gan.pid } },
        direct: { nfsPort: gan.port, mountPort: gan.mountPort, pids: { ganesha: gan.pid } },
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
