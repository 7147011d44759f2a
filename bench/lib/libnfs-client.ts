import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * The native NFSv3 benchmark client (bench/native/nfsbench.c, on libnfs):
 * one single-threaded process per workload, so the server under test does
 * not share this machine's cores with a busy Node client. See nfsbench.c for
 * what each op does and which part is timed.
 */
const run = promisify(execFile);

const here = path.dirname(fileURLToPath(import.meta.url));
// bench/lib when run from source, dist/bench/lib when compiled: find bench/native either way.
const NATIVE = [path.join(here, '..', 'native'), path.join(here, '..', '..', '..', 'bench', 'native')].find((d) =>
  existsSync(path.join(d, 'build.sh')),
);

export interface NfsbenchArgs {
  host?: string;
  nfsPort: number;
  mountPort: number;
  exportPath: string;
  op: 'seqread' | 'seqwrite' | 'randread' | 'meta';
  /** seqread, seqwrite, randread: a name in the export root. */
  file?: string;
  /** meta: a name in the export root (must not exist; removed afterwards). */
  dir?: string;
  /** Bytes to read or write (randread: the range offsets are drawn from). */
  size?: number;
  /** Bytes per READ or WRITE (seqread, seqwrite). */
  xfer?: number;
  /** Requests in flight. */
  depth?: number;
  /** randread: number of 4 KiB READs. */
  ops?: number;
  /** meta: number of files. */
  files?: number;
  /** AUTH_SYS credentials; default the caller's (root here). */
  uid?: number;
  gid?: number;
  /** The whole run, mount included, fails after this long; default 60 s. */
  timeoutSec?: number;
}

export interface NfsbenchResult {
  op: string;
  /** Duration of the timed phase (the RPCs of the workload only, not MOUNT/LOOKUP/CREATE set-up). */
  seconds: number;
  mib_per_s?: number;
  ops_per_s?: number;
  /** Per-RPC latency, issue to reply (with depth > 1 it includes queueing). */
  lat_us_avg?: number;
  lat_us_p50?: number;
  lat_us_p99?: number;
  bytes?: number;
  /** RPCs in the timed phase (meta: 4 per file; seqwrite: the WRITEs plus the COMMIT). */
  ops?: number;
  /** CPU seconds nfsbench itself used in the timed phase. */
  cpu_user_s?: number;
  cpu_sys_s?: number;
}

let built: Promise<void> | undefined;

/** Path of a tool of bench/native (nfsbench, relay), all (re)built by build.sh once per process (a no-op when up to date). */
export async function nativeTool(name: 'nfsbench' | 'relay'): Promise<string> {
  built ??= (async () => {
    if (!NATIVE) throw new Error(`${name}: bench/native/build.sh not found from ${here}`);
    try {
      await run('bash', [path.join(NATIVE, 'build.sh')]);
    } catch (e) {
      built = undefined;
      const err = e as Error & { stderr?: string };
      throw new Error(`bench/native/build.sh failed: ${err.stderr?.trim() || err.message}`);
    }
  })();
  await built;
  return path.join(NATIVE!, 'build', name);
}

/** Path of the nfsbench binary. */
export function nfsbenchBinary(): Promise<string> {
  return nativeTool('nfsbench');
}

/** Run one nfsbench workload against an NFSv3 server and return its JSON result. */
export async function nfsbench(args: NfsbenchArgs): Promise<NfsbenchResult> {
  const bin = await nfsbenchBinary();
  const argv = [
    '--host', args.host ?? '127.0.0.1',
    '--nfs-port', String(args.nfsPort),
    '--mount-port', String(args.mountPort),
    '--export', args.exportPath,
    '--op', args.op,
  ];
  const opt = (flag: string, v: string | number | undefined) => {
    if (v !== undefined) argv.push(flag, String(v));
  };
  opt('--file', args.file);
  opt('--dir', args.dir);
  opt('--size', args.size);
  opt('--xfer', args.xfer);
  opt('--depth', args.depth);
  opt('--ops', args.ops);
  opt('--files', args.files);
  opt('--uid', args.uid);
  opt('--gid', args.gid);
  opt('--timeout', args.timeoutSec);

  let stdout: string;
  try {
    // nfsbench enforces --timeout itself; this is only a backstop.
    ({ stdout } = await run(bin, argv, { timeout: ((args.timeoutSec ?? 60) + 10) * 1000 }));
  } catch (e) {
    const err = e as Error & { code?: number | string; signal?: string; stderr?: string };
    const why = err.signal ? `killed by ${err.signal}` : `exit code ${err.code}`;
    throw new Error(`nfsbench ${args.op} failed (${why}): ${err.stderr?.trim() || err.message}`);
  }
  const line = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as NfsbenchResult;
  } catch {
    throw new Error(`nfsbench ${args.op}: unexpected output: ${stdout.trim() || '(none)'}`);
  }
}
