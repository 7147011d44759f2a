import net from 'node:net';

/**
 * A user-space wide-area link for benchmarks (this machine has no netem): a
 * TCP relay on loopback that delays each direction by a fixed one-way delay
 * and caps it with one token bucket per direction, shared by every
 * connection through the link (as a real link's bottleneck is: four
 * connections share its bandwidth, they do not get four times it). Bytes
 * leave in order, unchanged: each chunk is "transmitted" when the link is
 * free (serialization at the bandwidth, first come first served across
 * connections), then "propagates" for the one-way delay. When more than
 * `bufferBytes` wait in a direction, every sender in that direction pauses,
 * like a bounded router queue, so TCP flow control behaves.
 */
export interface LinkProfile {
  name: string;
  /** Round-trip time added by the link (ms); each direction gets half. */
  rttMs: number;
  /** Bandwidth per direction (bits per second), shared by all connections of the link. */
  bitsPerSec: number;
}

export const PROFILES: Record<string, LinkProfile> = {
  lan: { name: 'lan', rttMs: 0.2, bitsPerSec: 1e9 },
  wan: { name: 'wan', rttMs: 40, bitsPerSec: 200e6 },
  far: { name: 'far', rttMs: 100, bitsPerSec: 50e6 },
};

interface Pending {
  due: number;
  chunk: Buffer;
}

/**
 * One direction of a link: the shared transmitter (a token bucket with no
 * burst: the time the link is busy until) and the shared queue limit.
 */
export class Direction {
  /** When the transmitter is free again (performance.now() ms). */
  private busyUntil = 0;
  /** Bytes accepted but not yet delivered, over all connections. */
  private queued = 0;
  private readonly pipes = new Set<Pipe>();
  /** Bytes delivered so far, over all connections (closed ones included). */
  bytes = 0;

  constructor(
    readonly bytesPerMs: number,
    readonly bufferBytes: number,
  ) {}

  /** Reserve the transmitter for `len` bytes from `now`; returns when they are sent. */
  reserve(len: number, now: number): number {
    this.busyUntil = Math.max(now, this.busyUntil) + len / this.bytesPerMs;
    this.queued += len;
    return this.busyUntil;
  }

  /** The time the last reserved byte leaves (end-of-stream markers queue behind it). */
  get freeAt(): number {
    return this.busyUntil;
  }

  get full(): boolean {
    return this.queued > this.bufferBytes;
  }

  /** `len` bytes were delivered: below half the buffer, every paused sender may go on. */
  delivered(len: number): void {
    this.queued -= len;
    this.bytes += len;
    if (this.queued <= this.bufferBytes / 2) for (const p of this.pipes) p.resumeSender();
  }

  add(p: Pipe): void {
    this.pipes.add(p);
  }

  /** A connection closed: the bytes it had queued no longer hold the link's queue. */
  remove(p: Pipe, undelivered: number): void {
    this.pipes.delete(p);
    this.queued -= undelivered;
    if (this.queued <= this.bufferBytes / 2) for (const q of this.pipes) q.resumeSender();
  }
}

/** One connection's share of one direction: its own in-order queue, timed by the shared Direction. */
class Pipe {
  private queue: Pending[] = [];
  private queued = 0;
  private timer?: NodeJS.Timeout;
  private immediate?: NodeJS.Immediate;
  private ended = false;
  private stopped = false;

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly delayMs: number,
    private readonly dir: Direction,
  ) {
    dir.add(this);
    from.on('data', (c: Buffer) => this.push(c));
    from.on('end', () => this.push(null));
  }

  private push(c: Buffer | null): void {
    const now = performance.now();
    if (c === null) {
      this.ended = true;
      this.queue.push({ due: Math.max(now, this.dir.freeAt) + this.delayMs, chunk: Buffer.alloc(0) });
    } else {
      // Split big chunks so delivery is smooth at low bandwidth and connections interleave.
      for (let off = 0; off < c.length; off += 16384) {
        const part = c.subarray(off, Math.min(off + 16384, c.length));
        this.queue.push({ due: this.dir.reserve(part.length, now) + this.delayMs, chunk: part });
        this.queued += part.length;
      }
      if (this.dir.full) this.from.pause();
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped || this.timer || this.immediate || !this.queue.length) return;
    const wait = this.queue[0].due - performance.now();
    // Timers fire ~1 ms late: sleep most of the way, then step to the due time precisely.
    if (wait > 2) this.timer = setTimeout(() => ((this.timer = undefined), this.drain()), wait - 1.5);
    else this.immediate = setImmediate(() => ((this.immediate = undefined), this.drain()));
  }

  private drain(): void {
    const now = performance.now();
    while (this.queue.length && this.queue[0].due <= now) {
      const p = this.queue.shift()!;
      if (p.chunk.length === 0 && this.ended && !this.queue.length) {
        this.to.end();
        continue;
      }
      this.queued -= p.chunk.length;
      this.dir.delivered(p.chunk.length);
      this.to.write(p.chunk);
    }
    this.schedule();
  }

  resumeSender(): void {
    if (!this.stopped && this.from.isPaused()) this.from.resume();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.dir.remove(this, this.queued);
    this.queue = [];
    this.queued = 0;
  }
}

