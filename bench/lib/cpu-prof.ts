/**
 * Preload that profiles the process it is loaded into: Node refuses
 * --cpu-prof in NODE_OPTIONS, but accepts --import, so
 *   NODE_OPTIONS="--import=/path/dist/bench/lib/cpu-prof.js" GVFS_CPU_PROF_DIR=/tmp/p gvfs serve ...
 * writes /tmp/p/PID.cpuprofile (Chrome DevTools format) when the process
 * exits, including on SIGTERM (the profile is written, then the signal's
 * default exit code is used). A benchmark tool, never loaded by gvfs itself.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';

const dir = process.env.GVFS_CPU_PROF_DIR;
if (dir) {
  const s = new Session();
  s.connect();
  s.post('Profiler.setSamplingInterval', { interval: Number(process.env.GVFS_CPU_PROF_INTERVAL_US ?? 500) });
  s.post('Profiler.enable');
  s.post('Profiler.start');
  let written = false;
  const write = () => {
    if (written) return;
    written = true;
    // A same-thread inspector session answers synchronously: the profile is in hand when post returns.
    s.post('Profiler.stop', (err, r) => {
      if (!err) writeFileSync(path.join(dir, `${process.pid}.cpuprofile`), JSON.stringify(r.profile));
    });
  };
  process.on('exit', write);
  for (const sig of ['SIGTERM', 'SIGINT'] as const)
    process.prependListener(sig, () => write());
}
