import { pino, type Logger } from 'pino';

/**
 * One root logger (to stderr, JSON lines). Layers take a named child.
 * GVFS_LOG_LEVEL sets the level (default "info"); GVFS_TRACE=rpc,nfs3,...
 * turns on debug-level tracing for just the named layers (like GRPC_TRACE).
 */
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

const root: Logger = pino(
  {
    level: process.env.GVFS_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
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
  pino.destination({ dest: 2, sync: false }),
);

const traced = new Set((process.env.GVFS_TRACE ?? '').split(',').map((s) => s.trim()).filter(Boolean));

const children: Array<{ layer: string; log: Logger }> = [];

export function logger(layer: string): Logger {
  const child = root.child({ layer });
  if (traced.has(layer) || traced.has('all')) child.level = 'debug';
  children.push({ layer, log: child });
  return child;
}

/** Change the level of every layer that is not traced (commands that print for people, e.g. the demo). */
export function setLogLevel(level: string): void {
  root.level = level;
  for (const c of children) if (!traced.has(c.layer) && !traced.has('all')) c.log.level = level;
}

export type { Logger };
