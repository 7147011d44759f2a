/**
 * The proxy server refused this client: wrong session key, wrong TLS pin,
 * expired session, SSH host key. In a module of its own so the exit-code
 * table (loaded by every gvfs command) does not load the proxy client and,
 * through it, ssh2 (its 16 MiB WebAssembly heap) into `gvfs serve`.
 */
export class LinkRefusedError extends Error {
  override name = 'LinkRefusedError';
}
