import { pino, type Logger } from 'pino';

/**
 * One root logger (to stderr, JSON lines). Layers take a named child.
 * GVFS_LOG_LEVEL sets the level (default "info"); GVFS_TRACE=rpc,nfs3,...
 * turns on debug-level tracing for just the named layers (like GRPC_TRACE).
 */
const root: Logger = pino(
  { level: process.env.GVFS_LOG_LEVEL ?? 'info', base: { pid: process.pid } },
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
