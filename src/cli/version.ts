import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';

/** What scripts/build-info.mjs recorded when this copy was built (dist/build-info.json). */
export interface BuildInfo {
  name: string;
  version: string;
  /** The git commit built, or null when built outside a git checkout. */
  commit: string | null;
  /** Whether the tree had uncommitted changes to tracked files then. */
  dirty: boolean | null;
  builtAt: string | null;
}

const BUILD_INFO = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'build-info.json');

/** Read at run time from the installed files: never from git (an installed package has none). */
export async function buildInfo(): Promise<BuildInfo & { recorded: boolean }> {
  try {
    return { ...(JSON.parse(await fs.readFile(BUILD_INFO, 'utf8')) as BuildInfo), recorded: true };
  } catch {
    // Built without scripts/build-info.mjs (tsc alone): the package's version, no commit.
    const pkg = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'package.json');
    const version = await fs
      .readFile(pkg, 'utf8')
      .then((t) => String((JSON.parse(t) as { version?: unknown }).version ?? 'unknown'))
      .catch(() => 'unknown');
    return { name: 'gvfs', version, commit: null, dirty: null, builtAt: null, recorded: false };
  }
}

export function versionCommand(): Command {
  return new Command('version')
    .description('Print the version and the git commit this copy was built from (recorded at build time)')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      const b = await buildInfo();
      const node = process.versions.node;
      if (o.json) {
        console.log(JSON.stringify({ version: b.version, commit: b.commit, dirty: b.dirty, builtAt: b.builtAt, node }));
        return;
      }
      const commit = b.commit ? `${b.commit}${b.dirty ? ' (with uncommitted changes)' : ''}` : b.recorded ? 'unknown (built outside git)' : 'unknown (dist/build-info.json missing: build with npm run build)';
      console.log(`gvfs ${b.version}\ncommit ${commit}\nbuilt ${b.builtAt ?? 'unknown'}\nnode ${node}`);
    });
}
