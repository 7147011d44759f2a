import { Command } from 'commander';
import { openStore, parseImageUrl } from '../store/open-store.js';
import { S3Store } from '../store/s3-store.js';
import { DEFAULT_CHUNKING, FIXED_CHUNKING } from '../image/chunker.js';
import { pushImage } from '../image/push.js';
import { gcStore, listImages, loadImage, removeImage, DEFAULT_GRACE_MS, DEFAULT_LEASE_MS } from '../image/catalog.js';
import { fingerprint, readPublisherKey, readTrustedKeys, readUnverified, writePublisherKey } from '../image/signature.js';
import { imageKey } from '../image/layout.js';
import { parseIntArg } from './util.js';
import { EXIT } from './exit-codes.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

function storeOf(url: string, o: { endpoint?: string }, withName: boolean) {
  const loc = parseImageUrl(url, withName);
  return { store: openStore(loc.root, { endpoint: o.endpoint }), name: loc.name! };
}

/** `gvfs image`: golden images on an object store (S3 or file://): push, ls, show, rm, gc, keygen. */
export function imageCommand(): Command {
  const img = new Command('image').description('Images on an object store (S3 e.g. Ceph radosgw, or file:///DIR): content-addressed chunks, signed manifests');
  const endpoint = ['--endpoint <url>', 'S3 endpoint (e.g. http://127.0.0.1:7480 for radosgw); credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY'] as const;

  img
    .command('keygen')
    .description('Write a new Ed25519 publisher key to FILE (owner-only) and its public half to FILE.pub (give that to --trust-publisher)')
    .argument('<file>')
    .option('--comment <text>', 'comment on the public key line')
    .option('--json', 'JSON output')
    .action(async (file: string, o) => {
      const r = await writePublisherKey(file, o.comment);
      if (o.json) console.log(JSON.stringify({ key: file, ...r }));
      else console.log(`publisher key ${file}, public key ${r.pubFile} (fingerprint ${r.fingerprint})`);
    });

  img
    .command('push')
    .description('Push DIR as image NAME: chunks by SHA-256 (each stored once, zstd), zero runs never stored, manifest signed by --key')
    .argument('<dir>')
    .argument('<url>', 's3://BUCKET[/PREFIX]/NAME or file:///DIR/NAME')
    .requiredOption('--key <file>', 'publisher private key (gvfs image keygen)')
    .option(...endpoint)
    .option('--chunking <kind>', 'fastcdc (default, by measurement: see src/image/chunker.ts) or fixed (64 KiB)', 'fastcdc')
    .option('--create-bucket', 'create the S3 bucket if it does not exist')
    .option('--json', 'JSON output')
    .action(async (dir: string, url: string, o) => {
      if (o.chunking !== 'fastcdc' && o.chunking !== 'fixed') throw new Error('--chunking: fastcdc or fixed');
      const { store, name } = storeOf(url, o, true);
      try {
        if (o.createBucket && store instanceof S3Store) await store.ensureBucket();
        const r = await pushImage(store, dir, name, await readPublisherKey(o.key), { chunking: o.chunking === 'fixed' ? FIXED_CHUNKING : DEFAULT_CHUNKING });
        if (o.json) console.log(JSON.stringify(r));
        else console.log(`pushed ${name} (${r.digest.slice(0, 16)}): ${r.files} files, ${r.plainBytes} bytes (${r.zeroBytes} in zero runs), ${r.uniqueChunks} chunks, ${r.newChunks} new, ${r.storedBytes} bytes stored`);
      } finally {
        await store.close();
      }
    });

  img
    .command('ls')
    .description('List the images of a store')
    .argument('<url>', 's3://BUCKET[/PREFIX] or file:///DIR')
    .option(...endpoint)
    .option('--json', 'JSON output')
    .action(async (url: string, o) => {
      const { store } = storeOf(url, o, false);
      try {
        const l = await listImages(store);
        if (o.json) console.log(JSON.stringify(l));
        else for (const i of l) console.log(`${i.name}\t${i.size}\t${i.mtime.toISOString()}`);
      } finally {
        await store.close();
      }
    });

  img
    .command('show')
    .description('Print an image manifest; with --trust-publisher, refuse it unless signed by a trusted key')
    .argument('<url>', 's3://BUCKET[/PREFIX]/NAME or file:///DIR/NAME')
    .option(...endpoint)
    .option('--trust-publisher <file>', 'trusted publisher public key file (repeatable)', collect)
    .option('--json', 'JSON output (the manifest)')
    .action(async (url: string, o) => {
      const { store, name } = storeOf(url, o, true);
      try {
        let manifest;
        let publisher: string;
        let verified = false;
        if (o.trustPublisher) {
          const v = await loadImage(store, name, await readTrustedKeys(o.trustPublisher));
          manifest = v.manifest;
          publisher = fingerprint(v.publisher);
          verified = true;
        } else ({ manifest, publisher } = readUnverified(await store.get(imageKey(name))));
        if (o.json) console.log(JSON.stringify({ verified, publisher, manifest }));
        else {
          console.log(`${manifest.name}: created ${manifest.created}, publisher ${publisher} (${verified ? 'verified' : 'NOT verified: give --trust-publisher'}), chunking ${manifest.chunking.kind}`);
          for (const e of manifest.entries) console.log(`${e.type.padEnd(7)} ${e.mode.toString(8).padStart(4, '0')} ${e.type === 'file' ? String(e.size).padStart(12) : ''.padStart(12)} ${e.path}${e.type === 'symlink' ? ` -> ${e.target}` : ''}${e.type === 'file' ? ` (${e.extents.length} extents${e.hint ? `, ${e.hint}` : ''})` : ''}`);
        }
      } finally {
        await store.close();
      }
    });

  img
    .command('rm')
    .description('Remove an image manifest (its chunks go at the next gc)')
    .argument('<url>', 's3://BUCKET[/PREFIX]/NAME or file:///DIR/NAME')
    .option(...endpoint)
    .option('--json', 'JSON output')
    .action(async (url: string, o) => {
      const { store, name } = storeOf(url, o, true);
      try {
        await removeImage(store, name);
        if (o.json) console.log(JSON.stringify({ removed: name }));
        else console.log(`removed ${name}`);
      } finally {
        await store.close();
      }
    });

  img
    .command('gc')
    .description('Delete chunks no manifest uses; never while a push is in progress (see src/image/catalog.ts)')
    .argument('<url>', 's3://BUCKET[/PREFIX] or file:///DIR')
    .option(...endpoint)
    .option('--grace <seconds>', 'keep unused chunks younger than this', parseIntArg, DEFAULT_GRACE_MS / 1000)
    .option('--lease <seconds>', 'a push lease older than this is from a dead push and ignored', parseIntArg, DEFAULT_LEASE_MS / 1000)
    .option('--dry-run', 'report, delete nothing')
    .option('--json', 'JSON output')
    .action(async (url: string, o) => {
      const { store } = storeOf(url, o, false);
      try {
        const r = await gcStore(store, { graceMs: o.grace * 1000, leaseMs: o.lease * 1000, dryRun: !!o.dryRun });
        if (o.json) console.log(JSON.stringify(r));
        else console.log(r.refused ?? `${r.images} images, ${r.chunks} chunks (${r.live} used): ${o.dryRun ? 'would delete' : 'deleted'} ${r.deleted} (${r.deletedBytes} bytes), kept ${r.young} unused young chunks`);
        if (r.refused) process.exitCode = EXIT.REFUSED;
      } finally {
        await store.close();
      }
    });
  return img;
}
