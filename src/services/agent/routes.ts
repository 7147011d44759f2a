import Fastify, { type FastifyInstance } from 'fastify';
import { normalizeFingerprint } from '../../channel/tls.js';
import { installErrorHandler } from '../api/errors.js';
import { peerFingerprint } from '../api/https.js';
import type { ComponentSpec, MountPatch } from '../api/types.js';
import { AgentError, type Agent } from './agent.js';

export const ID = { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } as const;
const NAME = { type: 'string', pattern: '^[a-z0-9-]{1,64}$' } as const;
const ACCOUNT = {
  type: 'object',
  additionalProperties: false,
  required: ['uid', 'gid'],
  properties: { uid: { type: 'integer', minimum: 0, maximum: 4294967295 }, gid: { type: 'integer', minimum: 0, maximum: 4294967295 }, gids: { type: 'array', maxItems: 16, items: { type: 'integer', minimum: 0, maximum: 4294967295 } } },
} as const;
const KEY = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'key', 'user'],
  properties: { id: { type: 'string', pattern: '^[0-9a-f]{32}$' }, key: { type: 'string', minLength: 44, maxLength: 44 }, user: { type: 'string', minLength: 1, maxLength: 256 }, account: ACCOUNT },
} as const;
export const EXPORT_NAME = { type: 'string', pattern: '^/[A-Za-z0-9._/-]{0,255}$' } as const;

const PROXY_SERVER = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'key', 'exports', 'channel'],
  properties: {
    kind: { const: 'proxy-server' },
    key: KEY,
    exports: {
      type: 'array',
      minItems: 1,
      maxItems: 32,
      items: { type: 'object', additionalProperties: false, required: ['name'], properties: { dir: { type: 'string', minLength: 1, maxLength: 4096 }, upstream: { type: 'string', pattern: '^nfs://' }, name: EXPORT_NAME, readOnly: { type: 'boolean' } } },
    },
    channel: { enum: ['tls', 'ssh'] },
  },
} as const;

export const CACHE = {
  type: 'object',
  additionalProperties: false,
  required: ['mode'],
  properties: {
    mode: { enum: ['write-back', 'write-through', 'none'] },
    size: { type: 'integer', minimum: 1048576 },
    shared: { type: 'boolean' },
    blockSize: { enum: [4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304] },
    dirtyMaxAge: { type: 'number', minimum: 0, maximum: 86400 },
  },
} as const;

/** A publisher public key line (image/signature.ts): "gvfs-publisher-ed25519 <base64 of 32 bytes>". */
const PUBLISHER_KEY = { type: 'string', pattern: '^gvfs-publisher-ed25519 [A-Za-z0-9+/]{43}=$' } as const;

const MOUNT = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'key', 'server', 'channel', 'export', 'cache', 'attrTimeout'],
  properties: {
    kind: { enum: ['mount', 'proxy-client'] },
    key: KEY,
    server: { type: 'object', additionalProperties: false, required: ['host', 'port'], properties: { host: { type: 'string', minLength: 1, maxLength: 255 }, port: { type: 'integer', minimum: 1, maximum: 65535 } } },
    channel: {
      oneOf: [
        { type: 'object', additionalProperties: false, required: ['kind', 'fingerprint'], properties: { kind: { const: 'tls' }, fingerprint: { type: 'string', minLength: 64, maxLength: 110 } } },
        { type: 'object', additionalProperties: false, required: ['kind', 'url'], properties: { kind: { const: 'ssh' }, url: { type: 'string', pattern: '^ssh://' } } },
      ],
    },
    export: EXPORT_NAME,
    mountpoint: { type: 'string', pattern: '^/', maxLength: 4096 },
    cache: CACHE,
    cacheId: { type: 'string', minLength: 1, maxLength: 512 },
    attrTimeout: { type: 'number', minimum: 0, maximum: 3600 },
    consistency: { enum: ['ttl', 'poll', 'callback'] },
    pollPeriod: { type: 'number', minimum: 0.05, maximum: 3600 },
    trustPublishers: { type: 'array', minItems: 1, maxItems: 16, items: PUBLISHER_KEY },
  },
} as const;

export const AGENT_API_VERSION = 1;
/** Query flags (no type coercion anywhere: a body's "60" is not 60). */
export const BOOL = { enum: ['true', 'false', '1', '0'] } as const;

