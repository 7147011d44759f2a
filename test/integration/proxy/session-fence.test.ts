import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Backend } from '../../../src/backend/backend.js';
import { LocalExport } from '../../../src/backends/local-export/local-export.js';
import { newSessionKey } from '../../../src/channel/session-key.js';
import { SessionRegistry } from '../../../src/channel/sessions.js';
import { createNfs3Server } from '../../../src/frontends/nfs3-server/server.js';
import { StableHow } from '../../../src/nfs3/constants.js';
import { proxyLink } from '../../../src/proxy/proxy-client.js';
import { createProxyServer, type ProxyServer } from '../../../src/proxy/proxy-server.js';
import type { RpcServer } from '../../../src/rpc/server.js';
import { PassthroughBackend } from '../../../src/wrappers/passthrough.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';

/** The upstream server holds WRITEs of the byte 0xAA until released: an old proxy client's write still queued upstream. */
class HoldingBackend extends PassthroughBackend {
  held: Array<() => void> = [];
  override async write(...a: Parameters<Backend['write']>) {
    if (a[3][0] === 0xaa) await new Promise<void>((r) => this.held.push(r));
    return super.write(...a);
  }
}

let base: string;
let upstream: LocalExport;
let holding: HoldingBackend;
let up: RpcServer;
let ps: ProxyServer;
let psPort: number;
const key = newSessionKey('alice', undefined, { uid: 0, gid: 0, gids: [] });

before(async () => {
  base = await tempDir('gvfs-fence-');
  await fs.mkdir(path.join(base, 'export'));
  upstream = await LocalExport.open({ root: path.join(base, 'export'), stateDir: path.join(base, 'up-state') });
  holding = new HoldingBackend(upstream);
  up = createNfs3Server({ backend: holding });
  const upPort = (await up.listen(0, '127.0.0.1')).port;
  ps = await createProxyServer({
    sessions: new SessionRegistry([key]),
    exports: [{ kind: 'upstream', url: { host: '127.0.0.1', port: upPort, mountPort: upPort, path: '/' } }],
    map: new Map(),
    stateDir: path.join(base, 'ps-state'),
  });
  psPort = (await ps.listen(0, '127.0.0.1')).port;
});
after(async () => {
  await ps.close();
  await up.close();
  await upstream.close();
  await fs.rm(base, { recursive: true, force: true });
});

test("a session's new connection is served only after its earlier calls are done: a dead proxy client's queued WRITE cannot land over newer data", async () => {
  const old = proxyLink({ host: '127.0.0.1', port: psPort, key, timeoutMs: 10_000 }).remote;
  const root = (await old.mount('/', ROOT)).fh;
  const fh = (await old.create(ROOT, root, 'vm.img', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
  // The old proxy client's WRITE of stale bytes reaches the upstream server and waits there; then the client dies.
  void old.write(ROOT, fh, 0, Buffer.alloc(4096, 0xaa), StableHow.FILE_SYNC).catch(() => undefined);
  while (!holding.held.length) await new Promise((r) => setTimeout(r, 5));
  await old.close();
  assert.equal(ps.fence.inFlight(key.id), 1);
  // Its successor (same session) connects and writes newer bytes for the same range.
  const next = proxyLink({ host: '127.0.0.1', port: psPort, key, timeoutMs: 10_000 }).remote;
  const wrote = next.write(ROOT, fh, 0, Buffer.alloc(4096, 0xbb), StableHow.FILE_SYNC);
  let done = false;
  void wrote.then(() => (done = true));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(done, false, "the new connection's WRITE ran while the old one was still queued upstream");
  holding.held.shift()!();
  await wrote;
  const onDisk = await fs.readFile(path.join(base, 'export', 'vm.img'));
  assert.ok(onDisk.equals(Buffer.alloc(4096, 0xbb)), `stale bytes on the server: ${onDisk.subarray(0, 4).toString('hex')}`);
  assert.equal(ps.fence.inFlight(key.id), 0);
  await next.close();
});
