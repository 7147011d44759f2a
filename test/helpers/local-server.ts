import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Backend } from '../../src/backend/backend.js';
import { LocalExport, type LocalExportOptions } from '../../src/backends/local-export/local-export.js';
import { RemoteNfs } from '../../src/backends/remote-nfs/remote-nfs.js';
import { createNfs3Server } from '../../src/frontends/nfs3-server/server.js';
import type { RpcServer, RpcServerLimits } from '../../src/rpc/server.js';
import { AuthFlavor, type Credentials } from '../../src/rpc/types.js';

export const ROOT: Credentials = { flavor: AuthFlavor.AUTH_SYS, uid: 0, gid: 0, gids: [] };
export const user = (uid: number, gid = uid, gids: number[] = []): Credentials => ({ flavor: AuthFlavor.AUTH_SYS, uid, gid, gids });

export async function tempDir(prefix = 'gvfs-test-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export interface LocalServer {
  dir: string;
  exportDir: string;
  stateDir: string;
  backend: LocalExport;
  server: RpcServer;
  port: number;
  client: RemoteNfs;
  root: Buffer;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `gvfs serve` in-process on a fresh temp export (port 0), with our own NFS client mounted on it; `wrap`: a layer
 * between the server and the export (a test's slow or counting backend).
 */
export async function startLocalServer(opts: Partial<LocalExportOptions> & { limits?: Partial<RpcServerLimits>; dir?: string; wrap?: (b: Backend) => Backend } = {}): Promise<LocalServer> {
  const dir = opts.dir ?? (await tempDir());
  const exportDir = path.join(dir, 'export');
  const stateDir = path.join(dir, 'state');
  await fs.mkdir(exportDir, { recursive: true });
  const s = {} as LocalServer;
  const start = async (port: number) => {
    s.backend = await LocalExport.open({ root: exportDir, stateDir, ...opts });
    s.server = createNfs3Server({ backend: opts.wrap ? opts.wrap(s.backend) : s.backend, limits: opts.limits });
    s.port = (await s.server.listen(port, '127.0.0.1')).port;
  };
  await start(0);
  Object.assign(s, {
    dir,
    exportDir,
    stateDir,
    client: new RemoteNfs({ host: '127.0.0.1', port: s.port, timeoutMs: 20_000 }),
  });
  s.root = (await s.client.mount(opts.name ?? '/', ROOT)).fh;
  s.restart = async () => {
    await s.server.close();
    await s.backend.close();
    await start(s.port);
  };
  s.stop = async () => {
    await s.client.close();
    await s.server.close();
    await s.backend.close();
    await fs.rm(dir, { recursive: true, force: true });
  };
  return s;
}
