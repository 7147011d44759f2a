import type { Backend } from '../../backend/backend.js';
import { FsError } from '../../backend/errors.js';
import * as M from '../../mount3/codec.js';
import { MOUNT_STATUS_OF } from '../../mount3/status.js';
import { type ProgramVersion, VOID } from '../../rpc/program.js';
import { logger } from '../../util/log.js';

const log = logger('mount3');

/** MOUNT v3 over a backend; remembers who mounted what for DUMP (bounded). */
export function mountProgram(b: Backend, maxMounts = 4096): ProgramVersion {
  const mounts = new Map<string, M.MountEntry>();
  return {
    prog: M.MOUNT_PROGRAM,
    vers: M.MOUNT_V3,
    name: 'mount3',
    procedures: [
      { name: 'NULL', ...VOID, handle: () => undefined, idempotent: true, public: true },
      {
        name: 'MNT',
        decode: M.dirpath.dec,
        encode: M.mntres.enc,
        idempotent: true,
        handle: async (dir: string, ctx): Promise<M.MntResult> => {
          try {
            const r = await b.mount(dir, ctx.cred);
            const key = `${ctx.peer.address} ${dir}`;
            if (mounts.size < maxMounts || mounts.has(key)) mounts.set(key, { hostname: ctx.peer.address, directory: dir });
            log.debug({ peer: ctx.peer.address, dir }, 'mounted');
            return { status: M.MountStat.OK, fh: r.fh, authFlavors: r.authFlavors };
          } catch (e) {
            if (e instanceof FsError) return { status: MOUNT_STATUS_OF[e.code] ?? M.MountStat.IO } as M.MntResult;
            log.error({ err: e }, 'MNT failed');
            return { status: M.MountStat.SERVERFAULT };
          }
        },
      },
      { name: 'DUMP', ...VOID, encode: M.mountlist.enc, handle: () => [...mounts.values()], idempotent: true },
      {
        name: 'UMNT',
        decode: M.dirpath.dec,
        encode: VOID.encode,
        idempotent: true,
        handle: (dir: string, ctx) => void mounts.delete(`${ctx.peer.address} ${dir}`),
      },
      {
        name: 'UMNTALL',
        ...VOID,
        idempotent: true,
        handle: (_: void, ctx) => {
          for (const [k, v] of mounts) if (v.hostname === ctx.peer.address) mounts.delete(k);
        },
      },
      {
        name: 'EXPORT',
        ...VOID,
        encode: M.exports.enc,
        idempotent: true,
        handle: async () => (await b.exports()).map((e) => ({ dir: e.path, groups: e.groups })),
      },
    ],
  };
}
