import { pino, type Logger } from 'pino';

/**
 * One root logger (to stderr, JSON lines). Layers take a named child.
 * GVFS_LOG_LEVEL sets the level (default "info"); GVFS_TRACE=rpc,nfs3,...
 * turns on debug-level tracing for just the named layers (like GRPC_TRACE).
 * The command line's -v / -vv / --log-level (applyLogFlags) win over the
 * environment. A daemon writes nothing else to stderr: every line there
 * parses as JSON.
 */
const dest = pino.destination({ dest: 2, sync: false });
/** A warning or error as `gvfs status` shows it (util/runtime-state.ts keeps the last few). */
export interface LogLine {
  time: string;
  level: 'warn' | 'error' | 'fatal';
  layer?: string;
  msg: string;
}

const warnListeners = new Set<(l: LogLine) => void>();

/** Be told of every warning and error logged by any layer; returns the unsubscribe. */
export function onWarnOrError(fn: (l: LogLine) => void): () => void {
  warnListeners.add(fn);
  return () => warnListeners.delete(fn);
}

/** Fields every line of this process carries (a proxy client's or mount's session): setLogContext. */
let context: Record<string, unknown> = {};

const root: Logger = pino(
  {
    level: process.env.GVFS_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    // Children inherit the mixin, so a layer's logger made before setLogContext carries the fields too;
    // a line's own fields win over these.
    mixin: () => ({ ...context }), // a copy: pino merges each line's fields into the object returned
    hooks: {
      logMethod(args, method, level) {
        if (level >= 40 && warnListeners.size) {
          const [a, b] = args as unknown[];
          const obj = typeof a === 'object' && a !== null ? (a as { err?: { message?: string } }) : undefined;
          const msg = [typeof a === 'string' ? a : typeof b === 'string' ? b : '', obj?.err?.message].filter(Boolean).join(': ');
          const line: LogLine = { time: new Date().toISOString(), level: level >= 60 ? 'fatal' : level >= 50 ? 'error' : 'warn', layer: (this.bindings() as { layer?: string }).layer, msg: msg.slice(0, 500) };
          for (const fn of warnListeners) fn(line);
        }
        return method.apply(this, args);
      },
    },
  },
  dest,
);

/**
 * Fields for every later line of every layer of this process: a process
 * that serves one session (proxy client, mount) names it on each line.
 * Processes serving many sessions (the proxy server) bind the session per
 * connection instead (child loggers).
 */
export function setLogContext(fields: Record<string, unknown>): void {
  context = { ...context, ...fields };
}

const traced = new Set((process.env.GVFS_TRACE ?? '').split(',').map((s) => s.trim()).filter(Boolean));

const children: Array<{ layer: string; log: Logger }> = [];

export function logger(layer: string): Logger {
  const child = root.child({ layer });
  if (traced.has(layer) || traced.has('all')) child.level = 'debug';
  else child.level = root.level;
  children.push({ layer, log: child });
  return child;
}

/** Change the level of every layer that is not traced (commands that print for people, e.g. the demo). */
export function setLogLevel(level: string): void {
  root.level = level;
  for (const c of children) if (!traced.has(c.layer) && !traced.has('all')) c.log.level = level;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * The level the command line asks for: --log-level LEVEL, else -v (debug)
 * or -vv (trace); undefined leaves GVFS_LOG_LEVEL's (or info).
 */
export function levelFromFlags(o: { verbose?: number; logLevel?: string }): string | undefined {
  if (o.logLevel) {
    if (!(LOG_LEVELS as readonly string[]).includes(o.logLevel)) throw new Error(`--log-level: one of ${LOG_LEVELS.join(', ')}, not "${o.logLevel}"`);
    return o.logLevel;
  }
  if (o.verbose && o.verbose >= 2) return 'trace';
  if (o.verbose === 1) return 'debug';
  return undefined;
}

/** Write out what is buffered (call before process.exit: the destination is asynchronous). */
export function flushLogs(): void {
  try {
    dest.flushSync();
  } catch {
    // not ready yet (nothing written): nothing to flush
  }
}

export type { Logger };
