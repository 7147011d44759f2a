/**
 * What the session service asks of an agent (the agent's API bodies), shared
 * by both sides. JSON schemas for them are in agent/routes.ts.
 */
export interface Account {
  uid: number;
  gid: number;
  gids: number[];
}

/** A session key as sent to agents (base64 key), written there owner-only. */
export interface KeyDoc {
  id: string;
  key: string;
  user: string;
  account?: Account;
}

export interface ProxyServerSpec {
  kind: 'proxy-server';
  key: KeyDoc;
  /** A directory on this host, or an NFSv3 server it reaches (nfs://...), each served as `name`. */
  /** `readOnly`: the proxy server refuses every change through it (NFS3ERR_ROFS). */
  exports: Array<{ dir?: string; upstream?: string; name: string; readOnly?: boolean }>;
  channel: 'tls' | 'ssh';
}

export interface CachePolicy {
  mode: 'write-back' | 'write-through' | 'none';
  /** Bytes of disk. */
  size?: number;
  /** The host's shared (golden) cache directory instead of one of the session's own. */
  shared?: boolean;
  blockSize?: number;
  /** Longest a write-back write stays unflushed (seconds). */
  dirtyMaxAge?: number;
}

/**
 * A proxy client on the compute host: `mount` serves it as a FUSE mount at
 * `mountpoint`; `proxy-client` as an NFSv3 + MOUNT endpoint on loopback for
 * unmodified NFS clients (libnfs, a VMM's nfs:// driver).
 */
export interface MountSpec {
  kind: 'mount' | 'proxy-client';
  key: KeyDoc;
  /** The proxy server (for ssh: as its SSH server sees it). */
  server: { host: string; port: number };
  channel: { kind: 'tls'; fingerprint: string } | { kind: 'ssh'; url: string };
  export: string;
  /** kind mount only. */
  mountpoint?: string;
  cache: CachePolicy;
  /** Identifies the export for a shared cache (blocks shared by sessions of the same export). */
  cacheId?: string;
  /** Attribute timeout (seconds): how long a change made elsewhere takes to show. */
  attrTimeout: number;
  /** Consistency model of the cache (default ttl; poll and callback need a cache): README "Consistency". */
  consistency?: 'ttl' | 'poll' | 'callback';
  /** The poll model's period (seconds). */
  pollPeriod?: number;
  /**
   * Read store images by chunk hash, verified against these publisher keys
   * (lines "gvfs-publisher-ed25519 BASE64", as in a .pub file); the agent's
   * own site tier (gvfs agent --site-cache) is asked first.
   */
  trustPublishers?: string[];
}

export type ComponentSpec = ProxyServerSpec | MountSpec;

/** The live policies of a mount that PATCH may change. */
export interface MountPatch {
  cacheMode?: 'write-back' | 'write-through';
  attrTimeout?: number;
  consistency?: 'ttl' | 'poll' | 'callback';
  pollPeriod?: number;
}

export interface ComponentView {
  session: string;
  name: string;
  kind: 'proxy-server' | 'mount' | 'proxy-client';
  state: string;
  pid: number | null;
  alive: boolean;
  port: number | null;
  restarts: number;
  /** proxy-server: where (for ssh: as its SSH server sees it) and how mounts reach it; proxy-client: where NFS clients connect. */
  address?: string;
  channel?: { kind: 'tls'; fingerprint: string } | { kind: 'ssh'; url: string };
  mountpoint?: string;
  cache?: Record<string, any> | null;
  cacheError?: string;
  /** state failed: why it was not restarted. */
  error?: string;
  /** Where the process serves /metrics, /healthz and /readyz (loopback, a port picked at start; unauthenticated: scrape on the host). */
  metrics?: { address: string; port: number };
}
