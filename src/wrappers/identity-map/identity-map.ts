import type { Backend } from '../../backend/backend.js';
import { FsError } from '../../backend/errors.js';
import type { Credentials } from '../../rpc/types.js';
import { logger } from '../../util/log.js';
import { PassthroughBackend } from '../passthrough.js';
import type { IdentityMap, LocalAccount } from './map-file.js';

const log = logger('identity-map');

/** The identity a call is mapped by: the announced grid identity, else `sys:UID`. */
export function principalOf(c: Credentials): string {
  return c.principal ?? `sys:${c.uid}`;
}

/**
 * Rewrites every call's credentials to the local account its grid identity
 * maps to, whatever uid/gid the client claimed; an identity the map does not
 * name is refused with ACCES before anything reaches the backend.
 */
export class IdentityMapBackend extends PassthroughBackend {
  refused = 0;

  /** `resolve` names the local account of a caller (a session's own account, or the map's). */
  constructor(
    inner: Backend,
    private readonly resolve: (c: Credentials) => LocalAccount | undefined,
  ) {
    super(inner);
  }

  static fromMap(inner: Backend, map: IdentityMap): IdentityMapBackend {
    return new IdentityMapBackend(inner, (c) => map.get(principalOf(c)));
  }

  /** The local account a caller runs as (ACCES if it is not mapped). */
  mapCred(c: Credentials): Credentials {
    return this.cred(c);
  }

  protected override cred(c: Credentials): Credentials {
    const who = principalOf(c);
    const a = this.resolve(c);
    if (!a) {
      this.refused++;
      log.warn({ principal: who }, 'refused: identity not in the map');
      throw new FsError('ACCES', `identity ${who} is not mapped`);
    }
    return { flavor: c.flavor, uid: a.uid, gid: a.gid, gids: a.gids, machine: c.machine, principal: who, session: c.session };
  }
}
