import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bytes, duration, renderDashboard } from '../../../src/services/dashboard/dashboard.js';

const session = (over: Record<string, unknown> = {}) => ({
  id: 's-0123456789abcdef',
  user: 'alice',
  state: 'ready',
  timeLeft: 3725,
  compute: 'compute',
  hosts: ['state', 'compute'],
  cache: { mode: 'write-back' },
  exports: [{ role: 'state', host: 'state', path: '/srv/vm', mountpoint: '/mnt/vm' }],
  stats: { totals: { hitRatio: 0.25, bytesMoved: 3 * 1024 * 1024, dirtyBytes: 1536 } },
  ...over,
});

test('dashboard: one row per session with its figures; what users wrote is escaped', { timeout: 60_000 }, () => {
  const html = renderDashboard({
    user: 'admin',
    admin: true,
    sessions: [session(), session({ id: 's-fedcba9876543210', user: '<b>eve</b>', exports: [{ role: 'data', host: 'data', path: '/x', mountpoint: '/mnt/<script>alert(1)</script>' }], state: 'destroying', stats: undefined })],
    hosts: [{ name: 'state', url: 'https://127.0.0.1:1', up: true, sessions: 2 }, { name: 'compute', url: 'https://127.0.0.1:2', up: false, error: 'connect ECONNREFUSED' }],
    now: new Date(0),
    refresh: 0,
  });
  assert.equal(html.match(/<tr data-session=/g)?.length, 2);
  assert.match(html, /25%/);
  assert.match(html, /3\.0 MiB/);
  assert.match(html, /1\.5 KiB/);
  assert.match(html, /1 h 2 min/);
  assert.ok(!html.includes('<script>alert(1)</script>') && html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
  assert.ok(!html.includes('<b>eve</b>'));
  assert.ok(!html.includes('http-equiv="refresh"'), 'refresh=0: no reloads');
  assert.match(html, /class="down">down</);
  assert.match(html, /connect ECONNREFUSED/);
});

test('dashboard: sizes and durations read as people write them', { timeout: 60_000 }, () => {
  assert.equal(bytes(0), '0 B');
  assert.equal(bytes(1023), '1023 B');
  assert.equal(bytes(10 * 1024 ** 3), '10.0 GiB');
  assert.equal(bytes(undefined), '–');
  assert.equal(duration(0), '0 s');
  assert.equal(duration(59), '59 s');
  assert.equal(duration(61), '1 min 1 s');
  assert.equal(duration(90061), '1 d 1 h');
});
