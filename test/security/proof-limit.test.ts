import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { authArgs, GVFS_PROGRAM, GvfsProc } from '../../src/ext/codec.js';
import { MAX_AUTH_FAILURES } from '../../src/frontends/nfs3-server/gvfs-program.js';
import { tempDir } from '../helpers/local-server.js';
import { RawRpc } from '../helpers/raw-rpc.js';
import { startProxyServer, type GvfsProcess, type LogLine } from '../helpers/gvfs-proc.js';
import { keyFile } from '../helpers/key-file.js';

const ATTEMPTS = 500;

function frame(body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE((0x8000_0000 | body.length) >>> 0);
  return Buffer.concat([h, body]);
}

/** CHALLENGE then AUTH with a wrong proof for a real session id, `n` times, in one buffer. */
function wrongProofs(sessionId: string, n: number, xid0: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    parts.push(frame(RawRpc.call(xid0 + 2 * i, GVFS_PROGRAM, 1, GvfsProc.CHALLENGE)));
    parts.push(frame(RawRpc.call(xid0 + 2 * i + 1, GVFS_PROGRAM, 1, GvfsProc.AUTH, (w) => authArgs.enc(w, { sessionId, clientNonce: randomBytes(32), proof: randomBytes(32) }))));
  }
  return Buffer.concat(parts);
}

describe('failed-proof limit with pipelined attempts', { timeout: 120_000 }, () => {
  let dir: string;
  let ps: GvfsProcess;
  let sessionId: string;

  before(async () => {
    dir = await tempDir('gvfs-sec-proof-');
    await fs.mkdir(path.join(dir, 'export'));
    const k = await keyFile(dir, 'alice.key');
    sessionId = k.key.id;
    ps = await startProxyServer(['--export', path.join(dir, 'export'), '--key', k.file, '--state-dir', path.join(dir, 'state')]);
  });
  after(async () => {
    await ps?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  test(`${ATTEMPTS} wrong proofs in one write: the connection closes and at most ${MAX_AUTH_FAILURES} proofs are verified`, async () => {
    const c = await RawRpc.connect(ps.port);
    const myPort = c.sock.localPort!;
    const t0 = Date.now();
    c.sock.write(wrongProofs(sessionId, ATTEMPTS, 1));
    await c.closed;
    const took = Date.now() - t0;
    // Well before the proof deadline (10 s from accept): closed by the limit, not by the timer.
    assert.ok(took < 8000, `connection closed after ${took} ms`);

    // The server logs one "session proof refused" line per proof it verified. A marker from a
    // second connection's own refusal comes after every line of the first (one ordered log).
    const m = await RawRpc.connect(ps.port);
    const markerPort = m.sock.localPort!;
    m.sock.write(wrongProofs(sessionId, 1, 1));
    const fromPort = (port: number) => (l: LogLine) => l.msg === 'session proof refused' && l.peer?.port === port;
    await ps.waitLog(fromPort(markerPort));
    m.close();
    const verified = ps.lines.filter(fromPort(myPort));
    assert.ok(verified.length >= 1, 'the first wrong proof is verified and refused');
    assert.ok(verified.length <= MAX_AUTH_FAILURES, `${verified.length} proofs verified on one connection (limit ${MAX_AUTH_FAILURES})`);
    assert.equal(verified[0].reason, 'proof does not match the session key');
  });
});
