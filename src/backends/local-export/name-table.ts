import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { logger } from '../../util/log.js';

const log = logger('local-export');

/** How long changes gather before one write takes them all (group commit). */
export const JOURNAL_GROUP_MS = 50;
/** Changes gathered that force a write at once (bounds the memory a burst holds). */
const GROUP_MAX = 4096;

/**
 * Where each issued inode lives: ino → (parent ino, name). A handle carries
 * only an inode number, and Node cannot open by handle, so this table turns
 * a handle back into a path inside the export.
 *
 * Persistence: an append-only journal (one JSON line per change), replayed
 * at start-up and compacted when it grows past twice the live entries.
 * Group commit: changes gather for up to JOURNAL_GROUP_MS (or GROUP_MAX
 * changes) and go out in ONE write; only the latest state of each inode is
 * written, and an inode created and removed within one group is never
 * written at all (the common create-then-remove of temporary files). Never
 * fsync'd, and no NFS reply waits for it: it is a hint. What a crash costs:
 * the changes of the last group (and what the kernel had not written, on a
 * power loss) are missing, and a handle they concerned is found again by a
 * search of the export on its next use (LocalExport.locate), never answered
 * wrongly, because every resolution is checked against the inode and
 * generation in the handle. close() writes what is gathered.
 */
export interface NameEntry {
  parent: bigint;
  name: string;
}

export class NameTable {
  private readonly map = new Map<bigint, NameEntry>();
  private journal?: WriteStream;
  private journalLines = 0;
  /** Inodes changed since the last write, and whether the journal (as written) has an entry for each. */
  private readonly pending = new Map<bigint, boolean>();
  private timer?: NodeJS.Timeout;
  /** Writes of gathered changes (one per group), for tests. */
  groupWrites = 0;

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
    this.touch(ino);
    this.map.set(ino, { parent, name });
    this.schedule();
  }

  delete(ino: bigint): void {
    if (!this.map.has(ino)) return;
    this.touch(ino);
    this.map.delete(ino);
    this.schedule();
  }

  /** Note a change of `ino` (before the map changes: the map then still says what the journal has). */
  private touch(ino: bigint): void {
    if (this.file && !this.pending.has(ino)) this.pending.set(ino, this.map.has(ino));
  }

  /** After a change is in the map: write at once if the group is full, else within JOURNAL_GROUP_MS. */
  private schedule(): void {
    if (!this.file) return;
    if (this.pending.size >= GROUP_MAX) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), JOURNAL_GROUP_MS).unref();
  }

  /** Write the gathered changes: each inode's latest state, in one write. */
  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.compacting || !this.file || this.pending.size === 0) return; // compact() writes them when done
    let out = '';
    let lines = 0;
    for (const [ino, onDisk] of this.pending) {
      const e = this.map.get(ino);
      if (e) out += JSON.stringify({ i: ino.toString(), p: e.parent.toString(), n: e.name }) + '\n';
      else if (onDisk) out += JSON.stringify({ i: ino.toString() }) + '\n';
      else continue; // made and gone within the group: the journal never knew it
      lines++;
    }
    this.pending.clear();
    if (!lines) return;
    if (!this.journal) {
      this.journal = createWriteStream(this.file, { flags: 'a' });
      this.journal.on('error', (err) => log.error({ err }, 'handle journal write failed'));
    }
    this.groupWrites++;
    this.journal.write(out);
    this.journalLines += lines;
    if (this.journalLines > 2 * this.map.size + 10_000) this.compact().catch((err) => log.error({ err }, "handle journal compaction failed"));
  }

  private compacting = false;
  private compacted: Promise<void> = Promise.resolve();

  /** Rewrite the journal with just the live entries (write new, rename over). */
  compact(): Promise<void> {
    const file = this.file;
    if (!file || this.compacting) return this.compacted;
    this.compacting = true;
    this.compacted = this.rewrite(file);
    return this.compacted;
  }

  private async rewrite(file: string): Promise<void> {
    try {
      const old = this.journal;
      this.journal = undefined;
      if (old) await new Promise<void>((r) => old.end(() => r()));
      const tmp = `${file}.tmp`;
      const lines: string[] = [];
      // The snapshot holds every change so far: nothing gathered before it needs writing again.
      for (const [i, e] of this.map) lines.push(JSON.stringify({ i: i.toString(), p: e.parent.toString(), n: e.name }));
      this.pending.clear();
      await fs.writeFile(tmp, lines.length ? lines.join('\n') + '\n' : '');
      await fs.rename(tmp, file);
      this.journalLines = lines.length;
    } finally {
      this.compacting = false;
      // Changes made while compacting: pending says what the new file lacks.
      if (this.pending.size) this.flush();
    }
  }

  async close(): Promise<void> {
    await this.compacted.catch(() => undefined);
    this.flush();
    const j = this.journal;
    this.journal = undefined;
    if (j) await new Promise<void>((r) => j.end(() => r()));
  }
}
