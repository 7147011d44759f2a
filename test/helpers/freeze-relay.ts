import net from 'node:net';

/**
 * A loopback TCP relay to `target` that can stop forwarding (both ways:
 * a partition, the sockets stay open) and start again, delivering what it
 * held. `cut()` closes every connection through it (a host gone).
 */
export class FreezeRelay {
  frozen = false;
  private readonly held: Array<[net.Socket, Buffer]> = [];
  private readonly socks = new Set<net.Socket>();
  private readonly server: net.Server;
  port = 0;
  /** Chunks held on their way to the dialling side (e.g. a recall), since the start. */
  heldToClient = 0;

  constructor(private readonly target: () => number) {
    this.server = net.createServer((c) => {
      const u = net.connect(this.target(), '127.0.0.1');
      this.socks.add(c).add(u);
      const fwd = (from: net.Socket, to: net.Socket) =>
        from.on('data', (d: Buffer) => {
          if (!this.frozen) return void to.write(d);
          this.held.push([to, d]);
          if (to === c) this.heldToClient++;
        });
      fwd(c, u);
      fwd(u, c);
      const end = () => {
        c.destroy();
        u.destroy();
        this.socks.delete(c);
        this.socks.delete(u);
      };
      c.on('close', end).on('error', end);
      u.on('close', end).on('error', end);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  thaw(): void {
    this.frozen = false;
    for (const [to, d] of this.held.splice(0)) if (!to.destroyed) to.write(d);
  }

  cut(): void {
    this.held.splice(0);
    for (const s of this.socks) s.destroy();
    this.socks.clear();
  }

  close(): void {
    this.cut();
    this.server.close();
  }
}
