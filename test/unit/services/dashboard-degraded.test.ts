import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderDashboard } from '../../../src/services/dashboard/dashboard.js';

const session = (over: Record<string, unknown> = {}) => ({
  id: 's-0123456789abcdef',
  user: 'alice',
  state: 'ready',
  timeLeft: 60,
  compute: 'compute',
  hosts: ['state', 'compute'],
  exports: [],
  ...over,
});

const hosts = (down: string[]) => ['state', 'data', 'compute'].map((name, i) => ({ name, url: `https://127.0.0.1:${i + 1}`, up: !down.includes(name), error: down.includes(name) ? 'connect ECONNREFUSED' : undefined }));

test('dashboard: a live session with a host down is degraded, naming the host; others are not', { timeout: 60_000 }, () => {
  const html = renderDashboard({
    user: 'admin',
    admin: true,
    sessions: [session(), session({ id: 's-other', hosts: ['data', 'compute'] })],
    hosts: hosts(['state']),
    now: new Date(0),
    refresh: 0,
  });
  assert.match(html, /<tr data-session="s-0123456789abcdef" data-degraded="true">/);
  assert.match(html, /degraded: state down/);
  assert.match(html, /<tr data-session="s-other">/, 'a session on hosts that are up is not degraded');
  const healthy = renderDashboard({ user: 'admin', admin: true, sessions: [session()], hosts: hosts([]), now: new Date(0), refresh: 0 });
  assert.doesNotMatch(healthy, /data-degraded|degraded: /);
});

test('dashboard: ended and failed sessions are listed with why', { timeout: 60_000 }, () => {
  const html = renderDashboard({
    user: 'alice',
    admin: false,
    sessions: [],
    ended: [
      session({ id: 's-failed', state: 'failed', reason: 'creation failed', error: 'host data: agent unreachable', endedAt: '2026-01-02T00:00:00.000Z', pending: ['data'] }),
      session({ id: 's-gone', state: 'destroyed', reason: 'lifetime expired', endedAt: '2026-01-01T00:00:00.000Z' }),
    ],
    hosts: hosts(['data']),
    now: new Date(0),
    refresh: 0,
  });
  assert.equal(html.match(/<tr data-ended=/g)?.length, 2);
  assert.match(html, /Ended and failed sessions \(2\)/);
  assert.match(html, /host data: agent unreachable/);
  assert.match(html, /lifetime expired/);
  assert.doesNotMatch(html, /data-degraded|degraded: /, 'an ended session is not degraded');
  assert.match(renderDashboard({ user: 'a', admin: false, sessions: [], ended: [], hosts: [], now: new Date(0) }), /id="ended">None\./);
});
