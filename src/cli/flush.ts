import path from 'node:path';
import { Command } from 'commander';
import { proxyLink, sessionName, stackCache } from '../proxy/proxy-client.js';
import { controlRequest, controlSocketOf } from '../wrappers/cache/control-socket.js';
import { Journal } from '../wrappers/cache/journal.js';
import { listSessions, sessionDirName } from '../wrappers/cache/session-dir.js';
import type { FlushReport } from '../wrappers/cache/write-back.js';
import { addLinkOptions, linkOptions } from './proxy-client.js';

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
    .option('--json', 'print the outcome as JSON')
    .action(async (o) => {
      if (!o.cacheDir) throw new Error('--cache-dir DIR names the cache to flush');
      const dir: string = o.cacheDir;
      const names = o.session ? [sessionDirName(o.session)] : await listSessions(dir);
      const out: SessionResult[] = [];
      const offline: string[] = [];
      for (const name of names) {
        const sd = path.join(dir, 'sessions', name);
        const c = await controlSocketOf(sd);
        if (c) {
          try {
            const r = await controlRequest(c.socket, { op: 'flush', discard: !!o.discard }, o.wait * 1000);
            if (!r.ok) throw new Error(r.error);
            out.push({ session: name, how: 'running proxy client', report: r.report });
            continue;
          } catch (e) {
            const code = (e as NodeJS.ErrnoException).code;
            if (code !== 'ECONNREFUSED' && code !== 'ENOENT') throw new Error(`session ${name}: ${(e as Error).message}`);
          }
        }
        offline.push(name);
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
        const { remote, tunnel } = proxyLink(link);
        const cache = stackCache(remote, { ...link, cache: { ...link.cache!, session: o.session ?? sessionName(link), controlSocket: false } })!;
        try {
          await cache.ready;
          out.push({ session: name, how: 'flushed here', report: await cache.flush({ discard: !!o.discard }) });
        } finally {
          await cache.close().catch(() => undefined);
          tunnel?.close();
        }
      }
      const failed = out.some((r) => r.error || r.report?.failed.length);
      if (o.json) console.log(JSON.stringify({ sessions: out }));
      else if (!out.length) console.log(`gvfs flush: nothing to flush in ${dir}`);
      else for (const r of out) console.log(describe(r));
      if (failed) process.exitCode = 1;
    });
}

function describe(r: SessionResult): string {
  if (!r.report) return `session ${r.session}: NOT FLUSHED, ${r.pending?.bytes ?? 0} bytes in ${r.pending?.files ?? 0} files wait: ${r.error}`;
  const lines = [`session ${r.session} (${r.how}): flushed ${r.report.flushedBytes} bytes of ${r.report.flushedFiles} files`];
  if (r.report.discardedBytes) lines.push(`  WARNING: discarded ${r.report.discardedBytes} bytes that could not be delivered; the server never got them`);
  for (const x of r.report.failed) lines.push(`  FAILED file ${x.fh}: ${x.code}: ${x.message} (${x.bytes} bytes kept; gvfs flush --discard drops them)`);
  return lines.join('\n');
}
