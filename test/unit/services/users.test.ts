import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { addUser, parseAccount, Users } from '../../../src/services/sessiond/users.js';

test('users file: tokens are stored hashed, authenticate their user only, and the file is owner-only', { timeout: 60_000 }, async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-users-'));
  try {
    const file = path.join(dir, 'users.json');
    const a = await addUser(file, 'alice', [parseAccount('2001:2001:2001,3000')], false);
    const b = await addUser(file, 'bob', [], true);
    assert.match(a, /^gvfs_[A-Za-z0-9_-]{43}$/);
    const text = await fs.readFile(file, 'utf8');
    assert.ok(!text.includes(a) && !text.includes(b), 'tokens are not stored');
    assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
    const u = await Users.load(file);
    assert.equal(u.authenticate(a)?.name, 'alice');
    assert.deepEqual(u.authenticate(a)?.accounts, [{ uid: 2001, gid: 2001, gids: [2001, 3000] }]);
    assert.equal(u.authenticate(b)?.admin, true);
    assert.equal(u.authenticate(a + 'x'), undefined);
    assert.equal(u.authenticate(''), undefined);
    // A new token for alice replaces the old one.
    const a2 = await addUser(file, 'alice', [], false);
    const u2 = await Users.load(file);
    assert.equal(u2.authenticate(a), undefined);
    assert.equal(u2.authenticate(a2)?.name, 'alice');
    await fs.chmod(file, 0o644);
    await assert.rejects(Users.load(file), /accessible by others/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('users file: malformed entries are refused with the place named', { timeout: 60_000 }, () => {
  assert.throws(() => Users.fromJson({ users: { 'a b': { tokenSha256: '0'.repeat(64) } } }), /bad user name "a b"/);
  assert.throws(() => Users.fromJson({ users: { alice: { tokenSha256: 'xyz' } } }), /user alice: tokenSha256 must be 64 hex digits/);
  assert.throws(() => Users.fromJson({ users: { alice: { tokenSha256: '0'.repeat(64), accounts: ['root'] } } }), /expected UID:GID/);
  assert.throws(() => Users.fromJson({}), /expected \{"users"/);
});
