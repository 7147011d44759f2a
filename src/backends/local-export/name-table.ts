import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { logger } from '../../util/log.js';

const log = logger('local-export');

/**
 * Where each issued inode lives: ino → (parent ino, name). A handle carries
 * only an inode number, and Node cannot open by handle, so this table turns
 * a handle back into a path inside the export.
 *
 * Persistence: an append-only journal (one JSON line per change), replayed
 * at start-up and compacted when it grows past twice the live entries. It is
 * written asynchronously and not fsync'd per entry: a lost tail only costs a
 * search of the export on the next use of an affected handle (see
 * LocalExport.locate), never a wrong answer, because every resolution is
 * checked against the inode and generation in the handle.
 */
export interface NameEntry {
  parent: bigint;
  name: string;
}

export class NameTable {
  private readonly map = new Map<bigint, NameEntry>();
  private journal?: WriteStream;
  private journalLines = 0;

  constructor(private readonly file: string | undefined) {}

  async load(): Promise<void> {
    if (!this.file) return;
    try {
      const rl = createInterface({ input: createReadStream(this.file, 'utf8'), crlfDelay: Infinity });
      for await (const line of rl) {
        if (!line) continue;
        this.journalLines++;
        try {
          const j = JSON.parse(line) as { i: string; p?: string; n?: string };
          if (j.p === undefined || j.n === undefined) this.map.delete(BigInt(j.i));
          else this.map.set(BigInt(j.i), { parent: BigInt(j.p), name: j.n });
        } catch {
          log.warn({ file: this.file }, 'skipping a torn line in the handle journal');
        }
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    await this.compact();
  }

  get(ino: bigint): NameEntry | undefined {
    return this.map.get(ino);
  }

  get size(): number {
    return this.map.size;
  }

  set(ino: bigint, parent: bigint, name: string): void {
    const cur = this.map.get(ino);
    if (cur && cur.parent === parent && cur.name === name) return;
    this.map.set(ino, { parent, name });
    this.append({ i: ino.toString(), p: parent.toString(), n: name });
  }

  delete(ino: bigint): void {
    if (!this.map.delete(ino)) return;
    this.append({ i: ino.toString() });
  }

  private held: string[] = [];

  private append(rec: object): void {
    if (!this.file) return;
    if (this.compacting) {
      this.held.push(JSON.stringify(rec) + '\n');
      return;
    }
    if (!this.journal) {
      this.journal = createWriteStream(this.file, { flags: 'a' });
      this.journal.on('error', (err) => log.error({ err }, 'handle journal write failed'));
    }
    this.journal.write(JSON.stringify(rec) + '\n');
    if (++this.journalLines > 2 * this.map.size + 10_000) void this.compact();
  }

  private compacting = false;

  /** Rewrite the journal with just the live entries (write new, rename over). */
  async compact(): Promise<void> {
    if (!this.file || this.compacting) return;
    this.compacting = true;
    try {
      const old = this.journal;
      this.journal = undefined;
      if (old) await new Promise<void>((r) => old.end(() => r()));
      const tmp = `${this.file}.tmp`;
      const lines: string[] = [];
      for (const [i, e] of this.map) lines.push(JSON.stringify({ i: i.toString(), p: e.parent.toString(), n: e.name }));
      await fs.writeFile(tmp, lines.length ? lines.join('\n') + '\n' : '');
      await fs.rename(tmp, this.file);
      this.journalLines = lines.length;
    } finally {
      this.compacting = false;
      const held = this.held;
      this.held = [];
      if (held.length) {
        this.journalLines += held.length;
        await fs.appendFile(this.file, held.join(''));
      }
    }
  }

  async close(): Promise<void> {
    const j = this.journal;
    this.journal = undefined;
    if (j) await new Promise<void>((r) => j.end(() => r()));
  }
}