export interface Link {
  profile: LinkProfile;
  port: number;
  /** Bytes carried each way so far (all connections). */
  bytes(): { up: number; down: number };
  close(): Promise<void>;
}

/** Relay 127.0.0.1:<port> → target through the emulated link; all its connections share one bucket per direction. */
export async function startLink(profile: LinkProfile, target: { host: string; port: number }): Promise<Link> {
  const oneWay = profile.rttMs / 2;
  const bytesPerMs = profile.bitsPerSec / 8 / 1000;
  // Queue = 2 x bandwidth-delay product, at least 256 KiB (per direction, for the whole link).
  const buffer = Math.max(256 * 1024, Math.ceil(2 * bytesPerMs * profile.rttMs));
  const up = new Direction(bytesPerMs, buffer);
  const down = new Direction(bytesPerMs, buffer);
  const socks = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ ...target, noDelay: true });
    socks.add(client).add(upstream);
    const a = new Pipe(client, upstream, oneWay, up);
    const b = new Pipe(upstream, client, oneWay, down);
    const done = () => {
      a.stop();
      b.stop();
      client.destroy();
      upstream.destroy();
      socks.delete(client);
      socks.delete(upstream);
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    profile,
    port,
    bytes: () => ({ up: up.bytes, down: down.bytes }),
    async close() {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * How far a link may measure from its setting before a run is refused: 5 %,
 * or 25 % in a --quick smoke run (whose figures mean nothing, and which CI
 * runs on a loaded machine whose timers fire late).
 */
export function linkTolerance(ctx: { quick: boolean }): number {
  return ctx.quick ? 0.25 : 0.05;
}

export interface LinkCheck {
  rttMs: number;
  mbitPerSec: number;
  attempts: number;
  /** Set when the link was out of tolerance and the run went on anyway (strict = false): say so in the results. */
  warning?: string;
}

/**
 * Measure a link against its setting (before each run): RTT by 20 small
 * ping-pongs through it, throughput by pushing data one way. Both must be
 * within `tolerance` of the profile or the run is refused; with `strict`
 * false (--quick smoke runs) it goes on and the check carries a warning.
 */
export async function checkLink(profile: LinkProfile, tolerance = 0.05, attempts = 3, strict = true): Promise<LinkCheck> {
  // A busy machine (timers firing late) can spoil one measurement; the run is refused only if every attempt is out of tolerance.
  let last!: Awaited<ReturnType<typeof measureLink>>;
  for (let i = 1; i <= attempts; i++) {
    last = await measureLink(profile, tolerance);
    if (last.ok) return { rttMs: last.rttMs, mbitPerSec: last.mbitPerSec, attempts: i };
    if (i < attempts) await new Promise((r) => setTimeout(r, 500));
  }
  const message = `link ${profile.name} out of tolerance (${tolerance * 100} %) in ${attempts} attempts: RTT ${last.rttMs.toFixed(2)} ms (want ${profile.rttMs}), ${last.mbitPerSec.toFixed(1)} Mbit/s (want ${profile.bitsPerSec / 1e6})`;
  if (strict) throw new Error(message);
  return { rttMs: last.rttMs, mbitPerSec: last.mbitPerSec, attempts, warning: `${message}; went on (a --quick smoke run: its figures mean nothing)` };
}

async function measureLink(profile: LinkProfile, tolerance: number): Promise<{ rttMs: number; mbitPerSec: number; ok: boolean }> {
  const echo = net.createServer({ noDelay: true }, (s) => {
    s.on('data', (d) => {
      if (d[0] === 0x70) s.write(d.subarray(0, 1)); // 'p' → pong
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const link = await startLink(profile, { host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port });
  try {
    const c = net.connect({ host: '127.0.0.1', port: link.port, noDelay: true });
    await new Promise((r) => c.once('connect', r));
    const rtts: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      c.write(Buffer.from('p'));
      await new Promise((r) => c.once('data', r));
      rtts.push(performance.now() - t0);
    }
    rtts.sort((a, b) => a - b);
    const rttMs = rtts[10];
    // Throughput: send enough for ~1 s of link time (or 64 MiB), measure until the far side has it all.
    const bytes = Math.min(64 << 20, Math.max(4 << 20, Math.round(profile.bitsPerSec / 8)));
    const chunk = Buffer.alloc(64 * 1024, 0x71);
    const t0 = performance.now();
    let sent = 0;
    const before = link.bytes().up;
    while (sent < bytes) {
      if (!c.write(chunk)) await new Promise((r) => c.once('drain', r));
      sent += chunk.length;
    }
    while (link.bytes().up - before < sent) await new Promise((r) => setTimeout(r, 1));
    const secs = (performance.now() - t0) / 1000 - profile.rttMs / 2000;
    const mbitPerSec = (sent * 8) / secs / 1e6;
    c.destroy();
    const rttOk = profile.rttMs < 1 ? rttMs < 1 : Math.abs(rttMs - profile.rttMs) <= tolerance * profile.rttMs;
    const bwOk = Math.abs(mbitPerSec * 1e6 - profile.bitsPerSec) <= tolerance * profile.bitsPerSec;
    return { rttMs, mbitPerSec, ok: rttOk && bwOk };
  } finally {
    await link.close();
    await new Promise((r) => echo.close(r));
  }
}
