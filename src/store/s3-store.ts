import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';
import { checkKey, StoreError, type ObjectInfo, type ObjectStore } from './store.js';

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix inside the bucket ('' or ending without a slash). */
  prefix: string;
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
}

/**
 * S3 through the AWS SDK v3. Settings that radosgw (Ceph 16) needs:
 * path-style addressing (no wildcard DNS on a test endpoint), and
 * checksums only WHEN_REQUIRED (the SDK's default CRC32 trailers since
 * 3.729 are not understood by older gateways). Our own integrity check is
 * the SHA-256 of every chunk anyway. Credentials: the options, else the
 * SDK's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles).
 */
export class S3Store implements ObjectStore {
  readonly url: string;
  private readonly c: S3Client;
  constructor(private readonly o: S3StoreOptions) {
    this.url = `s3://${o.bucket}/${o.prefix}`;
    // The SDK warns on Node < 22 (from 2027); GVFS targets Node 20 on purpose and logs JSON on stderr.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.c = new S3Client({
      endpoint: o.endpoint,
      region: o.region ?? process.env.AWS_REGION ?? 'us-east-1',
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      credentials: o.accessKeyId && o.secretAccessKey ? { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey } : undefined,
      maxAttempts: 4,
    });
  }

  private k(key: string): string {
    checkKey(key);
    return this.o.prefix ? `${this.o.prefix}/${key}` : key;
  }

  /** Create the bucket if it does not exist (tests, first push). */
  async ensureBucket(): Promise<void> {
    try {
      await this.c.send(new CreateBucketCommand({ Bucket: this.o.bucket }));
    } catch (e) {
      const n = (e as Error).name;
      if (n !== 'BucketAlreadyOwnedByYou' && n !== 'BucketAlreadyExists') throw mapErr(e, this.o.bucket);
    }
  }

  async get(key: string): Promise<Buffer> {
    try {
      const r = await this.c.send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.k(key) }));
      return Buffer.from(await r.Body!.transformToByteArray());
    } catch (e) {
      throw mapErr(e, key);
    }
  }

  async head(key: string): Promise<ObjectInfo> {
    try {
      const r = await this.c.send(new HeadObjectCommand({ Bucket: this.o.bucket, Key: this.k(key) }));
      return { key, size: r.ContentLength ?? 0, mtime: r.LastModified ?? new Date(0) };
    } catch (e) {
      throw mapErr(e, key);
    }
  }

  async put(key: string, data: Buffer, opts: { ifAbsent?: boolean } = {}): Promise<void> {
    try {
      await this.c.send(new PutObjectCommand({ Bucket: this.o.bucket, Key: this.k(key), Body: data, ContentLength: data.length, IfNoneMatch: opts.ifAbsent ? '*' : undefined }));
    } catch (e) {
      throw mapErr(e, key);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const full = this.o.prefix ? `${this.o.prefix}/${prefix}` : prefix;
    const strip = this.o.prefix ? this.o.prefix.length + 1 : 0;
    let token: string | undefined;
    do {
      let r;
      try {
        r = await this.c.send(new ListObjectsV2Command({ Bucket: this.o.bucket, Prefix: full, ContinuationToken: token, MaxKeys: 1000 }));
      } catch (e) {
        throw mapErr(e, prefix);
      }
      for (const o of r.Contents ?? []) yield { key: o.Key!.slice(strip), size: o.Size ?? 0, mtime: o.LastModified ?? new Date(0) };
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    try {
      await this.c.send(new DeleteObjectCommand({ Bucket: this.o.bucket, Key: this.k(key) }));
    } catch (e) {
      throw mapErr(e, key);
    }
  }

  async close(): Promise<void> {
    this.c.destroy();
  }
}

function mapErr(e: unknown, key: string): Error {
  const err = e as Error & { $metadata?: { httpStatusCode?: number } };
  const status = err.$metadata?.httpStatusCode;
  if (status === 404 || err.name === 'NoSuchKey' || err.name === 'NotFound') return new StoreError('NOT_FOUND', `${key}: no such object`);
  if (status === 412 || err.name === 'PreconditionFailed') return new StoreError('EXISTS', `${key}: exists`);
  return new StoreError('IO', `${key}: ${err.name}: ${err.message}${status ? ` (HTTP ${status})` : ''}`);
}
