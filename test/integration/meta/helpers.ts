import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { memoryStateFile } from '../../../bench/lib/files.js';
import { META_DIR, type TransferHint } from '../../../src/meta/format.js';
import { generateMeta } from '../../../src/meta/generate.js';
import type { MetaBackend } from '../../../src/wrappers/metadata/meta-backend.js';
import type { Session } from '../cache/helpers.js';

export const KB = 1024;
export const MB = 1 << 20;

/** A memory-state-like file (half zero 64 KiB blocks) in the export, with meta-data. */
export async function memoryFile(exportDir: string, name: string, size: number, hint: TransferHint, seed = 3) {
  const file = path.join(exportDir, name);
  await fs.mkdir(path.dirname(file), { recursive: true });
  const info = await memoryStateFile(file, size, 0.5, seed);
  const g = await generateMeta(file, { root: exportDir, hint });
  return { file, meta: g.meta, ...info };
}

export async function metaDir(exportDir: string): Promise<string> {
  const d = path.join(exportDir, META_DIR);
  await fs.mkdir(d, { recursive: true });
  return d;
}

export function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export function metaOf(s: Session): MetaBackend {
  if (!s.pc.meta) throw new Error('no meta-data wrapper in this session');
  return s.pc.meta;
}
