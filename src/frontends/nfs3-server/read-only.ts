import { FsError } from '../../backend/errors.js';
import type { CallContext, Procedure, ProgramVersion } from '../../rpc/program.js';
import type { Credentials } from '../../rpc/types.js';
import { logger } from '../../util/log.js';

const log = logger('nfs3');

/**
 * Read-only exports, enforced once (ganesha's MAKES_WRITE check in
 * nfs_rpc_execute): every procedure flagged `mutating` in any program the
 * front end serves is refused, before its handler runs, when one of the
 * handles it would change lies in a read-only export. No backend method
 * has to remember the check.
 *
 * `ReadOnlyPolicy` answers "is this handle in a read-only export?" for the
 * caller (a proxy server's handles name their export; `gvfs serve
 * --read-only` says yes to all). It may throw an FsError for a handle it
 * cannot place (BADHANDLE, STALE): the call is then refused with that
 * status, never let through.
 */
export type ReadOnlyPolicy = (fh: Buffer, cred: Credentials) => boolean | Promise<boolean>;

export const everythingReadOnly: ReadOnlyPolicy = () => true;

/** What a mutating procedure changes, and how its refusal is shaped (a successful RPC reply with the failure body). */
export interface WriteTarget<A = any, R = any> {
  handles(args: A): Buffer[];
  refused(args: A, e: FsError): R;
}

/** A procedure row of a program served by the NFSv3 front end; mutating rows name their targets. */
export interface GuardedProcedure<A = any, R = any> extends Procedure<A, R> {
  readonly target?: WriteTarget<A, R>;
}

/** Is any of `handles` in a read-only export? An FsError from the policy is the refusal itself. */
export async function readOnlyRefusal(policy: ReadOnlyPolicy, handles: Buffer[], cred: Credentials): Promise<FsError | undefined> {
  for (const fh of handles) {
    try {
      if (await policy(fh, cred)) return new FsError('ROFS', 'export is read-only');
    } catch (e) {
      if (e instanceof FsError) return e;
      throw e;
    }
  }
  return undefined;
}

/**
 * The program with every mutating procedure guarded. A mutating row without
 * a target is a programming error: it fails here, at construction, rather
 * than letting writes through a read-only export.
 */
export function guardWrites(p: ProgramVersion, policy: ReadOnlyPolicy): ProgramVersion {
  const procedures = p.procedures.map((proc) => {
    if (!proc?.mutating) return proc;
    const t = (proc as GuardedProcedure).target;
    if (!t) throw new Error(`${p.name}.${proc.name} is mutating but names no write target: it cannot be refused on a read-only export`);
    const guarded: Procedure = {
      ...proc,
      handle: async (a: unknown, ctx: CallContext) => {
        const no = await readOnlyRefusal(policy, t.handles(a), ctx.cred);
        if (!no) return proc.handle(a, ctx);
        log.debug({ proc: `${p.name}.${proc.name}`, peer: ctx.peer, code: no.code }, 'refused on a read-only export');
        return t.refused(a, no);
      },
    };
    return guarded;
  });
  return { ...p, procedures };
}
