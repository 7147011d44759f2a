#!/usr/bin/env -S node --max-semi-space-size=2
// libuv's thread pool runs every fs call. Set here, this reaches only the processes gvfs starts: the ESM
// loader has already started this process's pool (4 threads) reading these modules, so it takes effect
// only when set in the environment before node starts (measured, issue 19: 11 threads here, 23 with it
// set outside; on 2 busy cores 16 threads gave no gain in CPU per call or throughput).
process.env.UV_THREADPOOL_SIZE ??= '16';

import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { buildProgram } from './program.js';
import { EXIT, exitCodeOf } from './exit-codes.js';
import { flushLogs, levelFromFlags, logger, setLogLevel } from '../util/log.js';

/** Long-running commands: their stderr is their JSON log, so even a fatal error goes there as JSON. */
const DAEMONS = new Set(['serve', 'proxy-server', 'proxy-client', 'mount', 'agent', 'sessiond']);
let running: Command | undefined;

// Only the command about to run is loaded (program.ts).
const program = await buildProgram(process.argv[2]);

// Usage errors end with EXIT.USAGE, not commander's 1 (it has printed the message and the help already).
// The log flags (-v, --log-level) are in the tree (program.ts); the hook below applies them.
const exitOverride = (c: Command): void => {
  c.exitOverride();
  c.commands.forEach(exitOverride);
};
exitOverride(program);
program.hook('preAction', (_top, action) => {
  running = action;
  let level: string | undefined;
  try {
    level = levelFromFlags(action.opts());
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  if (level) setLogLevel(level);
});

program.parseAsync(process.argv).catch((e) => {
  const code = exitCodeOf(e);
  // Commander has printed its own parse errors (a plain CommanderError); an InvalidArgumentError thrown by a command's action it has not.
  if (!(e instanceof CommanderError) || e instanceof InvalidArgumentError) {
    if (running && DAEMONS.has(running.name())) logger('cli').fatal({ command: running.name(), exitCode: code, reason: (e as Error).message }, `gvfs ${running.name()}: ${(e as Error).message}`);
    else console.error(`gvfs: ${(e as Error).message}`);
  }
  flushLogs();
  process.exit(code === EXIT.OK && !(e instanceof CommanderError) ? EXIT.FAILED : code);
});
