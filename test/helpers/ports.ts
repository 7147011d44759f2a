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
 * come from below the ephemeral range, where neither connect() nor bind(0)
 * ever picks one, are checked free by a listen, and are never handed out
 * twice by this process.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';

const handedOut = new Set<number>();
const LOW = 20_000;
const TRIES = 200;

/** The first port of the kernel's ephemeral range (32768 by default). */
function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(first) && first > LOW + 1000) return first;
  } catch {
    /* not Linux, or /proc missing: the default */
  }
  return 32_768;
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
  const high = ephemeralStart();
  for (let i = 0; i < TRIES; i++) {
    const port = LOW + Math.floor(Math.random() * (high - LOW));
    if (handedOut.has(port)) continue;
    handedOut.add(port); // before the check: a concurrent call must not pick it meanwhile
    if (await canListen(port)) return port;
  }
  throw new Error(`no free loopback port in ${LOW}..${high - 1} after ${TRIES} tries`);
}
