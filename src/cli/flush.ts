import path from 'node:path';
import { Command } from 'commander';
import { proxyLink, sessionName, stackCache } from '../proxy/proxy-client.js';
import { controlRequest, controlSocketOf } from '../wrappers/cache/control-socket.js';
import { Journal } from '../wrappers/cache/journal.js';
import { listSessions, sessionDirName } from '../wrappers/cache/session-dir.js';
import type { FlushReport } from '../wrappers/cache/write-back.js';
import { addLinkOptions, linkOptions } from './proxy-client.js';
import { withProgress } from './progress.js';

interface SessionResult {
  session: string;
  how: 'running proxy client' | 'flushed here' | 'not flushed';
  report?: FlushReport;
  pending?: { files: number; records: number; bytes: number };
  error?: string;
}

/**
 * gvfs flush: deliver a cache directory's unflushed writes. A running proxy
 * client is asked through its control socket; a session with no running
 * proxy client is flushed here when the link options (--server, --key ...)
 * say how to reach its proxy server.
 */
export function flushCommand(): Command {
  return addLinkOptions(new Command('flush').description("Deliver a cache directory's write-back data to the server (through the running proxy client, or directly given --server/--key)"), {
    serverRequired: false,
  })
    .option('--session <name>', 'only this session (its key id, or user-NAME)')
    .option('--discard', 'DROP, with a warning, unflushed data that cannot be delivered (file removed on the server, permission refused ...)')
    .option('--wait <seconds>', 'how long to wait for a running proxy client to finish', (v) => Number(v), 600)
    .option('--json', 'print JSON event lines: progress, then {"event":"done","sessions":[...]} (see README, Progress)')
    .action(async (o) => {
      if (!o.cacheDir) throw new Error('--cache-dir DIR names the cache to flush');
      const dir: string = o.cacheDir;
      const names = o.session ? [sessionDirName(o.session)] : await listSessions(dir);
      const out: SessionResult[] = [];
      await withProgress({ op: 'flush', json: !!o.json, unit: 'bytes' }, async (p) => {
        // What waits, before anything is sent: the display's total (new writes meanwhile raise it).
        const live = new Map<string, string>();
        let total = 0;
        for (const name of names) {
          const sd = path.join(dir, 'sessions', name);
          const c = await controlSocketOf(sd);
          const b = c ? await liveBacklog(c.socket) : undefined;
          if (c && b !== undefined) live.set(name, c.socket);
          total += b ?? (await Journal.inspect(sd)).bytes;
        }
        p.setTotal(total);
        let base = 0;
        const offline: string[] = [];
        for (const name of names) {
          const socket = live.get(name);
          if (!socket) {
            offline.push(name);
            continue;
          }
          p.stage(`session ${name}`);
          const before = (await liveBacklog(socket)) ?? 0;
          const stop = pollBacklog(() => liveBacklog(socket), before, (d) => p.update(base + d));
          try {
            const r = await controlRequest(socket, { op: 'flush', discard: !!o.discard }, o.wait * 1000);
            if (!r.ok) throw new Error(r.error);
            out.push({ session: name, how: 'running proxy client', report: r.report });
          } catch (e) {
            const code = (e as NodeJS.ErrnoException).code;
            if (code !== 'ECONNREFUSED' && code !== 'ENOENT') throw new Error(`session ${name}: ${(e as Error).message}`);
            offline.push(name);
          } finally {
            stop();
          }
          base += before;
          p.update(base);
        }
        let link: Awaited<ReturnType<typeof linkOptions>> | undefined;
        if (offline.length && o.server) link = await linkOptions(o);
        for (const name of offline) {
          const sd = path.join(dir, 'sessions', name);
          const pending = await Journal.inspect(sd);
          if (!pending.records) continue;
          if (!link || sessionDirName(o.session ?? sessionName(link)) !== name) {
            out.push({ session: name, how: 'not flushed', pending, error: link ? "not this key's session" : 'no proxy client is running it: give --server and --key (or --user) to flush it from here' });
            continue;
          }
          p.stage(`session ${name}`);
          const { remote, tunnel } = proxyLink(link);
          const cache = stackCache(remote, { ...link, cache: { ...link.cache!, session: o.session ?? sessionName(link), controlSocket: false } })!;
          try {
            await cache.ready;
            const before = cache.stats().flushBacklog.bytes;
            const stop = pollBacklog(async () => cache.stats().flushBacklog.bytes, before, (d) => p.update(base + d));
            try {
              out.push({ session: name, how: 'flushed here', report: await cache.flush({ discard: !!o.discard }) });
            } finally {
              stop();
            }
            base += before;
            p.update(base);
          } finally {
            await cache.close().catch(() => undefined);
            tunnel?.close();
          }
        }
        return { sessions: out };
      });
      const failed = out.some((r) => r.error || r.report?.failed.length);
      if (o.json) {
        // The done event (above) carried the outcome.
      } else if (!out.length) console.log(`gvfs flush: nothing to flush in ${dir}`);
      else for (const r of out) console.log(describe(r));
      if (failed) process.exitCode = 1;
    });
}

/** A running proxy client's flush backlog (bytes), asked through its control socket; undefined when it does not answer. */
async function liveBacklog(socket: string): Promise<number | undefined> {
  const r = await controlRequest(socket, { op: 'stats' }, 10_000).catch(() => undefined);
  return r?.ok ? Number(r.stats?.flushBacklog?.bytes ?? 0) : undefined;
}

/** Ask for the backlog every 250 ms while a flush runs; report bytes delivered so far (backlog at start minus now). */
function pollBacklog(backlog: () => Promise<number | undefined>, before: number, report: (done: number) => void): () => void {
  let busy = false;
  const t = setInterval(() => {
    if (busy) return;
    busy = true;
    void backlog()
      .then((b) => {
        if (b !== undefined) report(Math.max(0, before - b));
      })
      .finally(() => (busy = false));
  }, 250);
  return () => clearInterval(t);
}

function describe(r: SessionResult): string {
  if (!r.report) return `session ${r.session}: NOT FLUSHED, ${r.pending?.bytes ?? 0} bytes in ${r.pending?.files ?? 0} files wait: ${r.error}`;
  const lines = [`session ${r.session} (${r.how}): flushed ${r.report.flushedBytes} bytes of ${r.report.flushedFiles} files`];
  if (r.report.discardedBytes) lines.push(`  WARNING: discarded ${r.report.discardedBytes} bytes that could not be delivered; the server never got them`);
  for (const x of r.report.failed) lines.push(`  FAILED file ${x.fh}: ${x.code}: ${x.message} (${x.bytes} bytes kept; gvfs flush --discard drops them)${x.path ? ` path ${x.path}` : ''}`);
  return lines.join('\n');
}
