import { CACHE, EXPORT_NAME } from '../agent/routes.js';

/**
 * JSON schemas of the user API: fastify validates requests with them (no
 * type coercion, unknown properties refused) and the OpenAPI document is
 * built from the same objects.
 */
export const SESSION_ID = { type: 'string', pattern: '^s-[0-9a-f]{16}$', description: 'session id' } as const;

const ACCOUNT = {
  type: 'object',
  additionalProperties: false,
  required: ['uid', 'gid'],
  description: "the session's local account on the servers (one the user may use)",
  properties: {
    uid: { type: 'integer', minimum: 0, maximum: 4294967295 },
    gid: { type: 'integer', minimum: 0, maximum: 4294967295 },
    gids: { type: 'array', maxItems: 16, items: { type: 'integer', minimum: 0, maximum: 4294967295 } },
  },
} as const;

const CACHE_POLICY = {
  ...CACHE,
  description: 'cache policy: write-back, write-through or none; size in bytes; shared: the compute host\'s shared (golden) cache; dirtyMaxAge in seconds',
} as const;

const CONSISTENCY = {
  enum: ['ttl', 'poll', 'callback'],
  description: "how a change made elsewhere reaches the session's caches: ttl (trusted for attrTimeout), poll (trusted until the proxy server's change log lists it, asked every pollPeriod; needs a cache) or callback (trusted while the proxy server's delegation is held; a conflicting call of another session recalls it; needs a cache); README Consistency",
} as const;
const POLL_PERIOD = { type: 'number', minimum: 0.05, maximum: 3600, description: 'poll model: seconds between two asks of the change log (a change shows within it)' } as const;

export const CREATE_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['compute', 'exports'],
  properties: {
    user: { type: 'string', minLength: 1, maxLength: 64, description: "the session's user (must be the caller; default the caller)" },
    compute: { type: 'string', minLength: 1, maxLength: 64, description: 'the compute host (its agent name) where the mounts are made' },
    exports: {
      type: 'array',
      minItems: 1,
      maxItems: 16,
      description: 'what to mount: a directory (or nfs:// export) on a state or data host, and where on the compute host',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['role', 'host', 'path'],
        properties: {
          role: { enum: ['state', 'data'] },
          host: { type: 'string', minLength: 1, maxLength: 64, description: 'the state or data host (its agent name)' },
          path: { type: 'string', pattern: '^(/|nfs://)', maxLength: 4096, description: 'absolute directory on that host, or nfs://HOST[:PORT]/PATH of an NFSv3 server it reaches' },
          name: { ...EXPORT_NAME, description: 'export name on the proxy server (default /state, /data)' },
          access: { enum: ['mount', 'nfs'], description: 'mount: a FUSE mount at mountpoint (default); nfs: an NFSv3 endpoint on the compute host\'s loopback for unmodified NFS clients (libnfs, a VMM\'s nfs:// driver)' },
          mountpoint: { type: 'string', pattern: '^/', maxLength: 4096, description: 'absolute path on the compute host (access mount)' },
          cache: CACHE_POLICY,
          readOnly: { type: 'boolean', description: 'serve this export read-only: the proxy server refuses every change through it (NFS3ERR_ROFS; e.g. golden VMs)' },
        },
      },
    },
    account: ACCOUNT,
    cache: CACHE_POLICY,
    attrTimeout: { type: 'number', minimum: 0, maximum: 3600, description: 'attribute-cache consistency: seconds a change made elsewhere may take to show (0: always ask)' },
    consistency: CONSISTENCY,
    pollPeriod: POLL_PERIOD,
    channel: { enum: ['tls', 'ssh'], description: 'private channel between compute and servers (default tls)' },
    lifetime: { type: 'integer', minimum: 1, description: 'seconds until the session is torn down (default 3600)' },
    trustPublishers: {
      type: 'array',
      minItems: 1,
      maxItems: 16,
      items: { type: 'string', pattern: '^gvfs-publisher-ed25519 [A-Za-z0-9+/]{43}=$' },
      description: "publisher public keys (lines of a gvfs image keygen .pub file) the compute host trusts: its mounts read store images by chunk hash, verified, asking the host's site tier first (gvfs agent --site-cache)",
    },
  },
} as const;

export const RENEW_BODY = {
  type: 'object',
  additionalProperties: false,
  properties: { lifetime: { type: 'integer', minimum: 1, description: 'new lifetime from now (default: the current lifetime)' } },
} as const;

