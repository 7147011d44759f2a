import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { installErrorHandler } from '../api/errors.js';
import { renderDashboard, renderLogin } from '../dashboard/dashboard.js';
import { CREATE_BODY, DELETE_QUERY, ERROR, GET_QUERY, ID_PARAMS, INVALIDATE_BODY, LIST_QUERY, PATCH_BODY, RENEW_BODY, SESSION } from './schemas.js';
import { ServiceError, type CreateRequest, type PatchRequest, type SessionService } from './service.js';
import type { User, Users } from './users.js';

declare module 'fastify' {
  interface FastifyRequest {
    user: User | null;
  }
}

interface Route {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  url: string;
  summary: string;
  schema?: { body?: object; params?: object; querystring?: object };
  status: number;
  response: object;
  handler: (req: Req, u: User) => Promise<unknown> | unknown;
}

const COOKIE = 'gvfs_token';
type Req = FastifyRequest<{ Params: { id: string }; Querystring: Record<string, string | undefined>; Body: unknown }>;

/**
 * The session service's HTTPS API, its OpenAPI document and its dashboard.
 * Every API call carries a user's bearer token (Authorization: Bearer …);
 * the dashboard also takes the token from an HttpOnly, SameSite=Strict
 * cookie set by its login form (the cookie authenticates only the
 * dashboard's pages, never the API, so a page elsewhere cannot act through
 * it). Users see and control only their own sessions (administrators: all).
 */
export function sessiondApp(svc: SessionService, users: () => Users, o: { cert: Buffer; key: Buffer }): FastifyInstance {
  const app = Fastify({
    https: { cert: o.cert, key: o.key, minVersion: 'TLSv1.3' },
    logger: false,
    bodyLimit: 256 << 10,
    ajv: { customOptions: { allErrors: true, coerceTypes: false, removeAdditional: false } },
  });
  installErrorHandler(app, (e) => (e instanceof ServiceError ? { status: e.status, code: e.code } : undefined));
  app.decorateRequest('user', null);
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 8192 }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  const bearer = (req: FastifyRequest): string | undefined => {
    const h = req.headers.authorization;
    const m = h ? /^Bearer\s+(\S+)$/i.exec(h) : null;
    return m?.[1];
  };
  const cookie = (req: FastifyRequest): string | undefined => {
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const [k, ...v] = part.trim().split('=');
      if (k === COOKIE) return decodeURIComponent(v.join('='));
    }
    return undefined;
  };
  const unauthorized = (reply: FastifyReply, message: string) =>
    reply.code(401).header('www-authenticate', 'Bearer realm="gvfs"').send({ statusCode: 401, error: 'Unauthorized', code: 'UNAUTHORIZED', message });

  const routes: Route[] = [
    { method: 'POST', url: '/sessions', summary: 'Create a session: proxy servers on the state/data hosts, then the mounts on the compute host; answers once the mounts are usable', schema: { body: CREATE_BODY }, status: 201, response: SESSION, handler: (req, u) => svc.create(u, req.body as CreateRequest) },
    { method: 'GET', url: '/sessions', summary: "The caller's sessions (administrators: ?all=true for everyone's)", schema: { querystring: LIST_QUERY }, status: 200, response: { type: 'object', properties: { sessions: { type: 'array', items: SESSION } } }, handler: (req, u) => ({ sessions: svc.list(u, { all: req.query.all === 'true', ended: req.query.ended === 'true' }) }) },
    { method: 'GET', url: '/sessions/:id', summary: 'A session: state, hosts, mounts, time left, live cache statistics', schema: { params: ID_PARAMS, querystring: GET_QUERY }, status: 200, response: SESSION, handler: (req, u) => svc.get(u, req.params.id, req.query.stats !== 'false') },
    { method: 'POST', url: '/sessions/:id/renew', summary: 'Extend the lifetime (from now)', schema: { params: ID_PARAMS, body: RENEW_BODY }, status: 200, response: SESSION, handler: (req, u) => svc.renew(u, req.params.id, (req.body as { lifetime?: number } | undefined)?.lifetime) },
    { method: 'PATCH', url: '/sessions/:id', summary: 'Change the policies that can change live (cache write mode, attribute timeout, consistency model, poll period)', schema: { params: ID_PARAMS, body: PATCH_BODY }, status: 200, response: SESSION, handler: (req, u) => svc.patch(u, req.params.id, req.body as PatchRequest) },
    {
      method: 'POST',
      url: '/sessions/:id/invalidate',
      summary: "Order the session's caches to drop what they hold of a path (or everything) and ask the server again (write-back data is kept)",
      schema: { params: ID_PARAMS, body: INVALIDATE_BODY },
      status: 200,
      response: { type: 'object', properties: { mounts: { type: 'array', items: { type: 'object', properties: { mountpoint: { type: ['string', 'null'] }, export: { type: 'string' }, invalidated: { type: 'integer' } } } } } },
      handler: (req, u) => svc.invalidate(u, req.params.id, (req.body as { mountpoint?: string; path?: string } | undefined) ?? {}),
    },
    { method: 'POST', url: '/sessions/:id/flush', summary: "Order the session's caches to deliver their write-back data now", schema: { params: ID_PARAMS }, status: 200, response: { type: 'object' }, handler: (req, u) => svc.flush(u, req.params.id) },
    { method: 'DELETE', url: '/sessions/:id', summary: 'Destroy: flush write-back data, unmount, stop the proxies, forget the key (idempotent)', schema: { params: ID_PARAMS, querystring: DELETE_QUERY }, status: 200, response: SESSION, handler: (req, u) => svc.destroy(u, req.params.id, { discard: req.query.discard === 'true' }) },
    { method: 'GET', url: '/hosts', summary: 'The hosts (agents) and whether they answer', status: 200, response: { type: 'object' }, handler: async () => ({ hosts: await svc.health() }) },
    { method: 'GET', url: '/whoami', summary: 'The caller', status: 200, response: { type: 'object' }, handler: (_req, u) => ({ user: u.name, admin: u.admin, accounts: u.accounts }) },
  ];

  app.addHook('onRequest', async (req, reply) => {
    const url = req.url.split('?')[0];
    if (url === '/openapi.json' || url === '/' || url === '/dashboard/login' || url === '/dashboard/logout') return;
    const dashboardPage = req.method === 'GET' && url === '/dashboard';
    const token = bearer(req) ?? (dashboardPage ? cookie(req) : undefined);
    if (!token) {
      if (dashboardPage) return reply.redirect('/dashboard/login', 303);
      return unauthorized(reply, 'a bearer token is required (Authorization: Bearer TOKEN)');
    }
    const u = users().authenticate(token);
    if (!u) {
      if (dashboardPage) return reply.redirect('/dashboard/login?failed=1', 303);
      return unauthorized(reply, 'unknown token');
    }
    req.user = u;
  });

  for (const r of routes) {
    app.route({
      method: r.method,
      url: r.url,
      schema: r.schema,
      handler: async (req, reply) => {
        const out = await r.handler(req as Req, req.user!);
        reply.code(r.status);
        return out;
      },
    });
  }

  app.get('/openapi.json', async () => openApi(routes));
  app.get('/', async (_req, reply) => reply.redirect('/dashboard', 302));
  app.get<{ Querystring: { refresh?: string } }>('/dashboard', async (req, reply) => {
    const u = req.user!;
    const refresh = req.query.refresh !== undefined && /^\d{1,4}$/.test(req.query.refresh) ? Number(req.query.refresh) : 5;
    const sessions = svc.list(u, { all: u.admin });
    const withStats = await Promise.all(sessions.map(async (s) => (s.state === 'ready' || s.state === 'destroying' ? { ...s, ...(await svc.get(u, s.id, true).catch(() => ({}))) } : s)));
    reply.type('text/html; charset=utf-8').header('cache-control', 'no-store');
    // Ended and failed sessions, newest first (the 50 most recent): what went wrong stays visible.
    const ended = svc
      .list(u, { all: u.admin, ended: true })
      .filter((s) => s.state === 'destroyed' || s.state === 'failed')
      .sort((a, b) => String(b.endedAt ?? b.createdAt).localeCompare(String(a.endedAt ?? a.createdAt)))
      .slice(0, 50);
    return renderDashboard({ user: u.name, admin: u.admin, sessions: withStats, ended, hosts: await svc.health(), now: new Date(), refresh });
  });
  app.get<{ Querystring: { failed?: string } }>('/dashboard/login', async (req, reply) => {
    reply.type('text/html; charset=utf-8').header('cache-control', 'no-store');
    if (req.query.failed) reply.code(401);
    return renderLogin(!!req.query.failed);
  });
  app.post<{ Body: { token?: string } }>('/dashboard/login', async (req, reply) => {
    const token = (req.body && typeof req.body === 'object' && typeof req.body.token === 'string' ? req.body.token : '').trim();
    if (!token || !users().authenticate(token)) return reply.redirect('/dashboard/login?failed=1', 303);
    reply.header('set-cookie', `${COOKIE}=${encodeURIComponent(token)}; Path=/dashboard; HttpOnly; Secure; SameSite=Strict; Max-Age=43200`);
    return reply.redirect('/dashboard', 303);
  });
  app.post('/dashboard/logout', async (_req, reply) => {
    reply.header('set-cookie', `${COOKIE}=; Path=/dashboard; HttpOnly; Secure; SameSite=Strict; Max-Age=0`);
    return reply.redirect('/dashboard/login', 303);
  });
  return app;
}

