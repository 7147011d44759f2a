import { createHmac, timingSafeEqual } from 'node:crypto';
import { FsError } from '../../backend/errors.js';

/**
 * File handles of the local export (44 bytes, well under NFSv3's 64):
 *
 *   0      version (1)
 *   1..3   reserved (0)
 *   4..11  export id   (first 8 bytes of HMAC(secret, "export"))
 *   12..19 inode number
 *   20..27 generation  (birth time in ns, 0 where the file system has none)
 *   28..43 authenticator: HMAC-SHA256(secret, bytes 0..27), first 16 bytes
 *
 * The secret lives in the export's state directory, so handles survive a
 * restart; without it nobody can forge one. The generation makes a handle
 * to a removed file STALE even after its inode number is reused.
 */
export const HANDLE_LEN = 44;
const VERSION = 1;

export interface HandleId {
  ino: bigint;
  gen: bigint;
}

export class HandleCodec {
  private readonly exportId: Buffer;
  /** Recently verified handles: skips the HMAC for handles in use (bounded LRU). */
  private readonly verified = new Map<string, HandleId>();

  constructor(private readonly secret: Buffer) {
    this.exportId = createHmac('sha256', secret).update('export').digest().subarray(0, 8);
  }

  encode(id: HandleId): Buffer {
    const h = Buffer.alloc(HANDLE_LEN);
    h[0] = VERSION;
    this.exportId.copy(h, 4);
    h.writeBigUInt64BE(id.ino, 12);
    h.writeBigUInt64BE(BigInt.asUintN(64, id.gen), 20);
    this.mac(h).copy(h, 28);
    return h;
  }

  /** Verify and decode; a handle we did not issue is BADHANDLE. */
  decode(h: Buffer): HandleId {
    if (h.length !== HANDLE_LEN || h[0] !== VERSION) throw new FsError('BADHANDLE', 'malformed file handle');
    const key = h.toString('latin1');
    const hit = this.verified.get(key);
    if (hit) return hit;
    const id = this.check(h);
    if (this.verified.size >= 4096) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(key, id);
    return id;
  }

  private check(h: Buffer): HandleId {
    if (!h.subarray(4, 12).equals(this.exportId)) throw new FsError('STALE', 'file handle of another export');
    if (!timingSafeEqual(this.mac(h), h.subarray(28, 44))) throw new FsError('BADHANDLE', 'forged file handle');
    return { ino: h.readBigUInt64BE(12), gen: h.readBigUInt64BE(20) };
  }

  private mac(h: Buffer): Buffer {
    return createHmac('sha256', this.secret).update(h.subarray(0, 28)).digest().subarray(0, 16);
  }
}
