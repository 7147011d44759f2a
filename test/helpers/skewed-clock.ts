import type { Backend } from '../../src/backend/backend.js';
import type { NfsTime } from '../../src/nfs3/types.js';

const TIME_KEYS = new Set(['atime', 'mtime', 'ctime']);
const isTime = (v: unknown): v is NfsTime => !!v && typeof v === 'object' && typeof (v as NfsTime).sec === 'number' && typeof (v as NfsTime).nsec === 'number';

function shift(t: NfsTime, ms: number): NfsTime {
  const ns = t.sec * 1e9 + t.nsec + ms * 1e6;
  const sec = Math.floor(ns / 1e9);
  return { sec, nsec: Math.round(ns - sec * 1e9) };
}

/** Every atime/mtime/ctime inside a value (attributes, wcc data, directory pages), shifted by `ms`. */
function walk(v: unknown, ms: number, depth = 0): unknown {
  if (!v || typeof v !== 'object' || Buffer.isBuffer(v) || depth > 6) return v;
  if (Array.isArray(v)) return v.map((x) => walk(x, ms, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = TIME_KEYS.has(k) && isTime(x) ? shift(x, ms) : walk(x, ms, depth + 1);
  return Object.assign(Object.create(Object.getPrototypeOf(v)), out);
}

/**
 * A server whose clock runs `ms` ahead of this machine's (another host):
 * every time it reports is shifted by `ms`, every time set on it by -ms.
 * Errors pass through unchanged.
 */
export function skewedClock(inner: Backend, ms: number): Backend {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        // SETATTR's (and CREATE's, MKDIR's) times are in the server's clock.
        const a = args.map((x) => (x && typeof x === 'object' && !Buffer.isBuffer(x) ? walk(x, -ms) : x));
        const r = v.apply(target, a);
        return r instanceof Promise ? r.then((x) => walk(x, ms)) : r;
      };
    },
  });
}
