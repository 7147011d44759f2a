import { EventEmitter } from 'node:events';
import net from 'node:net';

/**
 * QMP, the QEMU Machine Protocol, over a unix socket.
 *
 * Hand-written rather than a dependency: QMP is newline-delimited JSON (a
 * greeting, `qmp_capabilities`, then commands answered in order with
 * `return` or `error`, and asynchronous `event` messages in between); the
 * npm packages for it are small and unmaintained, and the whole client is
 * the framing below plus an id per command.
 *
 * Contract:
 * - `QmpDecoder` takes chunks and emits parsed messages; no sockets (a test
 *   can feed it one byte at a time). A line longer than `maxLine` is an
 *   error, not an allocation.
 * - `QmpClient.connect` resolves after the greeting and capabilities
 *   negotiation; `execute` resolves with the command's `return` value or
 *   rejects with a `QmpError` carrying QEMU's error class and description.
 *   Commands are tagged with an id, so replies cannot be mismatched.
 * - Events are emitted as 'event' (name, data, timestamp) and by name.
 * - When the socket closes, every pending command rejects with
 *   `QmpClosedError` (QEMU exited or quit).
 */

export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QEMU refused ${command}: ${desc} (${errorClass})`);
    this.name = 'QmpError';
  }
}

export class QmpClosedError extends Error {
  constructor(command?: string) {
    super(command ? `QEMU closed its QMP socket while ${command} was pending` : 'QEMU closed its QMP socket');
    this.name = 'QmpClosedError';
  }
}

export interface QmpMessage {
  QMP?: { version: { qemu: { major: number; minor: number; micro: number }; package: string }; capabilities: string[] };
  return?: unknown;
  error?: { class: string; desc: string };
  event?: string;
  data?: unknown;
  timestamp?: { seconds: number; microseconds: number };
  id?: unknown;
}

/** Newline framing of QMP: chunks in, parsed messages out. */
export class QmpDecoder {
  private parts: Buffer[] = [];
  private held = 0;
  constructor(
    private readonly onMessage: (m: QmpMessage) => void,
    private readonly maxLine = 16 * 1024 * 1024,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      const line = this.parts.length ? Buffer.concat([...this.parts, piece]) : piece;
      this.parts = [];
      this.held = 0;
      start = nl + 1;
      const text = line.toString('utf8').trim();
      if (text) this.onMessage(JSON.parse(text) as QmpMessage);
    }
    if (start < chunk.length) {
      this.held += chunk.length - start;
      if (this.held > this.maxLine) throw new Error(`QMP line longer than ${this.maxLine} bytes`);
      this.parts.push(chunk.subarray(start));
    }
  }
}

export class QmpClient extends EventEmitter {
  version?: string;
  private nextId = 1;
  private readonly pending = new Map<number, { command: string; resolve: (v: any) => void; reject: (e: Error) => void }>();
  private closed = false;

  private constructor(private readonly sock: net.Socket) {
    super();
  }

  /** Connect, read the greeting, negotiate capabilities. */
  static async connect(socketPath: string, timeoutMs = 10_000): Promise<QmpClient> {
    const sock = net.connect(socketPath);
    const c = new QmpClient(sock);
    const greeting = new Promise<QmpMessage>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no QMP greeting on ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
      c.once('greeting', (m: QmpMessage) => (clearTimeout(timer), resolve(m)));
      sock.once('error', (e) => (clearTimeout(timer), reject(e)));
      sock.once('close', () => (clearTimeout(timer), reject(new QmpClosedError())));
    });
    const dec = new QmpDecoder((m) => c.dispatch(m));
    sock.on('data', (d: Buffer) => {
      try {
        dec.push(d);
      } catch (e) {
        sock.destroy(e as Error);
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => c.onClose());
    try {
      const g = await greeting;
      const v = g.QMP!.version.qemu;
      c.version = `${v.major}.${v.minor}.${v.micro}`;
      await c.execute('qmp_capabilities');
    } catch (e) {
      sock.destroy();
      throw e;
    }
    return c;
  }

  private dispatch(m: QmpMessage): void {
    if (m.QMP) {
      this.emit('greeting', m);
      return;
    }
    if (m.event) {
      this.emit('event', m.event, m.data, m.timestamp);
      this.emit(m.event, m.data);
      return;
    }
    const id = typeof m.id === 'number' ? m.id : undefined;
    const p = id !== undefined ? this.pending.get(id) : undefined;
    if (!p) return;
    this.pending.delete(id!);
    if (m.error) p.reject(new QmpError(p.command, m.error.class, m.error.desc));
    else p.resolve(m.return);
  }

  private onClose(): void {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new QmpClosedError(p.command));
    this.pending.clear();
    this.emit('close');
  }

  get isClosed(): boolean {
    return this.closed;
  }

  execute<T = any>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closed) return Promise.reject(new QmpClosedError(command));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve, reject });
      this.sock.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + '\n');
    });
  }

  /** Resolve with the data of the next `name` event that `match` accepts. */
  waitEvent<T = any>(name: string, timeoutMs: number, match: (data: T) => boolean = () => true): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const on = (d: T) => {
        if (!match(d)) return;
        done();
        resolve(d);
      };
      const closed = () => (done(), reject(new QmpClosedError(`waiting for ${name}`)));
      const timer = setTimeout(() => (done(), reject(new Error(`no ${name} event from QEMU within ${timeoutMs} ms`))), timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off(name, on);
        this.off('close', closed);
      };
      this.on(name, on);
      this.once('close', closed);
    });
  }

  close(): void {
    this.sock.destroy();
  }
}
