import cliProgress from 'cli-progress';

/**
 * Progress of a long command (gvfs flush, meta gen, vm publish, vm clone;
 * image push later), shown one of three ways:
 *
 *  - a bar with rate and ETA on standard error when it is a terminal
 *    (cli-progress, redrawn in place);
 *  - plain lines on standard error when it is not (a log, a pipe, a
 *    systemd journal): one at the start, one every GVFS_PROGRESS_INTERVAL_MS
 *    (default 2000), one per new stage, one at the end;
 *  - with --json, JSON event lines on STANDARD OUTPUT instead, one object
 *    per line and nothing on standard error:
 *      {"event":"start","op":"flush","unit":"bytes","total":N}
 *      {"event":"progress","op":"flush","unit":"bytes","done":D,"total":N,"rate":BYTES_PER_S,"etaSeconds":S,"stage":"..."}
 *      {"event":"stage","op":"vm publish","stage":"booting"}
 *      {"event":"done","op":"flush","elapsedMs":MS, ...the command's result}
 *    The done line is always the last; a command that fails ends with
 *    {"event":"error","op":...,"message":...} and a non-zero status instead.
 *    `total` is null while unknown; "progress" events come at most every
 *    GVFS_PROGRESS_INTERVAL_MS (default 1000 with --json).
 *
 * GVFS_PROGRESS=bar|lines|none forces the human form (none: no progress at all).
 */
export type ProgressUnit = 'bytes' | 'steps';

export interface ProgressOptions {
  /** The command, as events and lines name it: 'flush', 'meta gen' ... */
  op: string;
  json?: boolean;
  unit?: ProgressUnit;
  total?: number;
  /** Where the human forms go (default process.stderr). */
  stream?: NodeJS.WriteStream;
  /** Where the JSON events go (default process.stdout). */
  out?: NodeJS.WritableStream;
}

export interface Progress {
  /** Set the total (it only grows: new work found on the way raises it). */
  setTotal(total: number): void;
  /** Work done so far (absolute), and optionally the stage it is in. */
  update(done: number, stage?: string): void;
  add(n: number): void;
  /** A named step; shown at once (a line, a JSON event, the bar's label). */
  stage(name: string): void;
  /** The end: the bar completes, a last line, or the done event carrying `result`. */
  done(result?: Record<string, unknown>): void;
  /** Failure: the bar stops; with --json an error event. */
  fail(err: unknown): void;
}

type Mode = 'bar' | 'lines' | 'json' | 'none';

const envInterval = (): number | undefined => {
  const n = Number(process.env.GVFS_PROGRESS_INTERVAL_MS);
  return Number.isFinite(n) && n > 0 ? n : undefined;
};

export function pickMode(o: ProgressOptions): Mode {
  if (o.json) return 'json';
  const forced = process.env.GVFS_PROGRESS;
  if (forced === 'bar' || forced === 'lines' || forced === 'none') return forced;
  return (o.stream ?? process.stderr).isTTY ? 'bar' : 'lines';
}

const MIB = 2 ** 20;

export function human(n: number, unit: ProgressUnit): string {
  if (unit === 'steps') return String(Math.round(n));
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= MIB) return `${(n / MIB).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${Math.round(n)} B`;
}

export function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** Rate over the last few seconds (a sliding window of samples), so a stall shows as a falling rate. */
class Rate {
  private samples: Array<[number, number]> = [];
  constructor(private windowMs = 5000) {}
  add(t: number, done: number): void {
    const last = this.samples[this.samples.length - 1];
    // One sample per 100 ms is plenty (callers may update per 64 KiB block).
    if (last && t - last[0] < 100) last[1] = done;
    else this.samples.push([t, done]);
    while (this.samples.length > 2 && t - this.samples[1][0] > this.windowMs) this.samples.shift();
  }
  perSecond(): number {
    if (this.samples.length < 2) return 0;
    const [t0, d0] = this.samples[0];
    const [t1, d1] = this.samples[this.samples.length - 1];
    return t1 > t0 ? ((d1 - d0) * 1000) / (t1 - t0) : 0;
  }
}

