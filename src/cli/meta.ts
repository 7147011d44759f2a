import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { blockCount, HINTS, sameVersion, zeroBlocks, type FileMeta, type TransferHint } from '../meta/format.js';
import { generateMeta, readMetaOf, versionOf } from '../meta/generate.js';
import { controlRequest, controlSocketOf } from '../wrappers/cache/control-socket.js';
import { listSessions, sessionPath } from '../wrappers/cache/session-dir.js';
import { parseSize } from './util.js';
import { withProgress } from './progress.js';

/** gvfs meta gen|show|record|stats: application meta-data of VM state files (docs/meta-data.md). */
export function metaCommand(): Command {
  const meta = new Command('meta').description('Application meta-data that decides how a file moves: zero blocks, hashes, whole-file and prefetch hints');
  meta.addCommand(genCommand());
  meta.addCommand(showCommand());
  meta.addCommand(recordCommand());
  meta.addCommand(statsCommand());
  return meta;
}

const hintOption = () => new Option('--hint <hint>', 'transfer hint: ondemand (blocks as read), whole (one bulk transfer at first read), prefetch (recorded order)').choices(HINTS);

function genCommand(): Command {
  return new Command('gen')
    .description("Scan files on the state server and write their meta-data into the export's .gvfs-meta/ (hidden from sessions)")
    .argument('<file...>', 'files inside the exported directory')
    .option('--root <dir>', 'the directory the proxy server exports (default: the nearest ancestor with a .gvfs-meta directory)')
    .option('--block-size <size>', 'meta-data block size, a multiple of 4K (default 64K)', parseSize)
    .addOption(hintOption())
    .option('--json', 'print JSON event lines: progress, then {"event":"done","files":[...]} (see README, Progress)')
    .addHelpText('after', '\nExample:\n  gvfs meta gen --root /srv/state --hint whole /srv/state/vm1/ram.img')
    .action(async (files: string[], o) => {
      const out: Array<ReturnType<typeof summary>> = [];
      const sizes = await Promise.all(files.map((f) => fs.stat(f).then((st) => st.size, () => 0)));
      await withProgress({ op: 'meta gen', json: !!o.json, unit: 'bytes', total: sizes.reduce((a, b) => a + b, 0) }, async (p) => {
        let before = 0;
        for (const [i, file] of files.entries()) {
          p.stage(path.basename(file));
          const r = await generateMeta(file, { root: o.root, blockSize: o.blockSize, hint: o.hint, onProgress: (b) => p.update(before + b) });
          before += sizes[i];
          p.update(before);
          out.push(summary(file, r.metaPath, r.meta, true));
        }
        return { files: out };
      });
      if (!o.json) for (const s of out) console.log(`${s.file}: ${s.blocks} blocks of ${s.blockSize / 1024}K, ${s.zeroBlocks} zero (${s.zeroPercent}%), hint ${s.hint} → ${s.metaPath}`);
    });
}

function showCommand(): Command {
  return new Command('show')
    .description("Print a file's meta-data and whether it still matches the file")
    .argument('<file>', 'a file inside the exported directory')
    .option('--root <dir>', 'the exported directory (default: the nearest ancestor with .gvfs-meta)')
    .option('--json', 'print as JSON')
    .action(async (file: string, o) => {
      const r = await readMetaOf(file, o.root);
      if (!r) throw new Error(`${file} has no meta-data (gvfs meta gen ${file})`);
      const current = sameVersion(r.meta, await versionOf(file));
      const s = { ...summary(file, r.metaPath, r.meta, current), order: r.meta.order.slice(0, o.json ? undefined : 16) };
      if (o.json) return console.log(JSON.stringify(s));
      console.log(`file         ${s.file}`);
      console.log(`meta-data    ${s.metaPath} (format 1, ${s.hashAlg})`);
      console.log(`state        ${current ? 'current' : 'STALE: the file changed after meta gen; sessions read it on demand'}`);
      console.log(`version      fileid ${s.fileid}, ${s.size} bytes, mtime ${s.mtime}`);
      console.log(`blocks       ${s.blocks} of ${s.blockSize / 1024}K, ${s.zeroBlocks} zero (${s.zeroPercent}%)`);
      console.log(`hint         ${s.hint}`);
      console.log(`prefetch     ${s.orderLength ? `${s.orderLength} blocks recorded: ${s.order.join(' ')}${s.orderLength > s.order.length ? ' ...' : ''}` : 'none recorded'}`);
      console.log(`made         ${new Date(s.created).toISOString()}`);
    });
}

function summary(file: string, metaPath: string, m: FileMeta, current: boolean) {
  const n = blockCount(m);
  const z = zeroBlocks(m);
  return {
    file,
    metaPath,
    current,
    fileid: String(m.fileid),
    size: m.size,
    mtime: `${m.mtime.sec}.${String(m.mtime.nsec).padStart(9, '0')}`,
    blockSize: m.blockSize,
    blocks: n,
    zeroBlocks: z,
    zeroPercent: n ? Math.round((z / n) * 1000) / 10 : 0,
    hint: m.hint,
    hashAlg: 'sha256-128',
    orderLength: m.order.length,
    created: m.created,
  };
}

