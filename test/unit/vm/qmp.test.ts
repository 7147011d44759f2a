import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { QmpClient, QmpClosedError, QmpDecoder, QmpError, type QmpMessage } from '../../../src/vm/qmp.js';

test('QmpDecoder: messages split anywhere, fed one byte at a time, blank lines ignored', { timeout: 60_000 }, () => {
  const out: QmpMessage[] = [];
  const d = new QmpDecoder((m) => out.push(m));
  const wire = Buffer.from('{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22}, "package": ""}, "capabilities": []}}\r\n\n{"return": {}, "id": 1}\n{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\n');
  for (let i = 0; i < wire.length; i++) d.push(wire.subarray(i, i + 1));
  assert.equal(out.length, 3);
  assert.equal(out[0].QMP!.version.qemu.minor, 2);
  assert.deepEqual(out[1], { return: {}, id: 1 });
  assert.equal(out[2].event, 'STOP');
});

test('QmpDecoder: a line longer than the limit is an error, not an allocation', { timeout: 60_000 }, () => {
  const d = new QmpDecoder(() => undefined, 1024);
  assert.throws(() => {
    for (let i = 0; i < 10; i++) d.push(Buffer.alloc(200, 0x61));
  }, /longer than 1024/);
});

/** A QMP server speaking like QEMU: greeting, capabilities, replies by id, an event, errors. */
async function fakeQemu(onCommand: (cmd: { execute: string; arguments?: any; id: number }, write: (m: object) => void) => void) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-qmp-'));
  const sock = path.join(dir, 'qmp.sock');
  const conns = new Set<net.Socket>();
  const server = net.createServer((c) => {
    conns.add(c);
    const write = (m: object) => c.write(JSON.stringify(m) + '\r\n');
    write({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: '' }, capabilities: ['oob'] } });
    const d = new QmpDecoder((m) => onCommand(m as any, write));
    c.on('data', (b) => d.push(b));
  });
  await new Promise<void>((r) => server.listen(sock, r));
  return {
    sock,
    async close() {
      for (const c of conns) c.destroy();
      await new Promise((r) => server.close(r));
      await fs.rm(dir, { recursive: true, force: true });
    },
    drop() {
      for (const c of conns) c.destroy();
    },
  };
}

test('QmpClient: negotiates, matches replies by id (out of order), maps errors to QmpError, emits events', { timeout: 60_000 }, async () => {
  let held: (() => void) | undefined;
  const q = await fakeQemu((cmd, write) => {
    if (cmd.execute === 'qmp_capabilities') write({ return: {}, id: cmd.id });
    else if (cmd.execute === 'slow') held = () => write({ return: 'slow-done', id: cmd.id });
    else if (cmd.execute === 'fast') {
      write({ event: 'MIGRATION', data: { status: 'completed' }, timestamp: { seconds: 0, microseconds: 0 } });
      write({ return: 'fast-done', id: cmd.id });
      held?.();
    } else write({ error: { class: 'CommandNotFound', desc: `The command ${cmd.execute} has not been found` }, id: cmd.id });
  });
  try {
    const c = await QmpClient.connect(q.sock);
    assert.equal(c.version, '7.2.22');
    const ev = c.waitEvent('MIGRATION', 5_000, (d: { status: string }) => d.status === 'completed');
    const slow = c.execute('slow');
    assert.equal(await c.execute('fast'), 'fast-done');
    assert.equal(await slow, 'slow-done');
    assert.deepEqual(await ev, { status: 'completed' });
    const err = await c.execute('nonsense').catch((e) => e);
    assert.ok(err instanceof QmpError);
    assert.equal(err.errorClass, 'CommandNotFound');
    assert.match(err.message, /QEMU refused nonsense: The command nonsense has not been found/);
    c.close();
  } finally {
    await q.close();
  }
});

test('QmpClient: pending commands reject when QEMU goes away', { timeout: 60_000 }, async () => {
  const q = await fakeQemu((cmd, write) => {
    if (cmd.execute === 'qmp_capabilities') write({ return: {}, id: cmd.id });
  });
  try {
    const c = await QmpClient.connect(q.sock);
    const p = c.execute('query-migrate');
    q.drop();
    await assert.rejects(p, QmpClosedError);
    await assert.rejects(c.execute('cont'), QmpClosedError);
  } finally {
    await q.close();
  }
});
