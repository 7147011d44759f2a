import fs from 'node:fs/promises';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Client } from 'ssh2';
import type { Dialer } from '../rpc/client.js';
import { RpcError } from '../rpc/types.js';
import { logger } from '../util/log.js';
import { hostKeyKnown, readKnownHosts } from './known-hosts.js';
import { explainHandshakeFailure } from './probe.js';

const log = logger('channel');

export interface SshTunnelOptions {
  /** The SSH server (e.g. the state server's OpenSSH). */
  host: string;
  port: number;
  username: string;
  /** Private key file for public-key authentication. */
  privateKeyFile: string;
  /** known_hosts file: the server's host key must be listed (strict checking, no prompts, no TOFU). */
  knownHostsFile: string;
  /** Where the proxy server listens, as seen from the SSH server (usually its loopback). */
  target: { host: string; port: number };
  readyTimeoutMs?: number;
}

/** Parse ssh://user@host[:port]. */
export function parseSshUrl(s: string): { username: string; host: string; port: number } {
  const u = new URL(s);
  if (u.protocol !== 'ssh:' || !u.username || !u.hostname) throw new Error(`expected ssh://USER@HOST[:PORT], got "${s}"`);
  return { username: decodeURIComponent(u.username), host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: u.port ? Number(u.port) : 22 };
}

/**
 * SSH tunnel channel: one SSH connection (ssh2, a maintained implementation)
 * to a standard OpenSSH server; every RPC connection is a direct-tcpip
 * channel through it to the proxy server's loopback port. The SSH
 * connection is re-established on the next dial when it drops, so the RPC
 * client's reconnect-and-resend works through tunnels too.
 */
export class SshTunnel {
  private client?: Client;
  private connecting?: Promise<Client>;
  private closed = false;

  constructor(private readonly o: SshTunnelOptions) {}

  private async connect(): Promise<Client> {
    // ssh2 is loaded when a tunnel first connects: it brings a 16 MiB WebAssembly heap that no other channel needs.
    const [privateKey, known, { Client: SshClient }] = await Promise.all([fs.readFile(this.o.privateKeyFile), readKnownHosts(this.o.knownHostsFile), import('ssh2')]);
    return new Promise<Client>((resolve, reject) => {
      const c = new SshClient();
      let hostKeyRejected = false;
      c.once('ready', () => {
        this.client = c;
        resolve(c);
      });
      let banner = false;
      c.once('error', (e) => {
        if (this.client === c) this.client = undefined;
        const kind = hostKeyRejected || /authentication/i.test(e.message) ? 'auth_error' : 'disconnected';
        const err = new RpcError(`SSH ${this.o.username}@${this.o.host}:${this.o.port}: ${hostKeyRejected ? 'host key not in known_hosts' : e.message}`, kind);
        // Connected, but no SSH banner came: name what is there (a TLS or plain proxy server) rather than retry.
        if (kind === 'disconnected' && !banner && !sock.connecting && !sock.errored) void explainHandshakeFailure('SSH', this.o.host, this.o.port, err, 'ssh').then(reject);
        else reject(err);
      });
      c.on('close', () => {
        if (this.client === c) this.client = undefined;
        log.debug({ host: this.o.host }, 'SSH connection closed');
      });
      // Our own socket, so Nagle can be switched off: small RPCs through a
      // tunnel otherwise wait for delayed ACKs (measured: ~40 ms per call).
      const sock = net.connect({ host: this.o.host, port: this.o.port, noDelay: true });
      sock.on('error', () => undefined); // reported through the SSH client
      sock.once('data', (b: Buffer) => (banner = b.toString('latin1', 0, 4) === 'SSH-'));
      c.connect({
        sock,
        host: this.o.host,
        port: this.o.port,
        username: this.o.username,
        privateKey,
        readyTimeout: this.o.readyTimeoutMs ?? 15_000,
        keepaliveInterval: 15_000,
        hostVerifier: (key: Buffer) => {
          const ok = hostKeyKnown(known, this.o.host, this.o.port, key);
          if (!ok) {
            hostKeyRejected = true;
            log.error({ host: this.o.host, port: this.o.port }, 'SSH host key not in known_hosts: refusing');
          }
          return ok;
        },
      });
    });
  }

  private async ready(): Promise<Client> {
    if (this.closed) throw new RpcError('SSH tunnel closed', 'closed');
    if (this.client) return this.client;
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /**
   * A Dialer for the RPC client: each call opens a new channel to the proxy
   * server (`target`, default the tunnel's; several targets share the one
   * SSH connection, for failover between proxy servers the SSH server reaches).
   */
  dialer(target: { host: string; port: number } = this.o.target): Dialer {
    return async () => {
      const c = await this.ready();
      return new Promise<Duplex>((resolve, reject) => {
        c.forwardOut('127.0.0.1', 0, target.host, target.port, (err, stream) => {
          if (err) reject(new RpcError(`SSH channel to ${target.host}:${target.port}: ${err.message}`, 'disconnected'));
          else resolve(stream as unknown as Duplex);
        });
      });
    };
  }

  /** Drop the SSH connection (tests: a tunnel that breaks). */
  drop(): void {
    this.client?.end();
    this.client = undefined;
  }

  close(): void {
    this.closed = true;
    this.client?.end();
  }
}
