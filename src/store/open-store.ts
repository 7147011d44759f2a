import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileStore } from './file-store.js';
import { S3Store } from './s3-store.js';
import type { ObjectStore } from './store.js';

export interface StoreLocation {
  /** The store root: s3://BUCKET[/PREFIX] or file:///DIR */
  root: string;
  /** The image name when the URL names one (its last segment). */
  name?: string;
}

/**
 * Split an image URL into store root and image name: the last segment is
 * the name (s3://BUCKET/PREFIX/NAME, file:///DIR/NAME). `withName` false:
 * the whole URL is the store root.
 */
export function parseImageUrl(url: string, withName: boolean): StoreLocation {
  const m = /^(s3:\/\/[^/]+|file:\/\/)(\/?.*)$/.exec(url);
  if (!m) throw new Error(`${url}: expected s3://BUCKET[/PREFIX]${withName ? '/NAME' : ''} or file:///DIR${withName ? '/NAME' : ''}`);
  const rest = m[2].replace(/\/+$/, '');
  if (!withName) return { root: m[1] + rest };
  const i = rest.lastIndexOf('/');
  const name = rest.slice(i + 1);
  if (!name || !/^[A-Za-z0-9._-]+$/.test(name) || name === '.' || name === '..') throw new Error(`${url}: the last segment must be an image name ([A-Za-z0-9._-]+)`);
  const root = m[1] + rest.slice(0, Math.max(i, 0));
  return { root, name };
}

export interface OpenStoreOptions {
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
}

/** Open the store at a root URL. S3 credentials: options, else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (the SDK's chain). */
export function openStore(root: string, o: OpenStoreOptions = {}): ObjectStore {
  if (root.startsWith('file://')) {
    const dir = fileURLToPath(root.length > 'file://'.length ? root : 'file:///');
    if (!path.isAbsolute(dir)) throw new Error(`${root}: give an absolute path (file:///DIR)`);
    return new FileStore(dir);
  }
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(root);
  if (!m) throw new Error(`${root}: expected s3://BUCKET[/PREFIX] (bucket: 3-63 of a-z 0-9 . -)`);
  return new S3Store({
    bucket: m[1],
    prefix: (m[2] ?? '').replace(/\/+$/, ''),
    endpoint: o.endpoint ?? process.env.AWS_ENDPOINT_URL,
    region: o.region,
    accessKeyId: o.accessKeyId ?? process.env.AWS_ACCESS_KEY_ID,
    secretAccessKey: o.secretAccessKey ?? process.env.AWS_SECRET_ACCESS_KEY,
  });
}