/**
 * The agent's HTTPS API. Mutual TLS: a request is served only when the
 * client presented a certificate whose fingerprint is one of the agent's
 * controllers (its session service); anyone else gets 401 before routing.
 *
 *   GET    /v1/health
 *   GET    /v1/sessions                           sessions with something here
 *   GET    /v1/sessions/:session?stats=true       components (+ live cache counters)
 *   PUT    /v1/sessions/:session/components/:name start a proxy server, mount or proxy client (idempotent)
 *   PATCH  /v1/sessions/:session/components/:name change a mount's live policies
 *   POST   /v1/sessions/:session/flush            deliver write-back data
 *   DELETE /v1/sessions/:session?discard=false    flush, unmount, stop, forget the key (idempotent)
 */
export function agentApp(agent: Agent, o: { cert: Buffer; key: Buffer; controllers: string[] }): FastifyInstance {
  const allowed = new Set(o.controllers.map(normalizeFingerprint));
  const app = Fastify({
    https: { cert: o.cert, key: o.key, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' },
    logger: false,
    bodyLimit: 1 << 20,
    ajv: { customOptions: { allErrors: true, removeAdditional: false, coerceTypes: false } },
  });
  installErrorHandler(app, (e) => (e instanceof AgentError ? { status: e.status, code: e.code } : undefined));
  app.addHook('onRequest', async (req, reply) => {
    const fp = peerFingerprint(req.raw.socket);
    if (!fp || !allowed.has(fp)) {
      return reply.code(401).send({ statusCode: 401, error: 'Unauthorized', code: 'NOT_CONTROLLER', message: fp ? 'this client certificate may not give orders to this agent' : 'a client certificate is required' });
    }
  });

  app.get('/v1/health', async () => ({ name: agent.cfg.name, api: AGENT_API_VERSION, fingerprint: agent.cfg.fingerprint, ssh: agent.cfg.sshUrl ?? null, sessions: agent.list().length }));
  app.get('/v1/sessions', async () => ({ sessions: agent.list() }));
  app.get<{ Params: { session: string }; Querystring: { stats?: string } }>(
    '/v1/sessions/:session',
    { schema: { params: { type: 'object', properties: { session: ID } }, querystring: { type: 'object', properties: { stats: BOOL } } } },
    async (req) => ({ session: req.params.session, components: await agent.session(req.params.session, req.query.stats === 'true' || req.query.stats === '1') }),
  );
  app.put<{ Params: { session: string; name: string }; Body: ComponentSpec }>(
    '/v1/sessions/:session/components/:name',
    { schema: { params: { type: 'object', properties: { session: ID, name: NAME } }, body: { oneOf: [PROXY_SERVER, MOUNT] } } },
    async (req) => agent.ensure(req.params.session, req.params.name, req.body),
  );
  app.patch<{ Params: { session: string; name: string }; Body: MountPatch }>(
    '/v1/sessions/:session/components/:name',
    {
      schema: {
        params: { type: 'object', properties: { session: ID, name: NAME } },
        body: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: {
            cacheMode: { enum: ['write-back', 'write-through'] },
            attrTimeout: { type: 'number', minimum: 0, maximum: 3600 },
            consistency: { enum: ['ttl', 'poll', 'callback'] },
            pollPeriod: { type: 'number', minimum: 0.05, maximum: 3600 },
          },
        },
      },
    },
    async (req) => agent.reconfigure(req.params.session, req.params.name, req.body),
  );
  app.post<{ Params: { session: string; name: string }; Body: { path?: string } }>(
    '/v1/sessions/:session/components/:name/invalidate',
    {
      schema: {
        params: { type: 'object', properties: { session: ID, name: NAME } },
        body: { type: 'object', additionalProperties: false, properties: { path: { type: 'string', maxLength: 4096, description: 'relative to the mounted export (absent: everything)' } } },
      },
    },
    async (req) => ({ invalidated: await agent.invalidate(req.params.session, req.params.name, req.body?.path) }),
  );
  app.post<{ Params: { session: string } }>('/v1/sessions/:session/flush', { schema: { params: { type: 'object', properties: { session: ID } } } }, async (req) => ({ flushed: await agent.flush(req.params.session) }));
  app.delete<{ Params: { session: string }; Querystring: { discard?: string } }>(
    '/v1/sessions/:session',
    { schema: { params: { type: 'object', properties: { session: ID } }, querystring: { type: 'object', properties: { discard: BOOL } } } },
    async (req) => agent.stopSession(req.params.session, { discard: req.query.discard === 'true' || req.query.discard === '1' }),
  );
  return app;
}
