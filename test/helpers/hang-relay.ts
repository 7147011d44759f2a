import net from 'node:net';

/**
 * A loopback TCP relay in front of a server that can stop forwarding, like
 * a link that hangs or a server that accepts and then answers nothing:
 * `freeze('both')` holds every byte both ways, `freeze('replies')` still
 * delivers requests but holds the answers (the server did the work, the
 * client never hears of it). New connections are accepted and held too.
 */
export class HangRelay {
  private mode: 'none' | 'both' | 'replies' = 'none';
  private readonly socks = new Set<net.Socket>();
  /** Bytes held instead of forwarded (both ways), for the test to see the freeze was real. */
  heldBytes = 0;
  readonly server: net.Server;

  constructor(private readonly targetPort: number, private readonly targetHost = '127.0.0.1') {
    this.server = net.createServer((c) => {
      const u = net.connect(this.targetPort, this.targetHost);
      this.socks.add(c).add(u);
      c.on('data', (d: Buffer) => (this.mode === 'both' ? (this.heldBytes += d.length) : u.write(d)));
      u.on('data', (d: Buffer) => (this.mode !== 'none' ? (this.heldBytes += d.length) : c.write(d)));
      const end = () => (c.destroy(), u.destroy(), this.socks.delete(c), this.socks.delete(u));
      c.on('close', end).on('error', end);
      u.on('close', end).on('error', end);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Stop forwarding (held bytes are dropped: a hung link does not deliver them later). */
  freeze(mode: 'both' | 'replies' = 'both'): void {
    this.mode = mode;
  }

  close(): void {
    for (const s of this.socks) s.destroy();
    this.server.close();
  }
}
