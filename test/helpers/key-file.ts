import path from 'node:path';
import { newSessionKey, writeKeyFile, type SessionKey } from '../../src/channel/session-key.js';

/** A session key for `user` mapped to uid/gid 0 (the test runs as root), written owner-only to dir/name. */
export async function keyFile(dir: string, name: string, user = 'alice', k: SessionKey = newSessionKey(user, undefined, { uid: 0, gid: 0, gids: [] })): Promise<{ file: string; key: SessionKey }> {
  const file = path.join(dir, name);
  await writeKeyFile(file, k);
  return { file, key: k };
}
