import type { Backend } from '../../backend/backend.js';
import type { Credentials } from '../../rpc/types.js';
import { logger } from '../../util/log.js';

const log = logger('proxy');

/** Methods whose first argument is the caller's credentials (everything but mount, exports, close). */
const CALLS = new Set<string>([
  'getattr', 'setattr', 'lookup', 'access', 'readlink', 'read', 'write', 'create', 'mkdir', 'symlink', 'mknod',
  'remove', 'rmdir', 'rename', 'link', 'readdir', 'readdirplus', 'fsstat', 'fsinfo', 'pathconf', 'commit',
]);

/**
 * Keeps a session's calls in order across its connections. A proxy client
 * killed mid-flush leaves WRITEs it sent still queued at the proxy server
 * (in its link to the upstream server); its successor resends the same
 * journal and then newer data for the same bytes. Were the old WRITEs to
 * land after the new ones, the server would end with stale bytes although
 * every write was acknowledged. So a connection proving a session key waits
 * (`settle`) until the calls that session had in flight when it proved are
 * done; calls made later are not waited for.
 */
export class SessionFence {
  private readonly pending = new Map<string, Set<Promise<unknown>>>();

  constructor(private readonly maxWaitMs = 5000) {}

  /** The backend with every session's calls counted while they run. */
  wrap(b: Backend): Backend {
    return new Proxy(b, {
      get: (t, p, r) => {
        const v = Reflect.get(t, p, r);
        if (typeof v !== 'function' || typeof p !== 'string' || !CALLS.has(p)) return typeof v === 'function' ? v.bind(t) : v;
        return (cred: Credentials, ...args: unknown[]) => this.track(cred.session, (v as (...a: unknown[]) => Promise<unknown>).call(t, cred, ...args));
      },
    });
  }

  private track<T>(session: string | undefined, p: Promise<T>): Promise<T> {
    if (session === undefined) return p;
    let set = this.pending.get(session);
    if (!set) this.pending.set(session, (set = new Set()));
    set.add(p);
    const done = () => {
      set.delete(p);
      if (!set.size && this.pending.get(session) === set) this.pending.delete(session);
    };
    p.then(done, done);
    return p;
  }

  /** In flight for the session now. */
  inFlight(session: string): number {
    return this.pending.get(session)?.size ?? 0;
  }

  /** Wait for the calls the session has in flight now (at most maxWaitMs: an upstream that hangs is logged, not waited on for ever). */
  async settle(session: string): Promise<void> {
    const now = [...(this.pending.get(session) ?? [])];
    if (!now.length) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), this.maxWaitMs)));
    const r = await Promise.race([Promise.allSettled(now), late]);
    clearTimeout(timer);
    if (r === 'late') log.warn({ session, calls: now.length }, 'a new connection of the session proceeds while earlier calls are still running upstream');
  }
}
