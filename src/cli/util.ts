import { InvalidArgumentError } from 'commander';
import { EXIT } from './exit-codes.js';
import { flushLogs, logger } from '../util/log.js';

// A daemon's stderr is its JSON log: its own lines go there too, never plain text.
const log = logger('daemon');
import { notifySystemd } from './sd-notify.js';
import { lib as nativeLayer } from '../native/native.js';

/** Parse HOST:PORT (IPv6 as [::1]:PORT); port 0 means "pick a free one". */
export function parseHostPort(v: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(v);
  if (!m) throw new InvalidArgumentError(`expected HOST:PORT, got "${v}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new InvalidArgumentError(`port out of range: ${port}`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export function parseIntArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got "${v}"`);
  return n;
}

/** Sizes like 64K, 1M, 10G (powers of 1024). */
export function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`expected a size like 512M, got "${v}"`);
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  return Math.round(Number(m[1]) * mult);
}

/** Resolve on the first SIGINT/SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

/**
 * The stop signal of a daemon, caught from its start: a signal before
 * `ready()` (while it starts: nothing to drain yet) ends the process at
 * once; one after is `stopped`, for drainOnSignal. Call ready() just before
 * printing the ready line, so a signal sent the moment that line is read
 * finds the handler installed, not Node's default action.
 */
export function daemonSignals(name: string): { stopped: Promise<NodeJS.Signals>; ready(): void } {
  // The native layer sets the allocator's policy for large buffers when it loads (binding.c): before any traffic.
  nativeLayer();
  let up = false;
  const stopped = untilSignal();
  void stopped.then((sig) => {
    if (up) return;
    log.warn({ signal: sig }, `gvfs ${name}: ${sig} while starting, exiting`);
    flushLogs();
    process.exit(EXIT.FAILED);
  });
  return {
    stopped,
    ready: () => {
      up = true;
      // Type=notify units (contrib/systemd/): started means listening.
      notifySystemd(name, 'READY=1\nSTATUS=serving');
    },
  };
}

/** Longest a daemon drains after SIGINT/SIGTERM before it exits anyway (ms; GVFS_DRAIN_MS overrides). */
export const DRAIN_MS = Number(process.env.GVFS_DRAIN_MS) > 0 ? Number(process.env.GVFS_DRAIN_MS) : 10_000;

const DRAIN_TIMEOUT_EXIT = EXIT.DRAIN_TIMEOUT;

/**
 * A daemon's end: wait for SIGINT/SIGTERM, then run `drain` (close
 * listeners and connections, flush) within DRAIN_MS, and exit — 0 when it
 * finished, 1 when it failed, DRAIN_TIMEOUT when it ran out of time. A
 * second signal exits at once. Whatever a connected client or a dead peer
 * does, the process is gone within the bound (write-back data not yet
 * delivered stays in the cache journal for the next start).
 *
 * Pass `stopped` from daemonSignals(), made at the daemon's start.
 */
export async function drainOnSignal(name: string, drain: () => Promise<void>, what = 'shutting down', stopped: Promise<NodeJS.Signals> = untilSignal()): Promise<never> {
  const sig = await stopped;
  log.info({ signal: sig }, `gvfs ${name}: ${sig}, ${what}`);
  notifySystemd(name, `STOPPING=1\nSTATUS=${what}`);
  const again = () => {
    log.warn(`gvfs ${name}: second signal, exiting now`);
    flushLogs();
    process.exit(DRAIN_TIMEOUT_EXIT);
  };
  process.once('SIGINT', again);
  process.once('SIGTERM', again);
  const timer = setTimeout(() => {
    log.warn({ drainMs: DRAIN_MS }, `gvfs ${name}: drain not finished within ${DRAIN_MS} ms, exiting anyway`);
    flushLogs();
    process.exit(DRAIN_TIMEOUT_EXIT);
  }, DRAIN_MS);
  let code = 0;
  try {
    await drain();
  } catch (e) {
    log.error({ err: e }, `gvfs ${name}: ${(e as Error).message}`);
    code = 1;
  }
  clearTimeout(timer);
  flushLogs();
  // Nothing left to serve: lingering handles (a keep-alive timer, a peer that never closes) do not keep us.
  process.exit(code);
}
