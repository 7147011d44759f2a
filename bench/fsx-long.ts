/**
 * Long exerciser runs (not CI; a file under test/ would be run by `node --test dist/test/`): gvfs-fsx for many seeds and many operations
 * on one mount configuration, one line per run appended to a log, then the
 * server's copy of every file that passed checked byte for byte after the
 * mounts ended (write-back flushes on SIGTERM).
 *
 *   node dist/bench/fsx-long.js CONFIG SEEDS OPS LOG [gvfs-fsx flags...]
 *   e.g. node dist/bench/fsx-long.js write-back 1-8 100000 bench/results/fsx-long/write-back.log
 *
 * CONFIG is one of CONFIGS (helpers.ts); SEEDS "1-8" or "1,5,9". Run as root (FUSE).
 * SIGTERM or SIGINT gives up the seed in progress (logged with how far it
 * got) and ends as after the last seed: mounts stopped, then the server's
 * copy of every passed seed checked. A second signal exits at once.
 */
import fs from 'node:fs/promises';
import { CONFIGS, ensureFsx, fsxArgs, runFsx, startFsxServer, startTarget, type ConfigName, type FsxTarget } from '../test/integration/fsx/helpers.js';

const [config, seedSpec, opsArg, logFile, ...flags] = process.argv.slice(2);
if (!CONFIGS.includes(config as ConfigName) || !seedSpec || !opsArg || !logFile) {
  console.error(`usage: fsx-long.js ${CONFIGS.join('|')} SEEDS OPS LOG [gvfs-fsx flags]`);
  process.exit(2);
}
const seeds = seedSpec.includes('-')
  ? Array.from({ length: Number(seedSpec.split('-')[1]) - Number(seedSpec.split('-')[0]) + 1 }, (_, i) => Number(seedSpec.split('-')[0]) + i)
  : seedSpec.split(',').map(Number);
const ops = Number(opsArg);
const log = async (line: string) => {
  console.log(line);
  await fs.appendFile(logFile, line + '\n');
};

const fsx = await ensureFsx();
const server = await startFsxServer();
let target: FsxTarget = await startTarget(server, config as ConfigName);
const alive = (t: FsxTarget) => t.mounts.every((m) => m.proc.exitCode === null && m.proc.signalCode === null);
const passed: number[] = [];
const stop = new AbortController();
const onSignal = (sig: string) => {
  if (stop.signal.aborted) process.exit(1);
  void log(`# ${new Date().toISOString()} ${sig}: the seed in progress is given up; the mounts end and the passed seeds' server copies are checked`);
  stop.abort();
};
process.on('SIGTERM', () => onSignal('SIGTERM'));
process.on('SIGINT', () => onSignal('SIGINT'));
await log(`# ${new Date().toISOString()} ${config}: seeds ${seeds.join(',')}, ${ops} operations each; ${fsx} ${flags.join(' ')}`);
try {
  for (const seed of seeds) {
    if (stop.signal.aborted) break;
    const t0 = Date.now();
    const args = fsxArgs(target, seed, ops, ['-p', '5000', ...flags]);
    // Where a run still going has got to (for a report written before it ends, and for a seed given up).
    let reached = '';
    const onStdout = (text: string) => {
      const m = /.*?(\d+) operations OK$/.exec(text.trim());
      if (!m) return;
      reached = m[1];
      void fs.writeFile(`${logFile}.progress`, `${new Date().toISOString()} ${config} ${m[0]}\n`);
    };
    const r = await runFsx(args, { timeoutMs: 6 * 3600_000, signal: stop.signal, onStdout });
    const secs = ((Date.now() - t0) / 1000).toFixed(0);
    if (stop.signal.aborted && r.result === undefined) {
      await log(`${config} seed ${seed}: given up at the signal after ${secs} s (${reached || 'no'} operations OK so far) — gvfs-fsx ${args.join(' ')}`);
      break;
    }
    await log(`${config} seed ${seed}: ${r.result ?? 'no result'} at op ${r.op ?? '?'} of ${ops} (${secs} s) — gvfs-fsx ${args.join(' ')}`);
    if (r.result === 'ok') passed.push(seed);
    else {
      await log(r.stderr.trim().split('\n').map((l) => '    ' + l).join('\n'));
      if (!alive(target)) {
        await log(`    the mount process died: ${target.mounts.map((m) => m.stderr().slice(-2000)).join('\n')}`);
        await target.stop().catch(() => undefined);
        target = await startTarget(server, config as ConfigName);
      }
    }
  }
  const codes = await target.stop();
  await log(`${config}: mounts ended with ${codes.join(',')}`);
  // After the mounts ended (and a write-back cache flushed), the server holds exactly the final model of every passed run.
  for (const seed of passed) {
    const r = await runFsx(['-S', String(seed), ...flags, '-K', `${ops}:${ops}`, target.serverFile(seed)]);
    await log(`${config} seed ${seed}: server copy after the mounts ended: ${r.code === 0 ? 'identical to the model' : 'DIFFERS\n' + r.stderr.trim()}`);
  }
} finally {
  await server.stop();
}
