/** Thrown by the reader when input ends early or breaks an XDR rule; the RPC layer maps it to GARBAGE_ARGS. */
export class XdrError extends Error {
  override name = 'XdrError';
}
