import type { Command, Option } from 'commander';

/** One command of the tree as completion and the man page need it. */
export interface TreeNode {
  /** Words from the root: ['gvfs', 'vm', 'clone']. */
  path: string[];
  cmd: Command;
  /** Visible options, --help included (commander's own view of them). */
  options: Option[];
  children: TreeNode[];
}

/** The root of a command (the program), from any command inside it. */
export function rootOf(c: Command): Command {
  let r = c;
  while (r.parent) r = r.parent;
  return r;
}

/** Walk commander's tree (hidden commands left out); every command once, parents first. */
export function commandTree(root: Command, path: string[] = [root.name()]): TreeNode {
  const help = root.createHelp();
  const children = help.visibleCommands(root).filter((c) => c.name() !== 'help').map((c) => commandTree(c, [...path, c.name()]));
  return { path, cmd: root, options: help.visibleOptions(root), children };
}

export function flatten(n: TreeNode): TreeNode[] {
  return [n, ...n.children.flatMap(flatten)];
}

/** Whether an option takes a value (`--listen <host:port>`), so the next word is not a command or flag. */
export const takesValue = (o: Option): boolean => o.required || o.optional;
