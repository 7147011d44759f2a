import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import type { CacheStats } from '../wrappers/cache/cache-backend.js';
import { controlRequest, controlSocketOf } from '../wrappers/cache/control-socket.js';
import * as f from '../wrappers/cache/fs-cb.js';
import { BlockStore } from '../wrappers/cache/block-store.js';
import { Journal } from '../wrappers/cache/journal.js';
import { listSessions, readSmallFile, sessionDirName } from '../wrappers/cache/session-dir.js';
import { sumCounters, type CounterSnapshot } from '../util/counters.js';
import type { CacheServerStats } from '../sitecache/cache-server.js';
import { fetchTierStats, parseTiers } from '../sitecache/site-client.js';
import { readSiteKey } from '../sitecache/auth.js';

/** gvfs cache stats: counters of the sessions using a cache directory (running ones asked live, others from their last saved state). */
export function cacheCommand(): Command {
  const cache = new Command('cache').description('Inspect a GVFS disk cache');
  cache
    .command('stats')
    .description('Capacity, use, hits, misses, bytes fetched and served, dirty bytes and flush backlog of a cache directory; or, with --tier, a site cache tier\'s counters per host')
    .option('--cache-dir <dir>', 'the cache directory')
    .option('--session <name>', 'only this session')
    .option('--tier <host:port>', 'instead: a site cache tier (gvfs cache-server): hits, misses, coalesced requests, bytes from upstream and served, in all and per host (source address)')
    .option('--site-key <file>', 'with --tier: the site key (the tier\'s --key)')
    .option('--site-ca <file>', 'with --tier: the tier\'s TLS certificate or CA (PEM)')
    .option('--json', 'print JSON')
    .action(async (o) => {
      if (o.tier) {
        if (o.cacheDir || o.session) throw new Error('--tier asks a site tier: --cache-dir and --session do not go with it');
        await tierStats(o);
        return;
      }
      if (o.siteKey || o.siteCa) throw new Error('--site-key and --site-ca go with --tier');
      if (!o.cacheDir) throw new Error('give --cache-dir DIR (a cache directory) or --tier HOST:PORT (a site cache tier)');
      const dir: string = o.cacheDir;
      await checkCacheDir(dir);
      const names = o.session ? [sessionDirName(o.session)] : await listSessions(dir);
      if (o.session && !(await isDir(path.join(dir, 'sessions', names[0])))) throw new Error(`${dir} has no session ${o.session} (sessions: ${(await listSessions(dir)).join(', ') || 'none'})`);
      const sessions: Array<{ session: string; live: boolean; stats?: Partial<CacheStats>; savedAt?: string }> = [];
      for (const name of names) {
        const sd = path.join(dir, 'sessions', name);
        const c = await controlSocketOf(sd);
        if (c) {
          const r = await controlRequest(c.socket, { op: 'stats' }, 10_000).catch(() => undefined);
          if (r?.ok) {
            sessions.push({ session: name, live: true, stats: r.stats });
            continue;
          }
        }
        const saved = await readSmallFile(path.join(sd, 'stats.json'));
        const stats = saved ? (JSON.parse(saved) as Partial<CacheStats> & { savedAt?: string }) : {};
        const j = await Journal.inspect(sd);
        stats.flushBacklog = { files: j.files, records: j.records, bytes: j.bytes };
        stats.journalBytes = j.diskBytes;
        sessions.push({ session: name, live: false, stats, savedAt: stats.savedAt });
      }
      const onDisk = await blockBytes(path.join(dir, 'blocks'));
      // The cache directory's counters: the sum over its sessions (running ones live, others as last saved).
      const total = sumCounters(sessions.map((x) => x.stats ?? {}));
      if (o.json) {
        console.log(JSON.stringify({ dir, blocksOnDisk: onDisk, total, sessions }));
        return;
      }
      console.log(`cache ${dir}: ${mib(onDisk.bytes)} MiB in ${onDisk.blocks} blocks on disk${onDisk.wholeFiles ? `, and ${mib(onDisk.wholeBytes)} MiB in ${onDisk.wholeFiles} whole files (for passthrough)` : ''}`);
      if (sessions.length > 1) for (const l of counterLines(total)) console.log(`  all sessions: ${l}`);
      for (const s of sessions) {
        const x = s.stats ?? {};
        const b = x.flushBacklog ?? { files: 0, records: 0, bytes: 0 };
        console.log(`session ${s.session} (${s.live ? 'running' : `not running${s.savedAt ? `, counters as of ${s.savedAt}` : ''}`})${x.mode ? `: ${x.mode}` : ''}`);
        if (x.capacity !== undefined) console.log(`  capacity ${mib(x.capacity)} MiB, used ${mib(x.used ?? 0)} MiB (${x.blocks ?? 0} blocks of ${(x.blockSize ?? 0) / 1024} KiB), journal ${mib(x.journalBytes ?? 0)} MiB`);
        if (x.readBytes !== undefined) {
          for (const l of counterLines(sumCounters([x]))) console.log(`  ${l}`);
          console.log(`  read-ahead ${x.readAheadBlocks ?? 0} blocks, evictions ${x.evictions ?? 0}, invalidations ${x.invalidations ?? 0}, written blocks kept ${x.writtenBlocksKept ?? 0}`);
        }
        console.log(`  dirty ${mib(x.dirtyBytes ?? 0)} MiB; flush backlog ${mib(b.bytes)} MiB in ${b.records} writes to ${b.files} files${x.flushedBytes !== undefined ? `; flushed ${mib(x.flushedBytes)} MiB` : ''}`);
        for (const e of x.flushErrors ?? []) console.log(`  FLUSH ERROR file ${e.fh}: ${e.code}: ${e.message} (${e.bytes} bytes kept)`);
      }
    });
  return cache;
}

