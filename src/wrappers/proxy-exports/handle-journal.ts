import fs from 'node:fs/promises';
import { logger } from '../../util/log.js';

const log = logger('proxy');

/**
 * Persistent id → upstream handle table for upstream handles too long to
 * wrap inline. Entries are appended to a journal and fsync'd in groups (one
 * fdatasync covers every entry added while the previous one ran); `put`
 * settles only once its entry is durable, so a handle given to a client
 * always survives a proxy crash or restart.
 */
export class HandleJournal {
  private readonly map = new Map<string, Buffer>();
  private fh?: fs.FileHandle;
  private queue: string[] = [];
  private waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  /** Entries written but not yet durable: a second put of one waits for the same flush. */
  private readonly pending = new Map<string, Promise<void>>();
  private flushing?: Promise<void>;

  constructor(private readonly file: string | undefined) {}

  async load(): Promise<void> {
    if (!this.file) return;
    let text = '';
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    for (const line of text.split('\n')) {
      const [id, fh] = line.split(' ');
      if (id && fh && /^[0-9a-f]{16}$/.test(id) && /^[0-9a-f]*$/.test(fh)) this.map.set(id, Buffer.from(fh, 'hex'));
    }
    this.fh = await fs.open(this.file, 'a', 0o600);
  }

  get(id: string): Buffer | undefined {
    return this.map.get(id);
  }

  get size(): number {
    return this.map.size;
  }

  /**
   * Remember id → upstream handle; resolves when durable: at once if it is
   * already, with the flush under way if it is being written (a handle
   * must not reach a second client before the entry is on disk either).
   */
  put(id: string, ufh: Buffer): Promise<void> {
    if (this.map.has(id)) return this.pending.get(id) ?? Promise.resolve();
    this.map.set(id, Buffer.from(ufh));
    if (!this.fh) return Promise.resolve();
    this.queue.push(`${id} ${ufh.toString('hex')}\n`);
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.pending.set(id, p);
    // Settled either way: durable, or forgotten so that the next put writes it again.
    p.then(
      () => this.pending.delete(id),
      () => {
        this.pending.delete(id);
        this.map.delete(id);
      },
    );
    if (!this.flushing) this.flushing = this.flush();
    return p;
  }

  private async flush(): Promise<void> {
    while (this.queue.length) {
      const lines = this.queue.join('');
      const waiters = this.waiters;
      this.queue = [];
      this.waiters = [];
      try {
        await this.fh!.appendFile(lines);
        await this.fh!.datasync();
        for (const w of waiters) w.resolve();
      } catch (e) {
        log.error({ err: e, file: this.file }, 'handle journal write failed');
        for (const w of waiters) w.reject(e as Error);
      }
    }
    this.flushing = undefined;
  }

  async close(): Promise<void> {
    await this.flushing;
    await this.fh?.close();
    this.fh = undefined;
  }
}
