/**
 * Ports for daemons the tests start themselves (ganesha, sshd, ceph), which
 * bind a port they are told in a config file.
 *
 * The usual trick, listen on port 0 and close, hands out a port from the
 * kernel's ephemeral range: until the daemon binds it, any outgoing
 * connection on the machine (an nfs-ls probe, another instance's client) may
 * take it as its source port, and the next listen(0) may hand it out again.
 * ganesha then exits at start-up ("Cannot bind NFS tcp socket, error 98"; a
 * CI run lost a test to it with eight instances started at once). So ports
 * come from outside the ephemeral range (below it), where neither connect() nor bind(0)
 * ever picks one, are checked free by a listen, and are never handed out
 * twice by this process.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';

const handedOut = new Set<number>();
const LOW = 20_000;
const TOP = 65_535;
const TRIES = 200;

/** The kernel's ephemeral range (ip_local_port_range; Linux's default 32768-60999). */
export function ephemeralRange(): [number, number] {
  try {
    const [first, last] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(first) && Number.isInteger(last) && first <= last) return [first, last];
  } catch {
    /* not Linux, or /proc missing: the default */
  }
  return [32_768, 60_999];
}

/** Ports outside the ephemeral range to draw from: below it, or above it when it starts low (a range of 1024-65535 leaves none: an error). */
function candidates(): [number, number] {
  const [first, last] = ephemeralRange();
  if (first - LOW >= 1000) return [LOW, first - 1];
  if (TOP - last >= 1000) return [last + 1, TOP];
  throw new Error(`the ephemeral port range ${first}-${last} leaves no room for test daemons' ports`);
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** A loopback port no other process listens on, outside the ephemeral range, not handed out before. */
export async function reservePort(): Promise<number> {
  const [low, high] = candidates();
  for (let i = 0; i < TRIES; i++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (handedOut.has(port)) continue;
    handedOut.add(port); // before the check: a concurrent call must not pick it meanwhile
    if (await canListen(port)) return port;
  }
  throw new Error(`no free loopback port in ${low}..${high} after ${TRIES} tries`);
}
