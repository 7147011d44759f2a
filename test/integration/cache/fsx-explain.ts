/**
 * What the fsx exerciser (fsx.test.ts) prints when a read disagrees with the
 * model: where the first differing byte is, which op last wrote the byte
 * expected there, and which earlier op (if any) wrote the bytes found — the
 * written data names its op (fill byte i & 0xff, uint32 i*65537+k every 512
 * bytes from the write's start), so a stale block, a lost write, a reordered
 * flush or a truncate race each leave a different trace.
 */
export interface FsxOp {
  i: number;
  kind: 'write' | 'truncate' | 'flush' | 'commit';
  /** write: offset; truncate: the new size. */
  off: number;
  len: number;
  stable?: number;
  /** truncate: the size before. */
  from?: number;
}

/** The byte op `w` wrote at file offset `pos` (pos inside the write). */
export function byteOf(w: FsxOp, pos: number): number {
  const k = pos - w.off;
  const k0 = k - (k % 512);
  if (k0 + 4 <= w.len && k - k0 < 4) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE((w.i * 65537 + k0) >>> 0, 0);
    return b[k - k0];
  }
  return w.i & 0xff;
}

/** Which op's bytes (or zeros of which truncate) the file held at `pos` just before history index `upTo`. */
function ownerAt(history: FsxOp[], upTo: number, pos: number): string {
  for (let h = upTo - 1; h >= 0; h--) {
    const o = history[h];
    if (o.kind === 'write' && pos >= o.off && pos < o.off + o.len) return `write op ${o.i} (${o.off}+${o.len}, stable ${o.stable})`;
    if (o.kind === 'truncate' && pos >= o.off) return `zeros past truncate op ${o.i} (${o.from} -> ${o.off})`;
  }
  return 'never written (zero)';
}

export function explainMismatch(history: FsxOp[], off: number, got: Buffer, want: Buffer, blockSize: number): string {
  const n = Math.min(got.length, want.length);
  let p = 0;
  while (p < n && got[p] === want[p]) p++;
  if (p === n) return got.length === want.length ? 'no difference' : `lengths differ: got ${got.length}, want ${want.length}`;
  // The differing run: differences no more than 64 equal bytes apart (written data has zero bytes in it too).
  let q = p + 1;
  for (let x = q; x < n && x - q < 64; x++) if (got[x] !== want[x]) q = x + 1;
  let diffs = 0;
  for (let x = p; x < n; x++) if (got[x] !== want[x]) diffs++;
  const pos = off + p;
  const lines = [
    `first difference at file offset ${pos} (block ${Math.floor(pos / blockSize)} +${pos % blockSize}); first differing run ${q - p} bytes ` +
      `(to ${off + q}, block ${Math.floor((off + q - 1) / blockSize)}); ${diffs} differing bytes in the ${n} compared`,
    `got ${got.subarray(p, Math.min(p + 16, n)).toString('hex')} want ${want.subarray(p, Math.min(p + 16, n)).toString('hex')}`,
    `expected there: ${ownerAt(history, history.length, pos)}`,
  ];
  // Which write (newest first) explains the bytes found over the differing run (where it covers it).
  const found: string[] = [];
  const allZero = got.subarray(p, q).every((b) => b === 0);
  if (allZero) found.push('zeros (a hole, a truncate, or bytes never fetched)');
  for (let h = history.length - 1; h >= 0 && found.length < 4; h--) {
    const w = history[h];
    if (w.kind !== 'write' || pos < w.off || pos >= w.off + w.len) continue;
    const from = Math.max(p, w.off - off);
    const to = Math.min(q, w.off + w.len - off);
    let ok = true;
    for (let x = from; x < to && ok; x++) ok = got[x] === byteOf(w, off + x);
    if (ok) found.push(`write op ${w.i} (${w.off}+${w.len}, stable ${w.stable}; ${history.length - 1 - h} history entries ago; file then held ${ownerAt(history, h, pos)})`);
  }
  lines.push(`found there: ${found.length ? found.join('; ') : 'bytes no write op made at this offset'}`);
  // Where the differences are (first runs, with a gap under 64 equal bytes inside a run) and what is there.
  const runs: string[] = [];
  for (let x = p; x < n && runs.length < 8; ) {
    if (got[x] === want[x]) {
      x++;
      continue;
    }
    let y = x + 1;
    for (let z = y; z < n && z - y < 64; z++) if (got[z] !== want[z]) y = z + 1;
    runs.push(`${off + x}+${y - x}`);
    x = y;
  }
  lines.push(`differing runs: ${runs.join(', ')}`);
  lines.push(`got around the first: ${got.subarray(Math.max(0, p - 16), Math.min(n, p + 80)).toString('hex')} (from ${off + Math.max(0, p - 16)})`);
  const recent = history.slice(-12).map((o) => (o.kind === 'write' ? `${o.i}:w ${o.off}+${o.len}` : o.kind === 'truncate' ? `${o.i}:t ${o.from}->${o.off}` : `${o.i}:${o.kind}`));
  lines.push(`last ops: ${recent.join(', ')}`);
  return lines.join('\n');
}
