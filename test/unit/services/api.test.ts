import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { makeSelfSignedCert } from '../../../src/channel/tls.js';
import { sessiondApp } from '../../../src/services/sessiond/routes.js';
import { SessionService } from '../../../src/services/sessiond/service.js';
import { addUser, Users } from '../../../src/services/sessiond/users.js';

/** The user API's validation, without any host: requests are refused before an agent would be asked. */
describe('session service API: validation errors', { timeout: 60_000 }, () => {
  let dir: string;
  let svc: SessionService;
  let app: FastifyInstance;
  let token: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-sessiond-unit-'));
    const tls = await makeSelfSignedCert(path.join(dir, 'tls'));
    const cert = await fs.readFile(tls.cert);
    const key = await fs.readFile(tls.key);
    token = await addUser(path.join(dir, 'users.json'), 'alice', [{ uid: 2001, gid: 2001, gids: [] }], false);
    const users = await Users.load(path.join(dir, 'users.json'));
    // Hosts whose agents are nowhere (port 9 on loopback): never reached by these requests.
    svc = await SessionService.open({ stateDir: path.join(dir, 'state'), cert, key, agents: ['state', 'data', 'compute'].map((name) => ({ name, url: 'https://127.0.0.1:9', fingerprint: tls.fingerprint })), maxLifetime: 86400 });
    app = sessiondApp(svc, () => users, { cert, key });
    await app.ready();
  });
  after(async () => {
    await app.close();
    svc.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  const post = (body: unknown) => app.inject({ method: 'POST', url: '/sessions', headers: { authorization: `Bearer ${token}` }, payload: body as object });
  const good = () => ({ compute: 'compute', exports: [{ role: 'data', host: 'data', path: '/srv/alice', mountpoint: '/mnt/a' }], lifetime: 60 });

  test('each violation is named by its place in the request', async () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [{ exports: good().exports }, 'body', /must have required property 'compute'/],
      [{ ...good(), lifetime: '60' }, 'body/lifetime', /must be integer/],
      [{ ...good(), lifetime: 0 }, 'body/lifetime', /must be >= 1/],
      [{ ...good(), exports: [] }, 'body/exports', /must NOT have fewer than 1 items/],
      [{ ...good(), exports: [{ ...good().exports[0], role: 'scratch' }] }, 'body/exports/0/role', /must be equal to one of the allowed values/],
      [{ ...good(), exports: [{ ...good().exports[0], mountpoint: 'relative' }] }, 'body/exports/0/mountpoint', /must match pattern/],
      [{ ...good(), cache: { mode: 'write-back', size: 10 } }, 'body/cache/size', /must be >= 1048576/],
      [{ ...good(), cache: { mode: 'write-back', blockSize: 3000 } }, 'body/cache/blockSize', /allowed values/],
      [{ ...good(), channel: 'ftp' }, 'body/channel', /allowed values/],
      [{ ...good(), colour: 'blue' }, 'body', /must NOT have additional properties/],
    ];
    for (const [body, where, what] of cases) {
      const r = await post(body);
      assert.equal(r.statusCode, 400, JSON.stringify(body));
      const j = r.json();
      assert.equal(j.code, 'VALIDATION');
      assert.ok(j.details.some((d: any) => d.path === where && what.test(d.message)), `${JSON.stringify(body)} → ${JSON.stringify(j.details)}`);
    }
    // Several violations at once are all reported.
    const many = (await post({ compute: 5, exports: 'x' })).json();
    assert.deepEqual(many.details.map((d: any) => d.path).sort(), ['body/compute', 'body/exports']);
  });

  test('requests that pass the schema but not the service are refused precisely, before any host is asked', async () => {
    const cases: Array<[any, number, string, RegExp]> = [
      [{ ...good(), compute: 'nowhere' }, 400, 'UNKNOWN_HOST', /compute: no host named "nowhere" \(known: state, data, compute\)/],
      [{ ...good(), exports: [{ ...good().exports[0], host: 'nowhere' }] }, 400, 'UNKNOWN_HOST', /exports\[0\]\.host/],
      [{ ...good(), exports: [good().exports[0], { ...good().exports[0], name: '/other' }] }, 400, 'DUPLICATE_MOUNTPOINT', /exports\[1\]\.mountpoint: \/mnt\/a is used twice/],
      [{ ...good(), exports: [good().exports[0], { ...good().exports[0], mountpoint: '/mnt/a/b', name: '/b' }] }, 400, 'NESTED_MOUNTPOINT', /nested/],
      [{ ...good(), lifetime: 86401 }, 400, 'LIFETIME_TOO_LONG', /at most 86400 s/],
      [{ ...good(), account: { uid: 0, gid: 0 } }, 403, 'ACCOUNT_NOT_ALLOWED', /not one of alice's \(2001:2001\)/],
      [{ ...good(), user: 'bob' }, 403, 'FORBIDDEN', /you are alice/],
    ];
    for (const [body, status, code, what] of cases) {
      const r = await post(body);
      assert.equal(r.statusCode, status, JSON.stringify(r.json()));
      assert.equal(r.json().code, code);
      assert.match(r.json().message, what);
    }
    assert.deepEqual(svc.store.list({ ended: true }), [], 'no session was recorded');
  });

  test('ids, renew and patch bodies are checked too', async () => {
    const auth = { authorization: `Bearer ${token}` };
    const bad = await app.inject({ method: 'GET', url: '/sessions/../../etc', headers: auth });
    assert.equal(bad.statusCode, 404);
    const badId = await app.inject({ method: 'GET', url: '/sessions/not-an-id', headers: auth });
    assert.equal(badId.statusCode, 400);
    assert.equal(badId.json().details[0].path, 'params/id');
    const renew = await app.inject({ method: 'POST', url: '/sessions/s-0123456789abcdef/renew', headers: auth, payload: { lifetime: -5 } });
    assert.equal(renew.statusCode, 400);
    assert.equal(renew.json().details[0].path, 'body/lifetime');
    const patch = await app.inject({ method: 'PATCH', url: '/sessions/s-0123456789abcdef', headers: auth, payload: {} });
    assert.equal(patch.statusCode, 400);
    assert.match(patch.json().message, /must NOT have fewer than 1 properties/);
    const missing = await app.inject({ method: 'DELETE', url: '/sessions/s-0123456789abcdef', headers: auth });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().code, 'NOT_FOUND');
  });

  test('the dashboard asks for a token; a wrong one is refused, a right one sets an HttpOnly cookie', async () => {
    const page = await app.inject({ method: 'GET', url: '/dashboard' });
    assert.equal(page.statusCode, 303);
    assert.equal(page.headers.location, '/dashboard/login');
    const wrong = await app.inject({ method: 'POST', url: '/dashboard/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'token=nope' });
    assert.equal(wrong.headers.location, '/dashboard/login?failed=1');
    const right = await app.inject({ method: 'POST', url: '/dashboard/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${encodeURIComponent(token)}` });
    assert.equal(right.statusCode, 303);
    assert.match(String(right.headers['set-cookie']), /^gvfs_token=.*; Path=\/dashboard; HttpOnly; Secure; SameSite=Strict/);
    const cookie = String(right.headers['set-cookie']).split(';')[0];
    const html = await app.inject({ method: 'GET', url: '/dashboard', headers: { cookie } });
    assert.equal(html.statusCode, 200);
    assert.match(html.body, /No sessions\./);
    // The cookie is no key to the API.
    assert.equal((await app.inject({ method: 'GET', url: '/sessions', headers: { cookie } })).statusCode, 401);
  });
});
