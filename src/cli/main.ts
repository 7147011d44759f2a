#!/usr/bin/env node
// libuv's thread pool runs every fs call; the default 4 threads starve a file server.
process.env.UV_THREADPOOL_SIZE ??= '16';

import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { buildProgram } from './program.js';
import { EXIT, exitCodeOf } from './exit-codes.js';

const program = await buildProgram();

// Usage errors end with EXIT.USAGE, not commander's 1 (it has printed the message and the help already).
const exitOverride = (c: Command): void => {
  c.exitOverride();
  c.commands.forEach(exitOverride);
};
exitOverride(program);

program.parseAsync(process.argv).catch((e) => {
  const code = exitCodeOf(e);
  // Commander has printed its own parse errors (a plain CommanderError); an InvalidArgumentError thrown by a command's action it has not.
  if (!(e instanceof CommanderError) || e instanceof InvalidArgumentError) console.error(`gvfs: ${(e as Error).message}`);
  process.exit(code === EXIT.OK && !(e instanceof CommanderError) ? EXIT.FAILED : code);
});
