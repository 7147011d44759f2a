/**
 * Child of unmount-exit.test.ts (not a test itself): mounts and unmounts the
 * low-level front end CYCLES times in one process, with kernel invalidations
 * in flight as each unmount starts, then simply returns. The process must
 * then exit on its own: a session left undestroyed keeps the native request
 * channel, and with it the process, alive for ever.
 *
 *   node unmount-exit-child.js CYCLES
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Invalidated, InvalidationSource } from '../../../src/backend/capabilities.js';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { LowLevelFrontend } from '../../../src/frontends/fuse/lowlevel-frontend.js';
import { PassthroughBackend } from '../../../src/wrappers/passthrough.js';
import { ROOT, startLocalServer } from '../../helpers/local-server.js';

/** A backend whose "everything changed" the child fires at will (as a cache's consistency model would). */
class Firing extends PassthroughBackend {
  private readonly listeners = new Set<(w: Invalidated) => void>();
  override get invalidations(): InvalidationSource {
    return {
      onInvalidate: (l) => {
        this.listeners.add(l);
        return () => this.listeners.delete(l);
      },
    };
  }
  fire(): void {
    for (const l of this.listeners) l('all');
  }
}

const cycles = Number(process.argv[2] ?? 20);
const s = await startLocalServer();
const remote = new RemoteNfs({ host: '127.0.0.1', port: s.port, timeoutMs: 20_000 });
const backend = new Firing(remote);
for (let i = 0; i < cycles; i++) {
  const fe = new LowLevelFrontend(backend, s.root, { attrTimeoutMs: 1000, background: ROOT, callers: { kind: 'fixed', cred: ROOT } });
  const mnt = path.join(s.dir, `mnt-${i}`);
  await fs.mkdir(mnt);
  await fe.mount(mnt);
  for (let j = 0; j < 5; j++) await fs.writeFile(path.join(mnt, `f${i}-${j}`), 'x');
  backend.fire(); // one invalidation per known node, on their own threads
  await fe.unmount();
}
await remote.close();
await s.stop();
console.log(`${cycles} cycles done`);