const mib = (n: number) => (n / 2 ** 20).toFixed(1);

/** gvfs cache stats --tier: the tier's counters, in all and per host. */
async function tierStats(o: Record<string, any>): Promise<void> {
  const [t] = parseTiers(o.tier);
  if (o.tier.includes(',')) throw new Error('--tier: one tier at a time');
  const st = (await fetchTierStats(t, { key: o.siteKey ? await readSiteKey(o.siteKey) : undefined, tlsCa: o.siteCa ? await readFile(o.siteCa) : undefined })) as CacheServerStats;
  if (o.json) {
    console.log(JSON.stringify({ tier: `${t.host}:${t.port}`, ...st }));
    return;
  }
  const ratio = (h: number, all: number) => (all ? ` (${((100 * h) / all).toFixed(1)}% hits)` : '');
  const asked = st.hits + st.misses + st.coalesced;
  console.log(`site tier ${t.host}:${t.port}: ${mib(st.diskBytes)} MiB in ${st.diskChunks} chunks on disk`);
  console.log(`  all hosts: ${asked} chunks asked${ratio(st.hits, asked)}: ${st.hits} hits, ${st.misses} misses, ${st.coalesced} coalesced; from upstream ${st.upstreamFetches} chunks, ${mib(st.bytesFromUpstream)} MiB; not upstream ${st.upstreamNotFound ?? 0}, refused from upstream ${st.upstreamRefused}; unauthorized ${st.unauthorized}, busy ${st.busy}`);
  const hosts = Object.entries(st.hosts).sort((a, b) => b[1].requests - a[1].requests);
  for (const [addr, h] of hosts) {
    console.log(`  host ${addr}: ${h.requests} asked${ratio(h.hits, h.requests)}: ${h.hits} hits, ${h.misses} misses, ${h.coalesced} coalesced, ${h.notFound ?? 0} not upstream, ${h.refused} failed; from upstream for it ${mib(h.bytesFromUpstream ?? 0)} MiB, served ${mib(h.bytesServed)} MiB`);
  }
}

/** The data counters (util/counters.ts) as text, in the words their definitions use. */
export function counterLines(c: CounterSnapshot): string[] {
  const pct = c.hitRatio === null ? '' : ` (${(100 * c.hitRatio).toFixed(1)}% hits, ${mib(c.hitBytes)} MiB; ${mib(c.missBytes)} MiB misses)`;
  const raw = c.channelBytesIn !== undefined ? `; the channel carried ${mib(c.channelBytesIn)} MiB in, ${mib(c.channelBytesOut ?? 0)} MiB out in all` : '';
  const prog = c.programReadBytes || c.programWriteBytes ? [`programs read ${mib(c.programReadBytes)} MiB and wrote ${mib(c.programWriteBytes)} MiB through the mount (whose read-ahead reads the session's stack below)`] : [];
  return [
    ...prog,
    `the stack answered ${mib(c.readBytes)} MiB in ${c.readCalls} READs${pct}: from the cache ${mib(c.fromCacheBytes)} MiB, unflushed writes ${mib(c.fromJournalBytes)} MiB, zero blocks ${mib(c.zeroBytes)} MiB, over the channel ${mib(c.fromChannelBytes)} MiB${c.splicedBytes ? ` (${mib(c.splicedBytes)} MiB of it spliced from the cache's files to the kernel)` : ''}`,
    `written ${mib(c.writeBytes)} MiB in ${c.writeCalls} WRITEs`,
    `moved over the channel ${mib(c.movedBytes)} MiB: READ ${mib(c.channelReadBytes)} MiB (read-ahead ${mib(c.readAheadBytes)}), bulk ${mib(c.bulkWireBytes)} MiB carrying ${mib(c.bulkRawBytes)} MiB, WRITE ${mib(c.channelWriteBytes)} MiB (flushes ${mib(c.flushBytes)})${raw}`,
  ];
}

async function isDir(p: string): Promise<boolean> {
  return !!(await f.stat(p).catch(() => undefined))?.isDirectory();
}

/** A cache directory has blocks/ or sessions/ (made by the first proxy client on it); anything else is a mistake worth saying. */
async function checkCacheDir(dir: string): Promise<void> {
  const st = await f.stat(dir).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${dir}: ${e.code === 'ENOENT' ? 'no such directory' : e.message}`);
  });
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (!(await isDir(path.join(dir, 'blocks'))) && !(await isDir(path.join(dir, 'sessions')))) {
    throw new Error(`${dir} is not a GVFS cache directory (no blocks/ or sessions/ in it; give the --cache-dir of a mount or proxy client)`);
  }
}

async function blockBytes(dir: string): Promise<{ blocks: number; bytes: number; wholeFiles: number; wholeBytes: number }> {
  let blocks = 0;
  let bytes = 0;
  let wholeFiles = 0;
  let wholeBytes = 0;
  for (const a of await f.readdir(dir).catch(() => [] as string[])) {
    for (const fk of await f.readdir(path.join(dir, a)).catch(() => [] as string[])) {
      const d = path.join(dir, a, fk);
      for (const n of await f.readdir(d).catch(() => [] as string[])) {
        const st = await f.stat(path.join(d, n)).catch(() => undefined);
        if (!st) continue;
        // A version's whole file, beside its blocks.
        if (BlockStore.isWhole(n)) {
          wholeFiles++;
          wholeBytes += st.size;
        } else {
          blocks++;
          bytes += st.size;
        }
      }
    }
  }
  return { blocks, bytes, wholeFiles, wholeBytes };
}
