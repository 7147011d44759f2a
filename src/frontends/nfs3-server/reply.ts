import { FsError } from '../../backend/errors.js';
import { Nfs3Status } from '../../nfs3/constants.js';
import { STATUS_OF } from '../../nfs3/status.js';
import type { Res } from '../../nfs3/types.js';
import { logger } from '../../util/log.js';

const log = logger('nfs3');

/**
 * Run a backend call and shape its outcome as an NFSv3 result: OK with the
 * resok body, or the mapped status with the failure body built from what the
 * FsError carries. An exception that is not an FsError is a bug somewhere
 * below: it becomes SERVERFAULT and a loud log line, never a silent EIO.
 */
export async function reply<Ok extends object, Fail extends object>(
  proc: string,
  run: () => Promise<Ok>,
  failBody: (e: FsError) => Fail,
): Promise<Res<Ok, Fail>> {
  try {
    const ok = await run();
    return { status: Nfs3Status.OK, ...ok } as Res<Ok, Fail>;
  } catch (e) {
    if (e instanceof FsError) {
      log.debug({ proc, code: e.code, msg: e.message }, 'nfs error');
      return { status: STATUS_OF[e.code], ...failBody(e) } as Res<Ok, Fail>;
    }
    log.error({ err: e, proc }, 'backend threw a non-FsError: replying SERVERFAULT');
    return { status: Nfs3Status.SERVERFAULT, ...failBody(new FsError('SERVERFAULT')) } as Res<Ok, Fail>;
  }
}

export const noBody = (): {} => ({});
export const attrBody = (e: FsError) => ({ attr: e.attr });
export const dirAttrBody = (e: FsError) => ({ dirAttr: e.attr });
export const wccBody = (e: FsError) => ({ wcc: e.wcc ?? {} });
export const dirWccBody = (e: FsError) => ({ dirWcc: e.wcc ?? {} });
