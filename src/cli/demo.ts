import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { LocalExport } from '../backends/local-export/local-export.js';
import { createNfs3Server } from '../frontends/nfs3-server/server.js';

const run = promisify(execFile);

/**
 * The README's main job: serve a demo export with `gvfs serve`'s machinery
 * and show an NFS client this project did not write (libnfs) listing it and
 * copying a file out of it, byte-identical.
 */
export function demoCommand(): Command {
  return new Command('demo')
    .description('Serve a demo export and show an independent NFS client (libnfs) listing it and copying from it')
    .option('--keep', 'leave the demo directory in place')
    .action(async (o) => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-demo-'));
      const exp = path.join(dir, 'export');
      await fs.mkdir(path.join(exp, 'images'), { recursive: true });
      await fs.writeFile(path.join(exp, 'README.txt'), 'Served by gvfs over NFSv3.\n');
      const image = Buffer.alloc(8 << 20);
      for (let i = 0; i < image.length; i += 4096) image.writeUInt32BE(i / 4096, i);
      await fs.writeFile(path.join(exp, 'images', 'disk.img'), image);
      const backend = await LocalExport.open({ root: exp, name: '/demo', stateDir: path.join(dir, 'state') });
      const server = createNfs3Server({ backend });
      const { port } = await server.listen(0, '127.0.0.1');
      const url = (p: string) => `nfs://127.0.0.1/demo${p}?version=3&nfsport=${port}&mountport=${port}`;
      console.log(`gvfs serve: exporting ${exp} as /demo on 127.0.0.1:${port}\n`);
      try {
        for (const p of ['/', '/images/']) {
          console.log(`$ nfs-ls '${url(p)}'`);
          console.log((await run('nfs-ls', [url(p)])).stdout);
        }
        const out = path.join(dir, 'copy.img');
        console.log(`$ nfs-cp '${url('/images/disk.img')}' ${out}`);
        await run('nfs-cp', [url('/images/disk.img'), out]);
        const h = async (f: string) => createHash('sha256').update(await fs.readFile(f)).digest('hex');
        const [a, b] = [await h(path.join(exp, 'images', 'disk.img')), await h(out)];
        console.log(`sha256 served: ${a}\nsha256 copied: ${b}\n${a === b ? 'byte-identical' : 'MISMATCH'}`);
        if (a !== b) process.exitCode = 1;
      } finally {
        await server.close();
        await backend.close();
        if (!o.keep) await fs.rm(dir, { recursive: true, force: true });
      }
    });
}
