import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { MAX_MANIFEST_BYTES, ManifestError, parseManifest, sha256hex, type Manifest } from './manifest.js';

/**
 * Publisher keys and signed manifests.
 *
 * A publisher key is an Ed25519 key pair: the private key in a PEM (PKCS#8)
 * file readable by its owner only, the public key in `FILE.pub` as one line
 * `gvfs-publisher-ed25519 <base64 of the 32-byte key> [comment]`. Readers
 * (proxy servers, `gvfs image show --trust-publisher`) are given the public
 * key files they trust; a manifest is accepted only if signed by one.
 *
 * The object `images/NAME` is an envelope, JSON:
 *   { format: "gvfs-signed/1", publisher: <b64 public key>, signature: <b64>,
 *     manifest: <the manifest's JSON text> }
 * The signature covers SIGN_CONTEXT followed by the manifest text's UTF-8
 * bytes (a context string so a signature made for something else never
 * verifies as a manifest). The manifest names its image: an envelope stored
 * under another name is refused (no replaying image A as image B).
 * An image's identity is the SHA-256 of those bytes (its digest): file
 * handles derive from it, so every server that verifies the same manifest
 * issues the same handles.
 */
export const SIGN_CONTEXT = Buffer.from('gvfs-image-manifest/1\n');
export const PUB_TAG = 'gvfs-publisher-ed25519';
const ENVELOPE = 'gvfs-signed/1';
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export class SignatureError extends Error {
  override name = 'SignatureError';
}

export interface PublisherKey {
  privateKey: KeyObject;
  publicRaw: Buffer;
}

export function publicRawOf(k: KeyObject): Buffer {
  const der = k.export({ type: 'spki', format: 'der' });
  return Buffer.from(der.subarray(der.length - 32));
}

function publicKeyOf(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** Short name of a publisher key for listings: first 16 hex digits of its SHA-256. */
export function fingerprint(raw: Buffer): string {
  return sha256hex(raw).slice(0, 16);
}

export async function writePublisherKey(file: string, comment = ''): Promise<{ pubFile: string; fingerprint: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = publicRawOf(publicKey);
  await writeFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  const pubFile = `${file}.pub`;
  await writeFile(pubFile, `${PUB_TAG} ${raw.toString('base64')}${comment ? ` ${comment}` : ''}\n`, { mode: 0o644, flag: 'wx' });
  return { pubFile, fingerprint: fingerprint(raw) };
}

export async function readPublisherKey(file: string): Promise<PublisherKey> {
  const privateKey = createPrivateKey(await readFile(file));
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`${file}: not an Ed25519 private key`);
  return { privateKey, publicRaw: publicRawOf(createPublicKey(privateKey)) };
}

/** Raw public keys from `.pub` files (one key a line; blank and # lines ignored). */
export async function readTrustedKeys(files: string[]): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const f of files) {
    for (const line of (await readFile(f, 'utf8')).split('\n')) {
      const t = line.trim();
      if (!t || t.startsWith('#')) continue;
      const [tag, b64] = t.split(/\s+/);
      const raw = Buffer.from(b64 ?? '', 'base64');
      if (tag !== PUB_TAG || raw.length !== 32) throw new Error(`${f}: expected "${PUB_TAG} <base64 key>" lines`);
      out.push(raw);
    }
  }
  if (!out.length) throw new Error(`no publisher keys in ${files.join(', ')}`);
  return out;
}

export function signManifest(m: Manifest, key: PublisherKey): Buffer {
  const text = JSON.stringify(m);
  const signature = sign(null, Buffer.concat([SIGN_CONTEXT, Buffer.from(text)]), key.privateKey);
  return Buffer.from(JSON.stringify({ format: ENVELOPE, publisher: key.publicRaw.toString('base64'), signature: signature.toString('base64'), manifest: text }));
}

export interface VerifiedManifest {
  manifest: Manifest;
  /** SHA-256 of the manifest's bytes. */
  digest: Buffer;
  publisher: Buffer;
}

interface Envelope {
  format: string;
  publisher: string;
  signature: string;
  manifest: string;
}

function parseEnvelope(bytes: Buffer): Envelope {
  if (bytes.length > MAX_MANIFEST_BYTES + 4096) throw new SignatureError('signed manifest too large');
  let env: Envelope;
  try {
    env = JSON.parse(bytes.toString('utf8')) as Envelope;
  } catch {
    throw new SignatureError('signed manifest is not JSON');
  }
  if (typeof env !== 'object' || env === null || env.format !== ENVELOPE || typeof env.manifest !== 'string' || typeof env.signature !== 'string' || typeof env.publisher !== 'string') {
    throw new SignatureError('not a signed manifest (unsigned or unknown envelope)');
  }
  return env;
}

/**
 * Verify an envelope against the trusted keys, then parse the manifest.
 * `name`: the image name it was stored under (must match the manifest's).
 * Throws SignatureError for anything unsigned, signed by an untrusted key,
 * or altered; ManifestError for a signed but malformed manifest.
 */
export function verifySigned(bytes: Buffer, trusted: Buffer[], name: string): VerifiedManifest {
  const env = parseEnvelope(bytes);
  const publisher = strictBase64(env.publisher);
  if (publisher.length !== 32 || !trusted.some((t) => t.equals(publisher))) throw new SignatureError(`${name}: signed by an untrusted publisher (${publisher.length === 32 ? fingerprint(publisher) : 'malformed key'})`);
  const text = Buffer.from(env.manifest, 'utf8');
  const sig = strictBase64(env.signature);
  if (sig.length !== 64 || !verify(null, Buffer.concat([SIGN_CONTEXT, text]), publicKeyOf(publisher), sig)) throw new SignatureError(`${name}: bad signature (manifest altered or signed by another key)`);
  const manifest = parseManifest(text);
  if (manifest.name !== name) throw new SignatureError(`${name}: the signed manifest is for image "${manifest.name}"`);
  return { manifest, digest: Buffer.from(sha256hex(text), 'hex'), publisher };
}

/** Base64 that decodes to bytes which encode back to exactly it (no ignored padding bits: one envelope, one encoding). */
function strictBase64(s: string): Buffer {
  const b = Buffer.from(s, 'base64');
  if (b.toString('base64') !== s) throw new SignatureError('non-canonical base64 in the envelope');
  return b;
}

/** Parse without trust (gc must keep what every stored manifest names, trusted or not). */
export function readUnverified(bytes: Buffer): { manifest: Manifest; publisher: string } {
  const env = parseEnvelope(bytes);
  const manifest = parseManifest(Buffer.from(env.manifest, 'utf8'));
  return { manifest, publisher: fingerprint(Buffer.from(env.publisher, 'base64')) };
}

export { ManifestError };