/** OpenAPI 3.1 document of the user API, from the route table and its schemas. */
function openApi(routes: Route[]): object {
  const paths: Record<string, any> = {};
  for (const r of routes) {
    const p = r.url.replace(/:(\w+)/g, '{$1}');
    const params: any[] = [];
    const sp = r.schema?.params as any;
    for (const [name, schema] of Object.entries<any>(sp?.properties ?? {})) params.push({ name, in: 'path', required: true, schema });
    const sq = r.schema?.querystring as any;
    for (const [name, schema] of Object.entries<any>(sq?.properties ?? {})) params.push({ name, in: 'query', required: false, schema, description: schema.description });
    (paths[p] ??= {})[r.method.toLowerCase()] = {
      summary: r.summary,
      security: [{ bearer: [] }],
      ...(params.length ? { parameters: params } : {}),
      ...(r.schema?.body ? { requestBody: { required: r.method === 'POST' && r.url === '/sessions', content: { 'application/json': { schema: r.schema.body } } } } : {}),
      responses: {
        [r.status]: { description: 'OK', content: { 'application/json': { schema: r.response } } },
        '400': { description: 'invalid request (one entry per violation in details)', content: { 'application/json': { schema: ERROR } } },
        '401': { description: 'no or unknown bearer token', content: { 'application/json': { schema: ERROR } } },
        '403': { description: 'not allowed for this user', content: { 'application/json': { schema: ERROR } } },
        '404': { description: 'no such session (or not yours)', content: { 'application/json': { schema: ERROR } } },
        '409': { description: 'the session is not in a state for this', content: { 'application/json': { schema: ERROR } } },
        '502': { description: 'a host (agent) failed or could not be reached; what was started is rolled back', content: { 'application/json': { schema: ERROR } } },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'GVFS session service', version: '1.0.0', description: 'Create, tailor, renew and tear down GVFS sessions across state, data and compute hosts.' },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths,
  };
}
