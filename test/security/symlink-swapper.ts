import { spawn } from 'node:child_process';
import path from 'node:path';

/** Swaps directory `v` for a symlink to `out` and back, as fast as it can, until `flag` exists; prints the swaps. */
const SWAPPER = `import os,sys
v,real,out,flag=sys.argv[1:5]
n=0
while not os.path.exists(flag):
    try:
        os.rename(v, real); os.symlink(out, v); os.unlink(v); os.rename(real, v)
    except OSError:
        pass
    n+=1
print(n)`;

/**
 * A local user racing the export (issue 17's symlink tests): swaps EXPORT/v for a
 * symlink to `outside` and back until `flag` exists. `exited` resolves when it
 * stops; `swaps()` is the number of swaps it printed.
 */
export function startSwapper(exportDir: string, outside: string, flag: string): { exited: Promise<number | null>; swaps(): string } {
  const p = spawn('/usr/bin/python3', ['-c', SWAPPER, path.join(exportDir, 'v'), path.join(exportDir, 'v.real'), outside, flag], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => p.once('exit', r));
  return { exited, swaps: () => out };
}
