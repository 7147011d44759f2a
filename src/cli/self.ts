import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The gvfs command's entry point (this directory's main.js), for gvfs processes that start gvfs processes. */
export const GVFS_CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.js');

/**
 * V8 flags every gvfs process runs with. The `gvfs` command's `#!` line
 * (main.ts) carries the same ones (a unit test holds the two together); a
 * gvfs process that starts another passes them (gvfsArgv), as do the tests
 * and benchmarks, so what they measure is what the command runs.
 *
 * --max-semi-space-size=2 (MiB): V8's young generation otherwise grows to
 * 3 x 16 MiB in a daemon that answers thousands of calls a second, every
 * call leaving a few KiB of short-lived objects. Measured on `gvfs serve`
 * (issue 19, server-cpu and the server suite's workloads): peak RSS 124 ->
 * 100 MiB, the server's CPU per MiB or per call no higher (the survivors
 * of a scavenge are the few calls in flight, whatever the space's size).
 * Only a flag at start-up can set it: v8.setFlagsFromString no longer
 * changes a heap that exists.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

/** Arguments to `process.execPath` that run `gvfs ARGS` as the command does. */
export function gvfsArgv(args: string[]): string[] {
  return [...NODE_FLAGS, GVFS_CLI, ...args];
}

/**
 * What follows the script node runs, in a process's argv (/proc/PID/cmdline
 * split on NUL), whatever node flags come before it; undefined when there
 * is no script. The script is node's first argument that is not a flag:
 * gvfs passes its flags as `--name=value`, never with a separate value.
 */
export function scriptArgsOf(argv: string[]): { script: string; args: string[] } | undefined {
  const i = argv.findIndex((a, k) => k > 0 && !a.startsWith('-'));
  return i < 0 ? undefined : { script: argv[i], args: argv.slice(i + 1) };
}

/** The gvfs arguments in a process's argv: scriptArgsOf's, when the script is gvfs (a `cli/main.js` or a command named `gvfs`). */
export function gvfsArgsOf(argv: string[]): string[] | undefined {
  const s = scriptArgsOf(argv);
  return s && (s.script === GVFS_CLI || s.script.endsWith('/cli/main.js') || path.basename(s.script) === 'gvfs') ? s.args : undefined;
}
