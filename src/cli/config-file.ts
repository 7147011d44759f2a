import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError, type Option } from 'commander';

/** The commands that run as daemons and take --config. */
export const CONFIG_COMMANDS = ['serve', 'proxy-server', 'proxy-client', 'mount', 'agent', 'sessiond'] as const;

const HELP = 'read options from a JSON file: {"long-option-name": value, ...} (e.g. {"listen": "127.0.0.1:7000", "key": ["a.key"]}); options on the command line win; an unknown name is an error';

/**
 * `--config FILE` for a daemon: a JSON object whose keys are the command's
 * long option names without the dashes ("listen", "cache-size",
 * "no-meta"), whose values are what the command line would give (strings
 * or numbers for options with a value, true/false for switches, an array
 * for repeatable options). Values go through the same parsers and choices
 * as on the command line. Precedence: command line > file > defaults,
 * whatever the order of the words: a value from the file never replaces
 * one given on the command line, and a repeatable option given on the
 * command line replaces the file's list rather than adding to it.
 *
 * The file is read when commander meets --config, while it parses the
 * command line (before it checks required options, so the file may give
 * them). That read is synchronous: it happens once, at start, before the
 * daemon serves anything.
 */
export function addConfigOption(cmd: Command): Command {
  for (const opt of cmd.options) {
    const parse = opt.parseArg;
    if (!parse) continue;
    const key = opt.attributeName();
    opt.parseArg = <T>(v: string, prev: T): T => parse(v, (cmd.getOptionValueSource(key) === 'config' ? opt.defaultValue : prev) as T) as T;
  }
  cmd.option('--config <file>', HELP);
  cmd.on('option:config', (file: string) => applyConfig(cmd, file));
  return cmd;
}

function readConfig(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InvalidArgumentError(`--config ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new InvalidArgumentError(`--config ${file}: not JSON: ${(e as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new InvalidArgumentError(`--config ${file}: expected a JSON object of option names and values`);
  return v as Record<string, unknown>;
}

export function applyConfig(cmd: Command, file: string): void {
  const conf = readConfig(file);
  const byName = new Map(cmd.options.filter((o) => o.long && o.long !== '--config' && o.long !== '--help').map((o) => [o.long!.slice(2), o] as const));
  for (const [name, raw] of Object.entries(conf)) {
    const opt = byName.get(name);
    if (!opt) throw new InvalidArgumentError(`--config ${file}: unknown option "${name}" for gvfs ${cmd.name()} (keys are long option names without the dashes: ${[...byName.keys()].join(', ')})`);
    const key = opt.attributeName();
    if (cmd.getOptionValueSource(key) === 'cli') continue;
    let value: unknown;
    try {
      value = valueOf(opt, raw);
    } catch (e) {
      throw new InvalidArgumentError(`--config ${file}: "${name}": ${(e as Error).message}`);
    }
    cmd.setOptionValueWithSource(key, value, 'config');
  }
}

function valueOf(opt: Option, raw: unknown): unknown {
  const isSwitch = !opt.required && !opt.optional;
  if (isSwitch || (opt.optional && typeof raw === 'boolean')) {
    if (typeof raw !== 'boolean') throw new Error('expected true or false');
    // "no-meta": true sets meta to false.
    return opt.negate ? !raw : opt.optional && raw ? (opt.presetArg ?? true) : raw;
  }
  const one = (x: unknown, prev: unknown) => {
    if (typeof x !== 'string' && typeof x !== 'number') throw new Error(`expected a string or number, got ${JSON.stringify(x)}`);
    return opt.parseArg ? opt.parseArg(String(x), prev) : String(x);
  };
  if (!Array.isArray(raw)) return one(raw, opt.defaultValue);
  if (!Array.isArray(opt.defaultValue) && !/repeatable/.test(opt.description)) throw new Error('expected one value, not a list (the option is not repeatable)');
  return raw.reduce((acc: unknown, x) => one(x, acc), opt.defaultValue);
}
