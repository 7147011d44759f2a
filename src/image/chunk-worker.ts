import { parentPort } from 'node:worker_threads';
import { pack, unpack } from '../meta/compress.js';
import { blockHash, HASH_LEN } from '../meta/format.js';
import { decodeChunk } from './layout.js';
import type { PoolReply, PoolRequest } from './chunk-pool.js';

/**
 * One thread of the chunk pool (chunk-pool.ts): zstd decode and SHA-256
 * check of stored chunks, off the server's event loop. Stateless: a request
 * in, one reply out, in order.
 */
const port = parentPort!;

port.on('message', (m: PoolRequest) => {
  let reply: PoolReply;
  const transfer: ArrayBuffer[] = [];
  try {
    const stored = Buffer.from(m.stored);
    let raw: Buffer;
    let codec: number | undefined;
    if (m.op === 'pack') ({ codec, data: raw } = pack(stored, m.codec, m.level));
    else if (m.op === 'unpack') raw = unpack(stored, m.codec, m.rawLen);
    else raw = decodeChunk(m.codecless ? Buffer.concat([Buffer.from([0]), stored]) : stored, m.hash, m.len);
    let hashes: ArrayBuffer | undefined;
    if (m.op === 'unpack' && m.blockSize) {
      const n = Math.ceil(raw.length / m.blockSize);
      hashes = new ArrayBuffer(n * HASH_LEN);
      const h = new Uint8Array(hashes);
      for (let i = 0; i < n; i++) h.set(blockHash(raw.subarray(i * m.blockSize, Math.min(raw.length, (i + 1) * m.blockSize))), i * HASH_LEN);
      transfer.push(hashes);
    }
    if (m.op === 'chunk' && !m.wantRaw) reply = { id: m.id, ok: true };
    else {
      // Hand the decoded bytes over without a copy when they own their memory (never a slice of a shared pool).
      let ab: ArrayBuffer;
      if (raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength && raw.buffer instanceof ArrayBuffer) ab = raw.buffer;
      else {
        ab = new ArrayBuffer(raw.length);
        new Uint8Array(ab).set(raw);
      }
      transfer.push(ab);
      reply = { id: m.id, ok: true, raw: ab, codec, hashes };
    }
  } catch (e) {
    reply = { id: m.id, ok: false, message: (e as Error).message, chunkError: (e as Error).name === 'ChunkError' };
  }
  port.postMessage(reply, transfer);
});
