import fs from 'node:fs/promises';
import path from 'node:path';
import { makeExports, startCluster, type Cluster } from '../../test/helpers/services.js';
import type { BenchContext, SuiteResult, WorkloadResult } from '../lib/report.js';
import { summarize } from '../lib/stats.js';

/**
 * Issue 10: how long the session service takes to create a ready session
 * (POST /sessions answered and its mount listed by readdir) and to destroy
 * one (a 4 KiB write-back file flushed, unmounted, proxies stopped), with 1,
 * 10 and 50 sessions started at once on one compute host. Three agents
 * (state, data, compute) and the service on loopback, all on this machine;
 * each session: one data-server directory over TLS with a write-back cache.
 *
 * Figures are milliseconds (lower is better); the ratio column is each
 * concurrency against one session.
 */
export async function sessionsSuite(ctx: BenchContext): Promise<SuiteResult> {
  const levels = ctx.quick ? [1, 5] : [1, 10, 50];
  const c = await startCluster();
  const errors: string[] = [];
  const samples: Record<string, Record<string, number[]>> = {};
  const add = (w: string, n: number, v: number) => ((samples[w] ??= {})[String(n)] ??= []).push(v);
  try {
    await makeExports(c);
    let round = 0;
    for (let r = 0; r < ctx.runs; r++) {
      for (const n of levels) {
        round++;
        const t0 = performance.now();
        const created = await Promise.all(
          Array.from({ length: n }, async (_, i) => {
            const mnt = path.join(c.hosts.compute.mnt, `r${round}-${i}`);
            const s0 = performance.now();
            const res = await c.api(c.tokens.alice, 'POST', '/sessions', {
              compute: 'compute',
              exports: [{ role: 'data', host: 'data', path: path.join(c.hosts.data.exports, 'alice'), mountpoint: mnt }],
              cache: { mode: 'write-back', size: 64 << 20 },
              lifetime: 3600,
            });
            if (res.status !== 201) {
              errors.push(`create (${n} at once): ${res.status} ${res.body?.message}`);
              return undefined;
            }
            await fs.readdir(mnt);
            return { id: res.body.id as string, mnt, secs: performance.now() - s0 };
          }),
        );
        add('create: all ready', n, performance.now() - t0);
        const ok = created.filter((x): x is NonNullable<typeof x> => !!x);
        add('create: one session (median)', n, summarize(ok.map((x) => x.secs)).median);
        await Promise.all(ok.map((x, i) => fs.writeFile(path.join(x.mnt, `f${round}-${i}`), Buffer.alloc(4096, i))));
        const d0 = performance.now();
        const dsecs = await Promise.all(
          ok.map(async (x) => {
            const s0 = performance.now();
            const res = await c.api(c.tokens.alice, 'DELETE', `/sessions/${x.id}`);
            if (res.status !== 200 || res.body.state !== 'destroyed') errors.push(`destroy (${n} at once): ${res.status} ${res.body?.message}`);
            return performance.now() - s0;
          }),
        );
        add('destroy: all done', n, performance.now() - d0);
        add('destroy: one session (median)', n, summarize(dsecs).median);
        process.stderr.write(`  sessions: run ${r + 1}, ${n} at once: ${ok.length} created, ${dsecs.length} destroyed\n`);
      }
    }
    // Every flushed file is on the data server.
    const onServer = (await fs.readdir(path.join(c.hosts.data.exports, 'alice'))).length;
    const expected = levels.reduce((a, b) => a + b, 0) * ctx.runs;
    if (onServer !== expected) errors.push(`the data server has ${onServer} flushed files, expected ${expected}`);
  } finally {
    await c.stop();
  }
  const systems = [...levels].reverse().map(String);
  const workloads: WorkloadResult[] = Object.entries(samples).map(([name, bySys]) => ({
    name,
    unit: 'ms',
    better: 'lower' as const,
    systems: Object.fromEntries(systems.map((s) => [s, summarize(bySys[s] ?? [NaN])])),
  }));
  return {
    suite: 'sessions',
    baseline: '1',
    workloads,
    notes: [
      `columns: sessions created (then destroyed) at once on one compute host; ${ctx.runs} run(s) each`,
      'create: POST /sessions until its mount answers readdir (proxy server on the data host, then gvfs mount on the compute host); destroy: DELETE with a 4 KiB write-back file flushed',
      errors.length ? `ERRORS (${errors.length}): ${errors.slice(0, 5).join(' | ')}` : 'no errors',
    ],
  };
}
