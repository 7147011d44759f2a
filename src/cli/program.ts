import { Command } from 'commander';
import { serveCommand } from './serve.js';
import { demoCommand } from './demo.js';
import { proxyServerCommand } from './proxy-server.js';
import { proxyClientCommand } from './proxy-client.js';
import { cacheServerCommand } from './cache-server.js';
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
import { exitTableText } from './exit-codes.js';
import { completionCommand } from './completion.js';
import { manCommand } from './man.js';
import { statusCommand } from './status.js';
import { addConfigOption, CONFIG_COMMANDS } from './config-file.js';
import { LOG_LEVELS } from '../util/log.js';

/**
 * The whole command tree of `gvfs`, built in one place: main.ts parses
 * with it, and `gvfs completion` and `gvfs man` walk it (so a new command
 * appears in both without edits).
 */
export async function buildProgram(): Promise<Command> {
  const program = new Command('gvfs')
    .description('GVFS: a user-level distributed file system virtualization layer on NFSv3')
    .version((await buildInfo()).version)
    .showHelpAfterError()
    .addHelpText('after', exitTableText());

  program.addCommand(serveCommand());
  program.addCommand(proxyServerCommand());
  program.addCommand(proxyClientCommand());
  program.addCommand(cacheServerCommand());
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
  program.addCommand(statusCommand());
  program.addCommand(completionCommand());
  program.addCommand(manCommand());
  for (const c of program.commands) if ((CONFIG_COMMANDS as readonly string[]).includes(c.name())) addConfigOption(c);
  for (const c of program.commands) addLogOptions(c);
  return program;
}

const verbosity = (_: string, n: number) => n + 1;

/**
 * Every command that runs takes the log flags (beside GVFS_LOG_LEVEL and
 * GVFS_TRACE). Added here, in the tree, so --help, `gvfs man` and
 * `gvfs completion` show them; main.ts reads them in its preAction hook.
 * Only on leaves: on a group (`gvfs meta`) too, commander would give
 * `gvfs meta show -v` to the group and the command would not see it.
 */
function addLogOptions(c: Command): void {
  if (c.commands.length) {
    c.commands.forEach(addLogOptions);
    return;
  }
  c.option('-v, --verbose', 'more log detail: -v debug, -vv trace (GVFS_LOG_LEVEL, GVFS_TRACE=layer,... also work)', verbosity, 0);
  c.option('--log-level <level>', `log level: ${LOG_LEVELS.join(', ')} (default: GVFS_LOG_LEVEL or info)`);
}
