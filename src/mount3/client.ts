import type { RpcClient } from '../rpc/client.js';
import { VOID } from '../rpc/program.js';
import type { OpaqueAuth } from '../rpc/types.js';
import * as M from './codec.js';

/** Typed MOUNT v3 stubs over an RpcClient. */
export class Mount3Client {
  constructor(readonly rpc: RpcClient) {}

  mnt(dir: string, cred?: OpaqueAuth): Promise<M.MntResult> {
    return this.rpc.call(M.MOUNT_PROGRAM, M.MOUNT_V3, M.MountProc.MNT, (w) => M.dirpath.enc(w, dir), M.mntres.dec, cred ? { cred } : {});
  }
  dump(): Promise<M.MountEntry[]> {
    return this.rpc.call(M.MOUNT_PROGRAM, M.MOUNT_V3, M.MountProc.DUMP, () => undefined, M.mountlist.dec);
  }
  umnt(dir: string): Promise<void> {
    return this.rpc.call(M.MOUNT_PROGRAM, M.MOUNT_V3, M.MountProc.UMNT, (w) => M.dirpath.enc(w, dir), VOID.decode);
  }
  umntall(): Promise<void> {
    return this.rpc.call(M.MOUNT_PROGRAM, M.MOUNT_V3, M.MountProc.UMNTALL, () => undefined, VOID.decode);
  }
  export(): Promise<M.ExportEntry[]> {
    return this.rpc.call(M.MOUNT_PROGRAM, M.MOUNT_V3, M.MountProc.EXPORT, () => undefined, M.exports.dec);
  }
}