export function createProgress(o: ProgressOptions): Progress {
  const mode = pickMode(o);
  const unit = o.unit ?? 'bytes';
  const stream = o.stream ?? process.stderr;
  const out = o.out ?? process.stdout;
  const t0 = Date.now();
  const rate = new Rate();
  let total: number | undefined = o.total;
  let done = 0;
  let stage = '';
  let ended = false;
  let lastEmit = 0;
  const interval = envInterval() ?? (mode === 'json' ? 1000 : 2000);
  const json = (ev: Record<string, unknown>) => out.write(`${JSON.stringify({ event: ev.event, op: o.op, ...ev })}\n`);
  const eta = () => {
    const r = rate.perSecond();
    return total !== undefined && r > 0 ? Math.max(0, (total - done) / r) : undefined;
  };
  const line = (s: string) => stream.write(`gvfs ${o.op}: ${s}\n`);
  const describe = () => {
    const r = rate.perSecond();
    const e = eta();
    const of = total !== undefined ? ` of ${human(total, unit)}${total ? ` (${Math.floor((100 * done) / total)}%)` : ''}` : '';
    const speed = unit === 'bytes' && r > 0 ? `, ${human(r, unit)}/s` : '';
    return `${human(done, unit)}${unit === 'steps' ? ' steps' : ''}${of}${speed}${e !== undefined ? `, ETA ${duration(e)}` : ''}${stage ? ` [${stage}]` : ''}`;
  };

  let bar: cliProgress.SingleBar | undefined;
  const payload = () => {
    const e = eta();
    return { doneH: human(done, unit), totalH: total !== undefined ? human(total, unit) : '?', rateH: unit === 'bytes' ? `${human(rate.perSecond(), unit)}/s` : `${rate.perSecond().toFixed(1)}/s`, etaH: e !== undefined ? duration(e) : '?', stage };
  };
  if (mode === 'bar') {
    bar = new cliProgress.SingleBar(
      {
        stream,
        format: `gvfs ${o.op} [{bar}] {percentage}% | {doneH} of {totalH} | {rateH} | ETA {etaH} | {stage}`,
        barsize: 30,
        hideCursor: true,
        clearOnComplete: false,
        fps: 10,
        // A bar on a terminal only (cli-progress prints nothing without one unless told).
        noTTYOutput: false,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total ?? 0, 0, payload());
  } else if (mode === 'lines') {
    line(total !== undefined ? `${human(total, unit)}${unit === 'steps' ? ' steps' : ''} to go` : 'started');
    lastEmit = Date.now();
  } else if (mode === 'json') {
    json({ event: 'start', unit, total: total ?? null });
    lastEmit = Date.now();
  }

  const tick = (force = false) => {
    if (ended) return;
    const now = Date.now();
    rate.add(now, done);
    if (bar) {
      if (total !== undefined) bar.setTotal(Math.max(total, 0));
      bar.update(done, payload());
      return;
    }
    if (!force && now - lastEmit < interval) return;
    lastEmit = now;
    if (mode === 'lines') line(describe());
    else if (mode === 'json') {
      const e = eta();
      json({ event: 'progress', unit, done, total: total ?? null, rate: Math.round(rate.perSecond()), etaSeconds: e === undefined ? null : Math.round(e * 10) / 10, ...(stage ? { stage } : {}) });
    }
  };
  // A stalled operation still reports (the rate falls, the ETA grows).
  const timer = mode === 'lines' || mode === 'json' ? setInterval(() => tick(), interval) : undefined;
  timer?.unref();

  return {
    setTotal(n) {
      total = Math.max(total ?? 0, n);
      tick();
    },
    update(d, s) {
      done = d;
      if (s !== undefined && s !== stage) return this.stage(s);
      tick();
    },
    add(n) {
      this.update(done + n);
    },
    stage(name) {
      if (ended) return;
      stage = name;
      if (mode === 'lines') {
        stage = '';
        line(`${name}${total !== undefined ? `: ${describe()}` : ''}`);
        stage = name;
      }
      else if (mode === 'json') json({ event: 'stage', stage: name });
      tick();
    },
    done(result = {}) {
      if (ended) return;
      if (total !== undefined && done < total && unit === 'steps') done = total;
      tick(true);
      ended = true;
      clearInterval(timer);
      const elapsedMs = Date.now() - t0;
      if (bar) {
        bar.update(done, payload());
        bar.stop();
      } else if (mode === 'lines') line(`done: ${human(done, unit)}${unit === 'steps' ? ' steps' : ''} in ${duration(elapsedMs / 1000)}${unit === 'bytes' && elapsedMs > 0 ? ` (${human((done * 1000) / elapsedMs, unit)}/s)` : ''}`);
      else if (mode === 'json') json({ event: 'done', elapsedMs, ...result });
    },
    fail(err) {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      bar?.stop();
      if (mode === 'json') json({ event: 'error', message: (err as Error)?.message ?? String(err) });
    },
  };
}

/** Run `work` under a progress display: done() with its result, fail() and rethrow when it throws. */
export async function withProgress<T extends Record<string, unknown>>(o: ProgressOptions, work: (p: Progress) => Promise<T>): Promise<T> {
  const p = createProgress(o);
  try {
    const r = await work(p);
    p.done(r);
    return r;
  } catch (e) {
    p.fail(e);
    throw e;
  }
}
