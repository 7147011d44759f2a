import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeSelfSignedCert } from '../../../src/channel/tls.js';
import { request } from '../../../src/services/api/https.js';
import { fuseSkip } from '../fuse/mount-helper.js';
import { addUser } from '../../../src/services/sessiond/users.js';
import { aliceRequest, BOB_ACCOUNT, gvfs, makeExports, startCluster, until, type Cluster } from '../../helpers/services.js';

describe('access: tokens, users and the agents\' controller', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let c: Cluster;
  let s: any;
  before(async () => {
    c = await startCluster();
    await makeExports(c);
    s = (await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'auth'))).body;
    assert.equal(s.state, 'ready', JSON.stringify(s));
  });
  after(async () => {
    await c?.stop();
  });

  test('every API call needs a known bearer token', async () => {
    for (const [method, p] of [['GET', '/sessions'], ['GET', `/sessions/${s.id}`], ['POST', '/sessions'], ['DELETE', `/sessions/${s.id}`], ['POST', `/sessions/${s.id}/renew`], ['PATCH', `/sessions/${s.id}`], ['GET', '/hosts']] as const) {
      const none = await c.api(undefined, method, p, method === 'GET' || method === 'DELETE' ? undefined : {});
      assert.equal(none.status, 401, `${method} ${p} without a token`);
      assert.equal(none.body.code, 'UNAUTHORIZED');
      const wrong = await c.api('gvfs_not-a-token', method, p, method === 'GET' || method === 'DELETE' ? undefined : {});
      assert.equal(wrong.status, 401, `${method} ${p} with an unknown token`);
    }
    assert.equal((await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body.state, 'ready');
    // The OpenAPI document is public (it describes, it does not act).
    const doc = await c.api(undefined, 'GET', '/openapi.json');
    assert.equal(doc.status, 200);
    assert.equal(doc.body.openapi, '3.1.0');
    for (const p of ['/sessions', '/sessions/{id}', '/sessions/{id}/renew']) assert.ok(doc.body.paths[p], p);
    assert.deepEqual(Object.keys(doc.body.paths['/sessions/{id}']).sort(), ['delete', 'get', 'patch']);
    assert.equal(doc.body.paths['/sessions'].post.requestBody.content['application/json'].schema.required.join(), 'compute,exports');
  });

  test("a user sees and controls only their own sessions", async () => {
    const bob = c.tokens.bob;
    assert.deepEqual((await c.api(bob, 'GET', '/sessions')).body.sessions, []);
    assert.deepEqual((await c.api(bob, 'GET', '/sessions?ended=true')).body.sessions, []);
    for (const [method, p, body] of [['GET', `/sessions/${s.id}`, undefined], ['DELETE', `/sessions/${s.id}`, undefined], ['POST', `/sessions/${s.id}/renew`, {}], ['PATCH', `/sessions/${s.id}`, { attrTimeout: 2 }]] as const) {
      const r = await c.api(bob, method, p, body);
      assert.equal(r.status, 404, `${method} ${p} as bob: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.message, `no session ${s.id}`);
    }
    // Bob's attempts changed nothing.
    const still = (await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body;
    assert.equal(still.state, 'ready');
    assert.equal(still.expiresAt, s.expiresAt);
    // All is only for administrators; bob asking gets his own (none).
    assert.deepEqual((await c.api(bob, 'GET', '/sessions?all=true')).body.sessions, []);
    assert.deepEqual((await c.api(c.tokens.admin, 'GET', '/sessions?all=true')).body.sessions.map((x: any) => x.id), [s.id]);
    // Through the command line too.
    await assert.rejects(gvfs(['session', 'show', s.id], c.env('bob')), /no session/);
  });

  test('no sessions for someone else, and no account that is not yours', async () => {
    const other = await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'x', { user: 'bob' }));
    assert.equal(other.status, 403);
    assert.equal(other.body.code, 'FORBIDDEN');
    const acct = await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'x', { account: { uid: BOB_ACCOUNT.uid, gid: BOB_ACCOUNT.gid } }));
    assert.equal(acct.status, 403);
    assert.equal(acct.body.code, 'ACCOUNT_NOT_ALLOWED');
    const root = await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'x', { account: { uid: 0, gid: 0 } }));
    assert.equal(root.status, 403);
    // Nothing was started for any of them.
    assert.equal((await c.api(c.tokens.alice, 'GET', '/sessions?ended=true')).body.sessions.length, 1);
  });

  test('a user added to the users file while the service runs can sign in; a new token replaces the old one', async () => {
    const carol = await addUser(c.usersFile, 'carol', [{ uid: 2003, gid: 2003, gids: [] }], false);
    await until('the service to read the users file again', async () => (await c.api(carol, 'GET', '/whoami')).status === 200);
    assert.deepEqual((await c.api(carol, 'GET', '/whoami')).body, { user: 'carol', admin: false, accounts: [{ uid: 2003, gid: 2003, gids: [] }] });
    const carol2 = await addUser(c.usersFile, 'carol', [{ uid: 2003, gid: 2003, gids: [] }], false);
    await until('the old token to stop working', async () => (await c.api(carol, 'GET', '/whoami')).status === 401);
    assert.equal((await c.api(carol2, 'GET', '/whoami')).status, 200);
  });

  test('agents take orders only from their session service', async () => {
    const a = c.agents.compute.info;
    const anonymous = await request({ url: a.url, fingerprint: a.fingerprint }, 'GET', '/v1/sessions');
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.code, 'NOT_CONTROLLER');
    const mallory = await makeSelfSignedCert(path.join(c.base, 'mallory'), 'gvfs-sessiond');
    const stranger = await request({ url: a.url, fingerprint: a.fingerprint, cert: await fs.readFile(mallory.cert), key: await fs.readFile(mallory.key) }, 'DELETE', `/v1/sessions/${s.id}`);
    assert.equal(stranger.status, 401);
    assert.match(stranger.body.message, /may not give orders/);
    // The session is untouched; its service can still talk to the agent.
    assert.equal((await c.agentApi('compute', 'GET', `/v1/sessions/${s.id}`)).body.components.length, 2);
    // Orders from the service are validated too, precisely.
    const bad = await c.agentApi('compute', 'PUT', `/v1/sessions/${s.id}/components/m9`, { kind: 'mount', mountpoint: 'relative' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'VALIDATION');
    const badName = await c.agentApi('compute', 'PUT', `/v1/sessions/${s.id}/components/NOT_OK`, {});
    assert.equal(badName.status, 400);
    assert.ok(badName.body.details.some((d: any) => d.path === 'params/name'), JSON.stringify(badName.body));
    // A client pinning another certificate never sends its request (or token).
    await assert.rejects(request({ url: c.url, fingerprint: mallory.fingerprint, token: c.tokens.alice }, 'GET', '/sessions'), /not the pinned/);
  });
});
