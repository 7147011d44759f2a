// libuv's thread pool serves every fs call of in-process servers.
process.env.UV_THREADPOOL_SIZE ??= '16';

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { makeContext, render, ResultsFile, type SuiteResult } from './lib/report.js';
import { serverSuite } from './suites/server.js';
import { chainSuite } from './suites/chain.js';
import { channelSuite } from './suites/channel.js';
import { wanSuite } from './suites/wan.js';
import { mountSuite } from './suites/mount.js';
import { cacheSuite } from './suites/cache.js';
import { sessionsSuite } from './suites/sessions.js';
import { metaSuite } from './suites/meta.js';
import { vmSuite } from './suites/vm.js';
import { storeSuite } from './suites/store.js';
import { warmSuite } from './suites/warm.js';
import { smallWanSuite } from './suites/smallwan.js';

const SUITES: Record<string, (ctx: ReturnType<typeof makeContext>, profile: string, sizes: { imageMiB?: number; memMiB?: number }) => Promise<SuiteResult>> = {
  server: serverSuite,
  chain: chainSuite,
  channel: channelSuite,
  wan: wanSuite,
  mount: mountSuite,
  cache: (ctx) => cacheSuite(ctx),
  sessions: (ctx) => sessionsSuite(ctx),
  meta: (ctx, profile, sizes) => metaSuite(ctx, profile, sizes.memMiB),
  vm: (ctx, profile, sizes) => vmSuite(ctx, profile, { memMiB: sizes.memMiB, diskMiB: sizes.imageMiB }),
  store: (ctx, profile) => storeSuite(ctx, profile),
  warm: (ctx) => warmSuite(ctx),
  smallwan: (ctx, profile) => smallWanSuite(ctx, profile),
};

const here = path.dirname(fileURLToPath(import.meta.url));

const program = new Command('gvfs-bench')
  .description('GVFS benchmarks: each suite measures GVFS beside its peers in one run and prints medians and ratios')
  .addOption(new Option('--suite <names...>', 'suites to run').choices(Object.keys(SUITES)).default(Object.keys(SUITES)))
  .option('--quick', 'small sizes, one run (a smoke run; figures are not meaningful)')
  .addOption(new Option('--profile <name>', 'emulated link for the wan suite').choices(['lan', 'wan', 'far']).default('wan'))
  .option('--image-mib <n>', 'wan suite: size of the disk image (default 2048, --quick 24)', (v) => Number(v))
  .option('--mem-mib <n>', 'wan suite: size of the memory-state file (default 512, --quick 16)', (v) => Number(v))
  .option('--runs <n>', 'runs per workload and system (median reported)', (v) => Number(v))
  .option('--out <dir>', 'where the JSON results go', path.join(here, '..', '..', 'bench', 'results'))
  .action(async (o) => {
    const runs = o.runs ?? (o.quick ? 1 : 3);
    const ctx = makeContext(!!o.quick, runs);
    // Every setting that shapes the figures; the results file also records the commit, command line and machine.
    const out = await ResultsFile.create(o.out, {
      quick: !!o.quick,
      runs,
      suites: o.suite,
      profile: o.profile,
      imageMiB: o.imageMib ?? null,
      memMiB: o.memMib ?? null,
      uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE,
    });
    console.log(`results: ${out.file}`);
    if (out.data.git.dirty) process.stderr.write(`bench: the tree differs from ${out.data.git.commit} (uncommitted changes): the results file says so\n`);
    for (const s of o.suite as string[]) {
      process.stderr.write(`suite ${s}...\n`);
      let r: SuiteResult;
      try {
        r = await SUITES[s](ctx, o.profile, { imageMiB: o.imageMib, memMiB: o.memMib });
      } catch (e) {
        // The suites before this one are already in the file; record the failure and stop.
        await out.finish({ suite: s, message: (e as Error).stack ?? String(e) });
        console.log(`results (suite ${s} failed): ${out.file}`);
        throw e;
      }
      await out.add(r);
      console.log(render(r));
    }
    await out.finish();
    console.log(`results: ${out.file}`);
  });

program.parseAsync(process.argv).catch((e) => {
  console.error(`bench: ${(e as Error).stack ?? e}`);
  process.exit(1);
});
