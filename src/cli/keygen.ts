import { Command } from 'commander';
import { newSessionKey, writeKeyFile } from '../channel/session-key.js';
import { makeSelfSignedCert } from '../channel/tls.js';
import { parseIntArg } from './util.js';

export function keygenCommand(): Command {
  return new Command('keygen')
    .description('Write a new session key (random 256-bit key and id) to FILE, readable by its owner only')
    .argument('<file>', 'where to write the key (must not exist)')
    .requiredOption('--user <identity>', 'grid identity of the session')
    .option('--lifetime <seconds>', 'the key expires this long from now', parseIntArg)
    .option('--account <uid:gid[:groups]>', "the session's local account on the server (else the server's --map decides)")
    .option('--json', 'print the session id as JSON')
    .action(async (file: string, o) => {
      let account;
      if (o.account) {
        const m = /^(\d+):(\d+)(?::(\d+(?:,\d+)*))?$/.exec(o.account);
        if (!m) throw new Error(`--account: expected UID:GID[:G1,G2], got "${o.account}"`);
        account = { uid: Number(m[1]), gid: Number(m[2]), gids: m[3] ? m[3].split(',').map(Number) : [] };
      }
      const k = newSessionKey(o.user, o.lifetime, account);
      await writeKeyFile(file, k);
      if (o.json) console.log(JSON.stringify({ file, id: k.id, user: k.user, expires: k.expires?.toISOString() ?? null }));
      else console.log(`session ${k.id} for ${k.user} written to ${file}${k.expires ? ` (expires ${k.expires.toISOString()})` : ''}`);
    });
}

export function tlsKeygenCommand(): Command {
  return new Command('tls-keygen')
    .description('Make a self-signed TLS certificate and key for a proxy server in DIR; prints the fingerprint to pin')
    .argument('<dir>', 'directory for cert.pem and key.pem')
    .option('--json', 'print paths and fingerprint as JSON')
    .action(async (dir: string, o) => {
      const r = await makeSelfSignedCert(dir);
      if (o.json) console.log(JSON.stringify(r));
      else console.log(`certificate ${r.cert}\nkey ${r.key}\nfingerprint ${r.fingerprint}`);
    });
}
