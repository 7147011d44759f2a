import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import type { Backend } from '../../../../src/backend/backend.js';
import { FType } from '../../../../src/nfs3/constants.js';
import type { Fattr3 } from '../../../../src/nfs3/types.js';
import type { Credentials } from '../../../../src/rpc/types.js';
import { newCounters } from '../../../../src/util/counters.js';
import { BlockReader, type Seg } from '../../../../src/wrappers/cache/block-reader.js';
import { BlockStore } from '../../../../src/wrappers/cache/block-store.js';
import { FileTable } from '../../../../src/wrappers/cache/file-state.js';

const BS = 4096;
const cred = { uid: 1000, gid: 1000, gids: [] } as unknown as Credentials;

function attr(size: number, t: number): Fattr3 {
  const time = { sec: t, nsec: 0 };
  return { type: FType.REG, mode: 0o644, nlink: 1, uid: 1000, gid: 1000, size, used: size, rdev: { major: 0, minor: 0 }, fsid: 1n, fileid: 42n, atime: time, mtime: time, ctime: time };
}

/**
 * The fsx failure (seed 51324, op 842; seed 71467, op 1557 in a full run): a
 * READ chose version v1 of the file, our own flush landed while it waited
 * (the file grew: version v2), and its read-ahead fetched the next blocks
 * under v2's name with v1's size: the block holding v1's end came back cut
 * short yet "whole". A READ of v2 that joined that fetch copied the short
 * block and returned the rest of its buffer unfilled (count right, data
 * garbage). Driven step by step: the server's READs wait on a gate.
 */
describe('read-ahead names blocks by the version it sized them by', { timeout: 60_000 }, () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  test('a READ of the newer version joining read-ahead started with the older one gets all its bytes', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-ra-version-'));
    dirs.push(dir);
    const store = new BlockStore({ dir, limit: () => 1 << 30 });
    await store.init();
    const files = new FileTable({ serverId: 'srv', blockSize: BS, store, dirChanged: () => undefined, dirty: () => false });
    const v1 = attr(10_000, 100);
    const v2 = attr(20_000, 101);
    // The server's file at v2: no byte is 0xee (the unfilled-buffer marker below).
    const server = Buffer.alloc(v2.size);
    for (let i = 0; i < server.length; i++) server[i] = (i * 7 + 1) % 200;
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const calls: Array<[number, number]> = [];
    let onCall: (() => void) | undefined;
    const inner = {
      async read(_c: Credentials, _fh: Buffer, off: number, count: number) {
        calls.push([off, count]);
        onCall?.();
        await gate;
        const data = Buffer.from(server.subarray(Math.min(off, server.length), Math.min(off + count, server.length)));
        return { count: data.length, eof: off + data.length >= server.length, data, attr: v2 };
      },
    } as unknown as Backend;
    const reader = new BlockReader(inner, store, files, { blockSize: BS, readAheadBytes: 1 << 20, fetchBytesInFlight: 1 << 20 }, newCounters());
    const fh = Buffer.from('0102', 'hex');
    const s = files.get(fh);
    files.note(s, v1);
    // The READ took v1; then our flush landed and the file is known at v2.
    files.note(s, v2);
    assert.notEqual(s.tag, undefined);
    // (The directory listing read-ahead waits for, done first: the read-ahead's own steps then run in microtasks.)
    await store.discover(s.fk!, new Set([s.tag!]), () => BS, 60_000);
    reader.readAhead(cred, s, v1, 0, BS);
    await new Promise((r) => setImmediate(r));
    const before = calls.length;
    // A READ of v2 over the whole file, while the read-ahead (if any) is on the wire.
    const buf = Buffer.alloc(v2.size, 0xee);
    const issued = new Promise<void>((r) => (onCall = () => calls.length > before && r()));
    const filled = reader.fill(cred, s, v2, buf, 0, v2.size, false, [] as Seg[]);
    await issued;
    open();
    const ok = await filled;
    await reader.settle();
    assert.equal(ok, true, 'the READ is answered');
    const bad = buf.findIndex((b, i) => b !== server[i]);
    assert.equal(bad, -1, `byte ${bad} (block ${Math.floor(bad / BS)}) is ${buf[bad]?.toString(16)}, the server has ${server[bad]?.toString(16)}; server READs ${JSON.stringify(calls)}`);
    // Nothing short was kept for v2 either: a second READ from the cache alone is whole.
    const again = Buffer.alloc(v2.size, 0xee);
    if (await reader.fillCached(s, v2, again, 0, v2.size)) assert.ok(again.equals(server), 'the cached blocks of v2 are whole');
  });
});
