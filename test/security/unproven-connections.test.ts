import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import type { SessionKey } from '../../src/channel/session-key.js';
import { makeSelfSignedCert } from '../../src/channel/tls.js';
import { proxyLink } from '../../src/proxy/proxy-client.js';
import { ROOT, tempDir } from '../helpers/local-server.js';
import { startProxyServer, type GvfsProcess } from '../helpers/gvfs-proc.js';
import { keyFile } from '../helpers/key-file.js';

const HANDSHAKE_MS = 1500;
const PROOF_MS = 3000;
/** Slack for a loaded machine; still well under what the base commit held a silent connection (10 s and more). */
const SLACK_MS = 4000;

interface Held {
  sock: net.Socket;
  openedAt: number;
  closedAt?: number;
  closed: Promise<void>;
}

async function silent(port: number): Promise<Held> {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => undefined);
  await once(sock, 'connect');
  const h: Held = { sock, openedAt: Date.now(), closed: Promise.resolve() };
  h.closed = once(sock, 'close').then(() => {
    h.closedAt = Date.now();
  });
  return h;
}

/** TLS handshake done, then nothing: never proves a key. */
async function tlsSilent(port: number): Promise<Held> {
  const sock = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
  sock.on('error', () => undefined);
  const openedAt = Date.now();
  await once(sock, 'secureConnect');
  const h: Held = { sock, openedAt, closed: Promise.resolve() };
  h.closed = once(sock, 'close').then(() => {
    h.closedAt = Date.now();
  });
  return h;
}

/** A keyed client reads `name` through its own link; returns the link (to check it later). */
async function keyedRead(port: number, key: SessionKey, name: string, tlsFingerprint?: string) {
  const { remote } = proxyLink({ host: '127.0.0.1', port, key, tlsFingerprint, timeoutMs: 20_000 });
  const root = (await remote.mount('/', ROOT)).fh;
  const fh = (await remote.lookup(ROOT, root, name)).fh;
  const r = await remote.read(ROOT, fh, 0, 5);
  assert.equal(r.data.toString(), 'hello');
  return { remote, fh };
}

describe('connections that never prove', { timeout: 180_000 }, () => {
  let dir: string;
  let key: SessionKey;
  let keyArg: string;
  let cert: { cert: string; key: string; fingerprint: string };
  const servers: GvfsProcess[] = [];
  const held: Held[] = [];

  before(async () => {
    dir = await tempDir('gvfs-sec-unproven-');
    await fs.mkdir(path.join(dir, 'export'));
    await fs.writeFile(path.join(dir, 'export', 'f'), 'hello');
    const k = await keyFile(dir, 'alice.key');
    key = k.key;
    keyArg = k.file;
    cert = await makeSelfSignedCert(path.join(dir, 'tls'));
  });
  after(async () => {
    for (const h of held) h.sock.destroy();
    for (const s of servers) await s.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  const start = async (name: string, args: string[]) => {
    const s = await startProxyServer(['--export', path.join(dir, 'export'), '--key', keyArg, '--state-dir', path.join(dir, name), ...args]);
    servers.push(s);
    return s;
  };

  test('TLS port: silent TCP connections close at the handshake timeout, TLS-but-silent ones at the proof timeout, both from accept; the cap drops the oldest', async () => {
    const ps = await start('s1', ['--tls-cert', cert.cert, '--tls-key', cert.key, '--handshake-timeout', String(HANDSHAKE_MS), '--proof-timeout', String(PROOF_MS), '--max-unproven', '16']);
    const quiet: Held[] = [];
    for (let i = 0; i < 30; i++) quiet.push(await silent(ps.port));
    const tlsQuiet: Held[] = [];
    for (let i = 0; i < 3; i++) tlsQuiet.push(await tlsSilent(ps.port));
    held.push(...quiet, ...tlsQuiet);
    await Promise.all([...quiet, ...tlsQuiet].map((h) => h.closed));
    for (const h of quiet) assert.ok(h.closedAt! - h.openedAt <= HANDSHAKE_MS + SLACK_MS, `silent TCP connection held ${h.closedAt! - h.openedAt} ms`);
    for (const h of tlsQuiet) assert.ok(h.closedAt! - h.openedAt <= PROOF_MS + SLACK_MS, `TLS connection without a proof held ${h.closedAt! - h.openedAt} ms`);
    // 33 unproven connections against a cap of 16: the oldest were dropped to make room.
    await ps.waitLog((l) => l.msg === 'unproven connections at their limit: dropping the oldest');
    assert.ok(quiet[0].closedAt! - quiet[0].openedAt < HANDSHAKE_MS, 'the oldest silent connection was dropped before its timeout');
    await ps.waitLog((l) => /^TLS handshake not finished/.test(l.msg ?? ''));
    await ps.waitLog((l) => /^session proof not finished/.test(l.msg ?? ''));
  });

  test('TLS port with its unproven pool full: a keyed client still mounts and reads (the oldest unproven is dropped, not the client)', async () => {
    const ps = await start('s2', ['--tls-cert', cert.cert, '--tls-key', cert.key, '--handshake-timeout', '60000', '--proof-timeout', '60000', '--max-unproven', '16']);
    const quiet: Held[] = [];
    for (let i = 0; i < 16; i++) quiet.push(await silent(ps.port));
    held.push(...quiet);
    const { remote } = await keyedRead(ps.port, key, 'f', cert.fingerprint);
    await remote.close();
    await quiet[0].closed; // dropped for the client, long before its 60 s timeout
    assert.equal(quiet[15].closedAt, undefined, 'the newest silent connections are still held');
  });

  test('loopback port (as an SSH tunnel arrives): a keyless process holding more connections than the per-peer limit neither cuts a proven session nor keeps a new one out', async () => {
    // 8 proven per peer, 64 unproven: the 30 keyless connections fit in the unproven pool, so only
    // the per-peer accounting decides whether they take the proven sessions' slots (they must not).
    const ps = await start('s3', ['--max-connections-per-peer', '8', '--max-unproven', '64', '--proof-timeout', '60000']);
    const a = await keyedRead(ps.port, key, 'f');
    const quiet: Held[] = [];
    for (let i = 0; i < 30; i++) quiet.push(await silent(ps.port));
    held.push(...quiet);
    // The session proved before the flood keeps its connection and works.
    assert.equal((await a.remote.read(ROOT, a.fh, 0, 5)).data.toString(), 'hello');
    assert.equal(a.remote.clients[0].rpc.stats.reconnects, 0, 'the proven connection was never dropped');
    // A new session from the same address gets in while the flood holds its connections.
    const b = await keyedRead(ps.port, key, 'f');
    await b.remote.close();
    assert.ok(quiet.every((h) => h.closedAt === undefined), 'the keyless connections were not dropped for it either (the pool was not full)');
    await a.remote.close();
  });
});
