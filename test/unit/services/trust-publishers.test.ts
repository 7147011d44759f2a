import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { makeSelfSignedCert } from '../../../src/channel/tls.js';
import { Agent } from '../../../src/services/agent/agent.js';
import type { MountSpec } from '../../../src/services/api/types.js';
import { sessiondApp } from '../../../src/services/sessiond/routes.js';
import { SessionService } from '../../../src/services/sessiond/service.js';
import { addUser, Users } from '../../../src/services/sessiond/users.js';

const PUB = `gvfs-publisher-ed25519 ${Buffer.alloc(32, 5).toString('base64')}`;

/** The session spec's trustPublishers: checked by the session service, turned into proxy-client flags by the agent. */
describe('session spec: trustPublishers (store images by chunk hash)', { timeout: 60_000 }, () => {
  const cleanup: Array<() => Promise<unknown> | void> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('the session service refuses anything but publisher key lines', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-trustpub-'));
    cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
    const tls = await makeSelfSignedCert(path.join(dir, 'tls'));
    const cert = await fs.readFile(tls.cert);
    const key = await fs.readFile(tls.key);
    const token = await addUser(path.join(dir, 'users.json'), 'alice', [{ uid: 2001, gid: 2001, gids: [] }], false);
    const users = await Users.load(path.join(dir, 'users.json'));
    const svc = await SessionService.open({ stateDir: path.join(dir, 'state'), cert, key, agents: ['data', 'compute'].map((name) => ({ name, url: 'https://127.0.0.1:9', fingerprint: tls.fingerprint })), maxLifetime: 86400 });
    const app = sessiondApp(svc, () => users, { cert, key });
    await app.ready();
    cleanup.push(() => svc.close());
    cleanup.push(() => app.close());
    const good = { compute: 'compute', exports: [{ role: 'data', host: 'data', path: '/srv/a', mountpoint: '/mnt/a' }], lifetime: 60 };
    for (const bad of [[], ['--trust-publisher /etc/passwd'], [`${PUB} extra`], ['gvfs-publisher-ed25519 AAAA'], PUB]) {
      const r = await app.inject({ method: 'POST', url: '/sessions', headers: { authorization: `Bearer ${token}` }, payload: { ...good, trustPublishers: bad } });
      assert.equal(r.statusCode, 400, JSON.stringify(bad));
      assert.ok(r.json().details.some((d: any) => String(d.path).startsWith('body/trustPublishers')), JSON.stringify(r.json().details));
    }
  });

  test("the agent passes the keys as a file and its own site tier's flags to the mount", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-trustpub-agent-'));
    cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
    const a = await Agent.open({ name: 'compute', stateDir: dir, certFile: 'c', keyFile: 'k', fingerprint: 'f', exportRoots: [], mountRoots: [], proxyHost: '127.0.0.1', siteCache: '10.1.0.5:7480', siteKey: '/etc/gvfs/site.key', siteCa: '/etc/gvfs/tier.pem', monitorMs: 3_600_000 });
    cleanup.push(() => a.close());
    const spec: MountSpec = { kind: 'proxy-client', key: { id: 'x', key: '', user: 'alice' } as MountSpec['key'], server: { host: '127.0.0.1', port: 1 }, channel: { kind: 'tls', fingerprint: 'f'.repeat(64) }, export: '/', cache: { mode: 'write-back' }, attrTimeout: 1 };
    const args = (s: MountSpec): string[] => (a as unknown as { args(...x: unknown[]): string[] }).args('s-1', 'm0', s, 0, []);
    const without = args(spec);
    assert.ok(!without.includes('--trust-publisher') && !without.includes('--site-cache'), 'no keys: no chunk reader, no tier');
    const withKeys = args({ ...spec, trustPublishers: [PUB] });
    const at = withKeys.indexOf('--trust-publisher');
    assert.ok(at > 0 && withKeys[at + 1].endsWith('m0-publishers.pub'));
    assert.deepEqual(withKeys.slice(withKeys.indexOf('--site-cache'), withKeys.indexOf('--site-cache') + 6), ['--site-cache', '10.1.0.5:7480', '--site-key', '/etc/gvfs/site.key', '--site-ca', '/etc/gvfs/tier.pem']);
  });
});
