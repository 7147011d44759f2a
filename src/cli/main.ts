#!/usr/bin/env node
// libuv's thread pool runs every fs call; the default 4 threads starve a file server.
process.env.UV_THREADPOOL_SIZE ??= '16';

import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { serveCommand } from './serve.js';
import { demoCommand } from './demo.js';
import { proxyServerCommand } from './proxy-server.js';
import { proxyClientCommand } from './proxy-client.js';
import { mountCommand } from './mount.js';
import { umountCommand } from './umount.js';
import { keygenCommand, tlsKeygenCommand } from './keygen.js';
import { flushCommand } from './flush.js';
import { cacheCommand } from './cache-stats.js';
import { agentCommand } from './agent.js';
import { sessiondCommand } from './sessiond.js';
import { sessionCommand } from './session.js';
import { metaCommand } from './meta.js';
import { vmCommand } from './vm.js';
import { imageCommand } from './image.js';
import { demoVmCommand } from './demo-vm.js';
import { versionCommand, buildInfo } from './version.js';
import { EXIT, exitCodeOf, exitTableText } from './exit-codes.js';

const program = new Command('gvfs')
  .description('GVFS: a user-level distributed file system virtualization layer on NFSv3')
  .version((await buildInfo()).version)
  .showHelpAfterError()
  .addHelpText('after', exitTableText());

program.addCommand(serveCommand());
program.addCommand(proxyServerCommand());
program.addCommand(proxyClientCommand());
program.addCommand(keygenCommand());
program.addCommand(tlsKeygenCommand());
program.addCommand(mountCommand());
program.addCommand(umountCommand());
program.addCommand(flushCommand());
program.addCommand(cacheCommand());
program.addCommand(agentCommand());
program.addCommand(sessiondCommand());
program.addCommand(sessionCommand());
program.addCommand(metaCommand());
program.addCommand(vmCommand());
program.addCommand(imageCommand());
program.addCommand(demoCommand());
program.addCommand(versionCommand());
// gvfs demo vm: the VM demo, a subcommand of the demo.
program.commands.find((c) => c.name() === 'demo')?.addCommand(demoVmCommand());

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
