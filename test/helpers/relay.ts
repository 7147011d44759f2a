import net from 'node:net';

/**
 * A loopback TCP relay in front of a server, for links that fail:
 * `freeze('both')` holds every byte both ways (a partition, or a server
 * that accepts and answers nothing; new connections are accepted and held
 * too), `freeze('replies')` still delivers requests but holds the answers
 * (the server did the work, the client never hears of it). `thaw()`
 * delivers what was held and forwards again (a partition that heals);
 * `cut()` drops it and closes every connection (a host gone).
 */
export class Relay {
  private mode: 'none' | 'both' | 'replies' = 'none';
  private readonly held: Array<[net.Socket, Buffer]> = [];
  private readonly socks = new Set<net.Socket>();
  readonly server: net.Server;
  port = 0;
  /** Bytes held instead of forwarded (both ways), for the test to see the freeze was real. */
  heldBytes = 0;
  /** Chunks held on their way to the dialling side (e.g. a recall). */
  heldToClient = 0;

  /** `target`: the server's port (or a function giving it, for a server that restarts on another port). */
  constructor(private readonly target: number | (() => number), private readonly targetHost = '127.0.0.1') {
    this.server = net.createServer((c) => {
      const u = net.connect(typeof this.target === 'number' ? this.target : this.target(), this.targetHost);
      this.socks.add(c).add(u);
      const fwd = (from: net.Socket, to: net.Socket, holds: () => boolean) =>
        from.on('data', (d: Buffer) => {
          if (!holds()) return void to.write(d);
          this.held.push([to, d]);
          this.heldBytes += d.length;
          if (to === c) this.heldToClient++;
        });
      fwd(c, u, () => this.mode === 'both');
      fwd(u, c, () => this.mode !== 'none');
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

  get frozen(): boolean {
    return this.mode !== 'none';
  }

  freeze(mode: 'both' | 'replies' = 'both'): void {
    this.mode = mode;
  }

  thaw(): void {
    this.mode = 'none';
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
