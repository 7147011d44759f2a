import { XdrReader, XdrWriter } from '../../src/xdr/index.js';

/**
 * Bytes from a hex string. Whitespace (to group XDR words) is ignored, and
 * `#` starts a comment to the end of the line, so a vector can name its fields.
 */
export function hex(s: string): Buffer {
  const clean = s.replace(/#[^\n]*/g, '').replace(/\s+/g, '');
  if (!/^(?:[0-9a-f]{2})*$/i.test(clean)) throw new Error(`bad hex vector: ${s}`);
  return Buffer.from(clean, 'hex');
}

/** Run an encoder on a fresh writer and return the bytes. */
export function encode<T>(enc: (w: XdrWriter, v: T) => void, v: T): Buffer {
  const w = new XdrWriter();
  enc(w, v);
  return w.toBuffer();
}

/** Decode and insist the whole input was consumed. */
export function decodeAll<T>(dec: (r: XdrReader) => T, b: Buffer): T {
  const r = new XdrReader(b);
  const v = dec(r);
  r.end();
  return v;
}
