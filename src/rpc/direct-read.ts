import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { RecordDecoder } from './record.js';

/**
 * Aimed socket reads (net's `onread`) for a record stream over plain TCP:
 * a read lands in the large fragment the stream's record decoder is
 * filling (a 1 MiB READ reply at a client, a 1 MiB WRITE call at a server),
 * else in one scratch buffer and is copied out at its size. Without it,
 * Node reads every 64 KiB into a fresh buffer and the decoder copies the
 * pieces into the record again: a copy of every byte, and a 64 KiB
 * allocation per read for the garbage collector.
 *
 * TLS and SSH channel streams decrypt into buffers of their own: they are
 * read as ordinary 'data' events.
 */
export interface DirectReader {
  /** From now on reads go to this decoder; `chunk` takes the ones that were not aimed at a fragment, `direct` the ones that were. */
  attach(decoder: RecordDecoder, chunk: (b: Buffer) => void, direct: (n: number) => void): void;
}

const DIRECT_READER = Symbol('gvfs.rpc.directReader');

/** Largest socket read that is not aimed at a large fragment (Node's own default). */
const READ_CHUNK = 64 * 1024;
/** An unaimed read right after a large record: the next record's header and a little more. */
const HEAD_READ = 4096;
/**
 * Bytes read before a decoder is attached, kept for it: a peer that sends
 * more than this before then is cut off. No read happens before attach today
 * (an accepted socket is paused until then, a dialled one is attached as it
 * connects, before any call is sent); the bound keeps it so if that changes.
 */
export const EARLY_MAX = 1 << 20;

/**
 * The one buffer every unaimed read of this process lands in. Shared: a
 * read's callback copies its bytes out before it returns, and reads are
 * delivered one at a time on this thread, so no two can overlap; an idle
 * connection then holds no read buffer at all.
 */
let scratch: Buffer | undefined;

/** `onread` options aiming reads at a decoder attached later, and the DirectReader that attaches it. */
function aimedReads(): { onread: net.OnReadOpts; reader: DirectReader; bind: (s: net.Socket) => void } {
  let sink: { decoder: RecordDecoder; chunk: (b: Buffer) => void; direct: (n: number) => void } | undefined;
  const early: Buffer[] = [];
  let earlyBytes = 0;
  let socket: net.Socket | undefined;
  let aimed = false;
  const onread: net.OnReadOpts = {
    buffer: () => {
      const d = sink?.decoder;
      const t = d?.directTarget();
      aimed = !!t;
      if (t) return t;
      scratch ??= Buffer.allocUnsafe(READ_CHUNK);
      // After a large record, read only the next one's first bytes unaimed: the rest of a large one is then
      // read straight into its fragment, not copied out of a 64 KiB chunk (twice: a fresh buffer, the fragment).
      return d?.lastLarge && !d.partial ? scratch.subarray(0, HEAD_READ) : scratch;
    },
    callback: (n: number) => {
      if (aimed) {
        sink!.direct(n);
        return true;
      }
      // At its size: a small record then costs a slice of Node's shared pool, not a 64 KiB allocation.
      const b = Buffer.allocUnsafe(n);
      scratch!.copy(b, 0, 0, n);
      if (sink) {
        sink.chunk(b);
        return true;
      }
      // Before attach: kept for it, up to EARLY_MAX.
      earlyBytes += n;
      if (earlyBytes > EARLY_MAX) {
        early.length = 0;
        socket?.destroy(new Error(`more than ${EARLY_MAX} bytes arrived before the connection's RPC decoder was attached`));
        return false;
      }
      early.push(b);
      return true;
    },
  };
  const reader: DirectReader = {
    attach(decoder, chunk, direct) {
      sink = { decoder, chunk, direct };
      for (const b of early.splice(0)) chunk(b);
      earlyBytes = 0;
    },
  };
  return { onread, reader, bind: (s) => (socket = s) };
}

/** A TCP connection whose reads can be aimed (an RPC client's upstream). */
export function directReadSocket(opts: net.TcpNetConnectOpts): net.Socket {
  const { onread, reader, bind } = aimedReads();
  const s = net.connect({ ...opts, onread });
  bind(s);
  (s as net.Socket & { [DIRECT_READER]?: DirectReader })[DIRECT_READER] = reader;
  return s;
}

/**
 * An accepted TCP connection with aimed reads: a new socket on the same
 * handle, built with `onread` (net.Server has no such option in Node 20, and
 * a socket takes it only when it is made). `s` must not have read yet
 * (accepted with pauseOnConnect). Uses net's private `_handle` and
 * `_server`: when they are not there, `s` is returned as it is (read the
 * ordinary way); when the new socket did not take the handle as expected,
 * neither socket can be trusted with it and both are destroyed (the
 * connection closes). The new socket starts paused: resume() it.
 */
export function directReadAccepted(s: net.Socket): net.Socket {
  const inner = s as net.Socket & { _handle?: unknown; _server?: unknown; server?: unknown };
  const handle = inner._handle;
  if (!handle || s.readableFlowing || s.bytesRead > 0 || !inner._server) return s;
  const { onread, reader, bind } = aimedReads();
  let n: net.Socket | undefined;
  try {
    n = new net.Socket({ handle, onread, pauseOnCreate: true, readable: true, writable: true } as net.SocketConstructorOpts);
  } catch {
    n = undefined;
  }
  if (!n || (n as typeof inner)._handle !== handle) {
    n?.destroy();
    s.destroy();
    return s;
  }
  const adopted = n as typeof inner;
  // The listener counts connections through the socket that ends them: hand that over too, and orphan the old object.
  adopted._server = inner._server;
  adopted.server = inner.server;
  inner._server = null;
  inner._handle = null;
  bind(n);
  (n as net.Socket & { [DIRECT_READER]?: DirectReader })[DIRECT_READER] = reader;
  return n;
}

/** The DirectReader of a stream made here, or undefined (read it as 'data' events). */
export function directReaderOf(s: Duplex): DirectReader | undefined {
  return (s as Duplex & { [DIRECT_READER]?: DirectReader })[DIRECT_READER];
}