/** The control socket of the one running mount or proxy client using this cache directory (or --session). */
async function sessionSocket(cacheDir: string, session?: string): Promise<string> {
  const names = session ? [session] : await listSessions(cacheDir);
  const live = [];
  for (const n of names) {
    const c = await controlSocketOf(sessionPath(cacheDir, n));
    if (c) live.push({ n, ...c });
  }
  if (!live.length) throw new Error(`no running mount or proxy client uses ${cacheDir}${session ? ` for session ${session}` : ''}`);
  if (live.length > 1) throw new Error(`several sessions run on ${cacheDir} (${live.map((l) => l.n).join(', ')}): choose one with --session`);
  return live[0].socket;
}

async function ask(socket: string, req: object): Promise<any> {
  const r = await controlRequest(socket, req, 120_000);
  if (!r.ok && /^unknown request/.test(r.error)) throw new Error('this session runs without the meta-data layer (--no-meta)');
  if (!r.ok) throw new Error(r.error);
  return r;
}

function recordCommand(): Command {
  return new Command('record')
    .description('Record the order in which a workload reads files through a running session, and store it as their prefetch lists')
    .argument('[command...]', 'the workload to run while recording (omit with --start / --stop)')
    .requiredOption('--cache-dir <dir>', "the session's cache directory (the mount or proxy client must run with --cache-dir)")
    .option('--session <name>', 'the session (key id or user-NAME) when several use the cache directory')
    .option('--start', 'start recording and return (for workloads driven elsewhere, e.g. a VM resume)')
    .option('--stop', 'stop recording and store the orders')
    .addOption(hintOption().default('prefetch'))
    .option('--json', 'print the stored orders as JSON')
    .addHelpText('after', '\nExamples:\n  gvfs meta record --cache-dir /var/cache/gvfs -- md5sum /mnt/session/vm1/ram.img\n  gvfs meta record --cache-dir /var/cache/gvfs --start; ...; gvfs meta record --cache-dir /var/cache/gvfs --stop')
    .action(async (cmd: string[], o) => {
      if (!!o.start === !!o.stop && !cmd.length) throw new InvalidArgumentError('give a command to run, or --start, or --stop');
      if ((o.start || o.stop) && cmd.length) throw new InvalidArgumentError('--start/--stop take no command');
      const socket = await sessionSocket(o.cacheDir, o.session);
      if (o.start || cmd.length) {
        const r = await ask(socket, { op: 'meta-record', action: 'start' });
        if (!r.started) throw new Error('this session is already recording (gvfs meta record --stop)');
        if (o.start) return console.log(o.json ? JSON.stringify({ recording: true }) : 'gvfs meta record: recording');
        const code = await new Promise<number>((resolve, reject) => {
          // With --json our stdout is for the result: the workload's own output goes to stderr.
          const child = spawn(cmd[0], cmd.slice(1), { stdio: o.json ? [0, 2, 2] : 'inherit' });
          child.once('error', reject);
          child.once('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
        }).catch(async (e) => {
          await ask(socket, { op: 'meta-record', action: 'stop', hint: o.hint as TransferHint }).catch(() => undefined);
          throw e;
        });
        if (code !== 0) console.error(`gvfs meta record: the workload exited with ${code}; storing what it read anyway`);
      }
      const r = await ask(socket, { op: 'meta-record', action: 'stop', hint: o.hint });
      const files = r.files as Array<{ source: string; blocks: number; stored: boolean; error?: string }>;
      if (o.json) console.log(JSON.stringify({ files }));
      else if (!files.length) console.log('gvfs meta record: the workload read no file that has meta-data');
      else for (const f of files) console.log(`${f.source}: ${f.blocks} blocks in order${f.stored ? `, stored (hint ${o.hint})` : ` NOT stored: ${f.error}`}`);
      if (files.some((f) => !f.stored)) process.exitCode = 1;
    });
}

function statsCommand(): Command {
  return new Command('stats')
    .description("A running session's meta-data counters: bytes answered as zero, bulk bytes on the wire and raw, hash mismatches")
    .requiredOption('--cache-dir <dir>', "the session's cache directory")
    .option('--session <name>', 'the session when several use the cache directory')
    .option('--json', 'print as JSON')
    .action(async (o) => {
      const r = await ask(await sessionSocket(o.cacheDir, o.session), { op: 'meta-stats' });
      if (o.json) return console.log(JSON.stringify(r.stats));
      for (const [k, v] of Object.entries(r.stats)) console.log(`${k.padEnd(18)} ${v}`);
    });
}
