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
  /** What happened, in order (shared with the fence's log below). */
  events: string[] = [];
  private onEvent = new Set<() => void>();
  note(e: string): void {
    this.events.push(e);
    for (const f of this.onEvent) f();
  }
  /** Resolves once `cond` holds (checked on every event). */
  until(cond: () => boolean): Promise<void> {
    return new Promise((r) => {
      if (cond()) return r();
      const f = () => cond() && (this.onEvent.delete(f), r());
      this.onEvent.add(f);
    });
  }
  override async write(...a: Parameters<Backend['write']>) {
    const tag = a[3][0].toString(16);
    if (a[3][0] === 0xaa) {
      const p = new Promise<void>((r) => this.held.push(r));
      this.note('aa held upstream');
      await p;
    } else this.note(`${tag} upstream`);
    const r = await super.write(...a);
    this.note(`${tag} written`);
    return r;
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

test("a session's new connection is served only after its earlier calls are done: a dead proxy client's queued WRITE cannot land over newer data", { timeout: 60_000 }, async () => {
  const old = proxyLink({ host: '127.0.0.1', port: psPort, key, timeoutMs: 10_000 }).remote;
  const root = (await old.mount('/', ROOT)).fh;
  const fh = (await old.create(ROOT, root, 'vm.img', { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
  // The old proxy client's WRITE of stale bytes reaches the upstream server and waits there; then the client dies.
  void old.write(ROOT, fh, 0, Buffer.alloc(4096, 0xaa), StableHow.FILE_SYNC).catch(() => undefined);
  await holding.until(() => holding.held.length > 0);
  await old.close();
  assert.equal(ps.fence.inFlight(key.id), 1);
  // Watch the fence: a connection proving the session waits in settle() for the session's earlier calls.
  const settle = ps.fence.settle.bind(ps.fence);
  ps.fence.settle = async (id: string) => {
    holding.note('fence waits');
    await settle(id);
    holding.note('fence opens');
  };
  try {
    // Its successor (same session) connects and writes newer bytes for the same range.
    const next = proxyLink({ host: '127.0.0.1', port: psPort, key, timeoutMs: 10_000 }).remote;
    const wrote = next.write(ROOT, fh, 0, Buffer.alloc(4096, 0xbb), StableHow.FILE_SYNC);
    // Either the fence holds the new connection, or (broken) its WRITE reaches the upstream server past the held one.
    await holding.until(() => holding.events.includes('fence waits') || holding.events.includes('bb upstream'));
    assert.ok(!holding.events.includes('bb upstream'), `the new connection's WRITE ran while the old one was still queued upstream: ${holding.events.join(', ')}`);
    holding.held.shift()!();
    await wrote;
    assert.deepEqual(
      holding.events.filter((e) => e !== 'fence waits' && e !== 'fence opens'),
      ['aa held upstream', 'aa written', 'bb upstream', 'bb written'],
    );
    const i = (e: string) => holding.events.indexOf(e);
    assert.ok(i('aa written') < i('fence opens') && i('fence opens') < i('bb upstream'), `the fence opened only after the old WRITE was done: ${holding.events.join(', ')}`);
    await next.close();
  } finally {
    ps.fence.settle = settle;
  }
  const onDisk = await fs.readFile(path.join(base, 'export', 'vm.img'));
  assert.ok(onDisk.equals(Buffer.alloc(4096, 0xbb)), `stale bytes on the server: ${onDisk.subarray(0, 4).toString('hex')}`);
  assert.equal(ps.fence.inFlight(key.id), 0);
});