export const PATCH_BODY = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  description: 'policies that change while the session runs (others need a new session)',
  properties: {
    mountpoint: { type: 'string', pattern: '^/', description: 'change only this mount (default all)' },
    cache: { type: 'object', additionalProperties: false, required: ['mode'], properties: { mode: { enum: ['write-back', 'write-through'] } } },
    attrTimeout: { type: 'number', minimum: 0, maximum: 3600, description: "the cache's attribute timeout (the kernel's stays as mounted)" },
    consistency: CONSISTENCY,
    pollPeriod: POLL_PERIOD,
  },
} as const;

export const INVALIDATE_BODY = {
  type: 'object',
  additionalProperties: false,
  description: "an order: the caches drop what they hold (of one path, or everything) and ask the server again; write-back data is kept",
  properties: {
    mountpoint: { type: 'string', pattern: '^/', description: 'only this mount (default all)' },
    path: { type: 'string', maxLength: 4096, description: 'relative to the mounted export (default: everything)' },
  },
} as const;

export const ID_PARAMS = { type: 'object', required: ['id'], properties: { id: SESSION_ID } } as const;

export const LIST_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { all: { enum: ['true', 'false'], description: 'administrators: every user\'s sessions' }, ended: { enum: ['true', 'false'], description: 'include destroyed and failed sessions' } },
} as const;

export const DELETE_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { discard: { enum: ['true', 'false'], description: 'drop, with the owner\'s consent, write-back data the server refuses (default: keep it and stay destroying)' } },
} as const;

export const GET_QUERY = { type: 'object', additionalProperties: false, properties: { stats: { enum: ['true', 'false'] } } } as const;

const MOUNT_STATS = {
  type: 'object',
  properties: {
    mountpoint: { type: 'string' },
    endpoint: { type: 'string' },
    mode: { type: 'string' },
    consistency: { type: 'string' },
    polls: { type: 'integer', description: 'poll model: change-log calls made' },
    alive: { type: 'boolean' },
    restarts: { type: 'integer' },
    readBytes: { type: 'integer' },
    hitBytes: { type: 'integer' },
    missBytes: { type: 'integer' },
    hitRatio: { type: ['number', 'null'] },
    zeroBytes: { type: 'integer' },
    bytesFetched: { type: 'integer' },
    bytesFromCache: { type: 'integer' },
    bytesFlushed: { type: 'integer' },
    bytesMoved: { type: 'integer' },
    dirtyBytes: { type: 'integer' },
    flushBacklogBytes: { type: 'integer' },
  },
} as const;

export const SESSION = {
  type: 'object',
  properties: {
    id: SESSION_ID,
    user: { type: 'string' },
    state: { enum: ['creating', 'ready', 'destroying', 'destroyed', 'failed'] },
    createdAt: { type: 'string', format: 'date-time' },
    expiresAt: { type: 'string', format: 'date-time' },
    timeLeft: { type: 'integer', description: 'seconds' },
    lifetime: { type: 'integer' },
    compute: { type: 'string' },
    channel: { type: 'string' },
    account: ACCOUNT,
    cache: CACHE_POLICY,
    attrTimeout: { type: 'number' },
    consistency: { type: 'string' },
    pollPeriod: { type: 'number' },
    exports: CREATE_BODY.properties.exports,
    mounts: { type: 'array', items: { type: 'string' } },
    endpoints: {
      type: 'array',
      description: 'NFSv3 endpoints of the exports with access nfs (on the compute host)',
      items: { type: 'object', properties: { export: { type: 'string' }, host: { type: 'string' }, address: { type: 'string' }, port: { type: 'integer' }, url: { type: 'string' } } },
    },
    hosts: { type: 'array', items: { type: 'string' } },
    pending: { type: 'array', items: { type: 'string' }, description: 'hosts a teardown or rollback still has to reach' },
    endedAt: { type: 'string', format: 'date-time' },
    reason: { type: 'string' },
    error: { type: 'string' },
    stats: { type: ['object', 'null'], properties: { mounts: { type: 'array', items: MOUNT_STATS }, totals: { type: 'object' } } },
  },
} as const;

export const ERROR = {
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string' },
    code: { type: 'string' },
    message: { type: 'string' },
    details: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' }, params: { type: 'object' } } } },
  },
} as const;
