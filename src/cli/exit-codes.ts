import { CommanderError, InvalidArgumentError } from 'commander';
import { FsError } from '../backend/errors.js';
import { RpcError } from '../rpc/types.js';
import { LinkRefusedError } from '../proxy/link-refused.js';
import { CacheSizeError } from '../wrappers/cache/disk-room.js';

/**
 * Every exit status of `gvfs`, in one table (shown by `gvfs --help` and the
 * README). A script can tell a mistake on its own command line from a
 * server that said no, one that could not be reached, and one that speaks
 * another channel.
 */
export const EXIT = {
  OK: 0,
  /** Anything not below: an operation failed (the message says what). */
  FAILED: 1,
  /** The command line is wrong: unknown option, bad value, options that exclude each other. */
  USAGE: 2,
  /** A server refused: session key or TLS pin refused, SSH host key unknown, MNT3ERR_ACCES / NFS3ERR_ACCES, cache larger than its disk. */
  REFUSED: 3,
  /** The server could not be reached: nothing listening, no route, connect timed out, connection dropped before an answer. */
  UNREACHABLE: 4,
  /** Something answered, but over another channel kind (TLS vs plain vs SSH): the message names what is there. */
  WRONG_CHANNEL: 5,
  /** A daemon's drain on SIGINT/SIGTERM did not finish in time; it exited anyway (write-back data stays journalled). */
  DRAIN_TIMEOUT: 6,
} as const;

export const EXIT_TABLE: ReadonlyArray<readonly [number, string]> = [
  [EXIT.OK, 'success'],
  [EXIT.FAILED, 'an operation failed (the message says what)'],
  [EXIT.USAGE, 'usage error: unknown option, bad value, conflicting options'],
  [EXIT.REFUSED, 'refused: session key, TLS pin or SSH host key refused; MNT3ERR_ACCES; cache larger than its disk'],
  [EXIT.UNREACHABLE, 'server unreachable: nothing listening, no route, timed out'],
  [EXIT.WRONG_CHANNEL, 'wrong channel kind: the server speaks TLS, plain RPC or SSH, not what was asked'],
  [EXIT.DRAIN_TIMEOUT, 'a daemon did not drain within its bound after SIGINT/SIGTERM and exited anyway'],
];

export function exitTableText(): string {
  return `\nExit status:\n${EXIT_TABLE.map(([c, what]) => `  ${c}  ${what}`).join('\n')}\n`;
}

/** A wrong command line found after parsing (options that exclude each other, a missing companion option). */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A command that ran another gvfs process ends with that process's status (e.g. a detached mount's start). */
export class ExitStatusError extends Error {
  override name = 'ExitStatusError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** Refused by the local system on the user's behalf (e.g. a cache larger than the disk it is on). */
export class RefusedError extends Error {
  override name = 'RefusedError';
}

const UNREACHABLE_ERRNO = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE']);

/** The exit status for an error that ended a command (its cause chain included). */
export function exitCodeOf(e: unknown): number {
  for (let x = e, depth = 0; x && depth < 8; x = (x as { cause?: unknown }).cause, depth++) {
    if (x instanceof ExitStatusError) return x.status || EXIT.FAILED;
    if (x instanceof CommanderError) return x.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    if (x instanceof InvalidArgumentError || x instanceof UsageError) return EXIT.USAGE;
    if (x instanceof LinkRefusedError || x instanceof RefusedError || x instanceof CacheSizeError) return EXIT.REFUSED;
    if (x instanceof RpcError) {
      if (x.kind === 'wrong_channel') return EXIT.WRONG_CHANNEL;
      if (x.kind === 'auth_error') return EXIT.REFUSED;
      if (x.kind === 'disconnected' || x.kind === 'timeout') return EXIT.UNREACHABLE;
    }
    if (x instanceof FsError && (x.code === 'ACCES' || x.code === 'PERM')) return EXIT.REFUSED;
    const code = (x as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && UNREACHABLE_ERRNO.has(code) && (x as { syscall?: string }).syscall === 'connect') return EXIT.UNREACHABLE;
  }
  return EXIT.FAILED;
}
