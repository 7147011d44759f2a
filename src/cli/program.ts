import { Command } from 'commander';
import { buildInfo } from './version.js';
import { exitTableText } from './exit-codes.js';
import { addConfigOption, CONFIG_COMMANDS } from './config-file.js';
import { LOG_LEVELS } from '../util/log.js';

type Builder = () => Promise<Command[]>;

/**
 * Every command, in the order `gvfs --help` lists them, and how to load it.
 * A command's module is imported only when the command is wanted: loading
 * all of them (the S3 SDK, fastify, ssh2, QEMU control, ...) took every gvfs
 * process from 54 to 83 MiB before it did anything, and `gvfs serve`'s
 * memory is measured against nfs-ganesha's (issue 19).
 */
const COMMANDS: Array<[string, Builder]> = [
  ['serve', async () => [(await import('./serve.js')).serveCommand()]],
  ['proxy-server', async () => [(await import('./proxy-server.js')).proxyServerCommand()]],
  ['proxy-client', async () => [(await import('./proxy-client.js')).proxyClientCommand()]],
  ['cache-server', async () => [(await import('./cache-server.js')).cacheServerCommand()]],
  ['keygen', async () => [(await import('./keygen.js')).keygenCommand()]],
  ['tls-keygen', async () => [(await import('./keygen.js')).tlsKeygenCommand()]],
  ['mount', async () => [(await import('./mount.js')).mountCommand()]],
  ['umount', async () => [(await import('./umount.js')).umountCommand()]],
  ['flush', async () => [(await import('./flush.js')).flushCommand()]],
  ['cache', async () => [(await import('./cache-stats.js')).cacheCommand()]],
  ['agent', async () => [(await import('./agent.js')).agentCommand()]],
  ['sessiond', async () => [(await import('./sessiond.js')).sessiondCommand()]],
  ['session', async () => [(await import('./session.js')).sessionCommand()]],
  ['meta', async () => [(await import('./meta.js')).metaCommand()]],
  ['vm', async () => [(await import('./vm.js')).vmCommand()]],
  ['image', async () => [(await import('./image.js')).imageCommand()]],
  [
    'demo',
    async () => {
      // gvfs demo vm: the VM demo, a subcommand of the demo.
      const demo = (await import('./demo.js')).demoCommand();
      demo.addCommand((await import('./demo-vm.js')).demoVmCommand());
      return [demo];
    },
  ],
  ['version', async () => [(await import('./version.js')).versionCommand()]],
  ['status', async () => [(await import('./status.js')).statusCommand()]],
  ['completion', async () => [(await import('./completion.js')).completionCommand()]],
  ['man', async () => [(await import('./man.js')).manCommand()]],
];

/**
 * The command tree of `gvfs`, built in one place: main.ts parses with it,
 * and `gvfs completion` and `gvfs man` walk it (so a new command appears in
 * both without edits). `only`: the command about to run (main.ts passes the
 * first argument); when it names one, only that command is loaded (`gvfs
 * serve --help` still shows all of serve). Anything else — no command, an
 * option, an unknown word, completion or man, which walk the whole tree —
 * loads every command.
 */
export async function buildProgram(only?: string): Promise<Command> {
  const program = new Command('gvfs')
    .description('GVFS: a user-level distributed file system virtualization layer on NFSv3')
    .version((await buildInfo()).version)
    .showHelpAfterError()
    .addHelpText('after', exitTableText());
  const one = only !== 'completion' && only !== 'man' ? COMMANDS.find(([name]) => name === only) : undefined;
  for (const [, build] of one ? [one] : COMMANDS) for (const c of await build()) program.addCommand(c);
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
