import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { logger } from '../util/log.js';

const log = logger('channel');

/**
 * Who owns the other end of a local TCP connection, as the kernel tells it.
 *
 * /proc/net/tcp and /proc/net/tcp6 list every TCP socket of this network
 * namespace with the uid that created it. The peer of a connection we
 * accepted is the socket whose local endpoint is our remote one and whose
 * remote endpoint is our local one; its uid column is its owner.
 *
 * Only a socket still held by a process counts (inode column non-zero): a
 * socket its owner has closed lives on as a time-wait or orphan entry whose
 * uid the kernel prints as 0, and a peer that connected, sent a request and
 * closed must not pass for root. A peer that is not found (not local, or
 * already gone) has no owner: `undefined`.
 */

/** One row of /proc/net/tcp{,6}: endpoints in the kernel's hex notation. */
export interface TcpRow {
  local: string;
  remote: string;
  /** TCP state (1 = ESTABLISHED). */
  state: number;
  uid: number;
  inode: string;
}

export function parseProcNetTcp(text: string): TcpRow[] {
  const rows: TcpRow[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    if (f.length < 10 || !/^\d+:$/.test(f[0])) continue;
    rows.push({ local: f[1].toUpperCase(), remote: f[2].toUpperCase(), state: parseInt(f[3], 16), uid: Number(f[7]), inode: f[9] });
  }
  return rows;
}

/** The 4 address bytes at `off` as the kernel prints them: one host-endian 32-bit word, %08X. */
function word(b: Buffer, off: number): string {
  const v = os.endianness() === 'LE' ? b.readUInt32LE(off) : b.readUInt32BE(off);
  return v.toString(16).toUpperCase().padStart(8, '0');
}

function v4Bytes(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

function v6Bytes(a: string): Buffer {
  // Expand "::" and an embedded dotted quad, then 8 groups of 16 bits.
  let s = a.split('%')[0];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (dotted) {
    const b = v4Bytes(dotted[1]);
    s = s.slice(0, -dotted[1].length) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return out;
}

/**
 * The ways an endpoint may appear in /proc/net/tcp{,6}: an IPv4 address as
 * itself, and also IPv4-mapped in tcp6; an IPv4-mapped IPv6 address as both.
 */
export function procEndpoints(address: string, port: number): string[] {
  const p = port.toString(16).toUpperCase().padStart(4, '0');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const v4 = net.isIPv4(address) ? address : mapped?.[1];
  const out: string[] = [];
  if (v4) {
    out.push(`${word(v4Bytes(v4), 0)}:${p}`);
    const m = v6Bytes(`::ffff:${v4}`);
    out.push(`${word(m, 0)}${word(m, 4)}${word(m, 8)}${word(m, 12)}:${p}`);
  } else if (net.isIPv6(address)) {
    const b = v6Bytes(address);
    out.push(`${word(b, 0)}${word(b, 4)}${word(b, 8)}${word(b, 12)}:${p}`);
  }
  return out;
}

export interface Endpoints {
  localAddress?: string;
  localPort?: number;
  remoteAddress?: string;
  remotePort?: number;
}

/** The owner uid of the peer of `c` among `rows`, or undefined (see the module comment). */
export function findPeerOwner(rows: TcpRow[], c: Endpoints): number | undefined {
  if (!c.localAddress || !c.remoteAddress || !c.localPort || !c.remotePort) return undefined;
  const peerLocal = new Set(procEndpoints(c.remoteAddress, c.remotePort));
  const peerRemote = new Set(procEndpoints(c.localAddress, c.localPort));
  for (const r of rows) {
    if (peerLocal.has(r.local) && peerRemote.has(r.remote)) return /^0+$/.test(r.inode) ? undefined : r.uid;
  }
  return undefined;
}

export type ReadTable = () => Promise<string>;

const readProc: ReadTable = async () => {
  const [a, b] = await Promise.all(['/proc/net/tcp', '/proc/net/tcp6'].map((f) => fs.readFile(f, 'latin1').catch(() => '')));
  return a + '\n' + b;
};

/**
 * Looks peers' owners up, many at once: lookups that arrive while the
 * tables are being read wait for the next read (which starts after their
 * connection existed), so a burst of connections costs two reads, not one
 * per connection.
 */
export class PeerOwners {
  private reading?: Promise<TcpRow[]>;
  private next?: Promise<TcpRow[]>;

  constructor(private readonly read: ReadTable = readProc) {}

  async owner(c: Endpoints): Promise<number | undefined> {
    return findPeerOwner(await this.table(), c);
  }

  private table(): Promise<TcpRow[]> {
    if (!this.reading) return (this.reading = this.start());
    // A read already running may have begun before this connection was made: take the next one.
    return (this.next ??= this.reading.catch(() => undefined).then(() => {
      this.next = undefined;
      return (this.reading = this.start());
    }));
  }

  private start(): Promise<TcpRow[]> {
    const p = this.read().then(parseProcNetTcp);
    const done = () => {
      if (this.reading === p) this.reading = undefined;
    };
    p.then(done, done);
    return p;
  }
}

/** `--allow-uid` parsed: uids, or 'any' (no check: connections that may come from other hosts). */
export type AllowUids = ReadonlySet<number> | 'any';

/**
 * An admission check for a listener (RpcServer's `admit`): a connection is
 * served only when the kernel says its peer socket belongs to one of
 * `allow`. Others are refused before a byte of theirs is read, with a log
 * line naming the uid.
 */
export function ownerAdmission(allow: ReadonlySet<number>, what: string, owners = new PeerOwners()): (s: net.Socket) => Promise<boolean> {
  return async (s) => {
    const peer = { address: s.remoteAddress, port: s.remotePort };
    let uid: number | undefined;
    try {
      uid = await owners.owner(s);
    } catch (e) {
      log.error({ err: e, peer }, `${what}: cannot tell who owns a connection; refusing it`);
      return false;
    }
    if (uid !== undefined && allow.has(uid)) return true;
    log.warn({ peer, uid: uid ?? null, allowed: [...allow], reason: uid === undefined ? 'owner unknown' : 'uid not allowed' }, uid === undefined ? `${what}: connection refused: its owner is unknown (not a local socket, or already closed)` : `${what}: connection refused: uid ${uid} is not allowed`);
    return false;
  };
}

/** Parse `--allow-uid UID[,UID...]` or `any`. */
export function parseAllowUids(v: string): AllowUids {
  if (v.trim() === 'any') return 'any';
  const out = new Set<number>();
  for (const part of v.split(',')) {
    const s = part.trim();
    if (!/^\d+$/.test(s) || Number(s) > 4294967295) throw new Error(`expected UID[,UID...] or "any", got "${v}"`);
    out.add(Number(s));
  }
  return out;
}
