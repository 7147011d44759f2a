/**
 * What a peer that is not speaking ONC RPC record marking is speaking,
 * recognised from the first bytes it sends: a TLS record (a TLS server's
 * alert, or a client's ClientHello) or an SSH identification banner. Used
 * to name a channel mismatch (a plain client at a TLS server, a client at
 * an SSH server) at once instead of retrying until a call's deadline.
 *
 * An RPC record mark cannot be confused with either: our peers send the
 * last-fragment bit (first byte >= 0x80), TLS records start with a content
 * type 0x14..0x17 and version major 3, SSH with the ASCII "SSH-".
 */
export type ForeignProtocol = 'tls' | 'ssh';

export function foreignProtocolOf(first: Buffer): ForeignProtocol | undefined {
  if (first.length >= 2 && first[0] >= 0x14 && first[0] <= 0x17 && first[1] === 0x03) return 'tls';
  if (first.length >= 4 && first.toString('latin1', 0, 4) === 'SSH-') return 'ssh';
  return undefined;
}

export const FOREIGN_PROTOCOL_NAME: Record<ForeignProtocol, string> = {
  tls: 'TLS (a proxy server started with --tls-cert: connect with --tls-fingerprint)',
  ssh: 'SSH (an OpenSSH server, not a proxy server: tunnel through it with --via ssh://USER@HOST:PORT)',
};
