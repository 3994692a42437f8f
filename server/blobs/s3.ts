/**
 * The scale-out blob store: any S3-compatible service (AWS S3, R2, MinIO, …) through
 * `Bun.S3Client`. Holders get absolute presigned URLs and talk to the bucket directly; only the
 * server holds the credentials. An S3 PUT replaces an object all at once (multipart uploads too,
 * on completion), so readers never see a partial blob.
 */
import { S3Client } from "bun";
import { CattyError } from "../../src/protocol/errors.ts";
import { assertValidKey, assertValidPrefix } from "./keys.ts";
import type { BlobInfo, BlobStore } from "./types.ts";

export interface S3BlobStoreOptions {
  bucket: string;
  /** e.g. `https://<account>.r2.cloudflarestorage.com`; AWS when unset. */
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  /** Folder inside the bucket holding every key (`catty/`); the bucket root when unset. */
  prefix?: string;
  /** Keys asked for per list request; S3's maximum and default is 1000. */
  listPageSize?: number;
}

export interface S3BlobStore extends BlobStore {
  readonly kind: "s3";
  readonly bucket: string;
}

export function createS3BlobStore(opts: S3BlobStoreOptions): S3BlobStore {
  const root = normalizePrefix(opts.prefix);
  const pageSize = opts.listPageSize ?? 1000;
  const client = new S3Client(
    definedOnly({
      bucket: opts.bucket,
      endpoint: opts.endpoint,
      region: opts.region,
      accessKeyId: opts.accessKeyId,
      secretAccessKey: opts.secretAccessKey,
      sessionToken: opts.sessionToken,
    }),
  );
  const objectKey = (key: string): string => {
    assertValidKey(key);
    return root + key;
  };
  const presign = async (key: string, method: "GET" | "PUT", expiresInSec: number): Promise<string> => {
    const name = objectKey(key);
    if (!Number.isFinite(expiresInSec) || expiresInSec <= 0) {
      throw new CattyError("bad_request", `A presigned URL must expire in a positive number of seconds, not ${expiresInSec}.`);
    }
    return client.presign(name, { method, expiresIn: Math.ceil(expiresInSec) });
  };

  return {
    kind: "s3",
    bucket: opts.bucket,
    async put(key, body) {
      const name = objectKey(key);
      if (body instanceof ReadableStream) {
        // Bun streams a Response body as a multipart upload and aborts it if the stream fails;
        // a `writer()` ended with an error would complete the upload with what it had.
        await client.write(name, new Response(body));
        return;
      }
      await client.write(name, body);
    },
    async get(key) {
      return openOrNull(client.file(objectKey(key)).stream());
    },
    async getBytes(key) {
      try {
        return await client.file(objectKey(key)).bytes();
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    },
    async getRange(key, offset, length) {
      try {
        return await client.file(objectKey(key)).slice(offset, offset + length).bytes();
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    },
    async stat(key) {
      try {
        const st = await client.stat(objectKey(key));
        return { key, size: st.size };
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    },
    async delete(key) {
      await client.delete(objectKey(key));
    },
    async list(prefix) {
      assertValidPrefix(prefix);
      const found: BlobInfo[] = [];
      let continuationToken: string | undefined;
      for (;;) {
        const page = await client.list({ prefix: root + prefix, maxKeys: pageSize, ...(continuationToken ? { continuationToken } : {}) });
        for (const object of page.contents ?? []) {
          const modifiedAt = object.lastModified ? Date.parse(String(object.lastModified)) : NaN;
          found.push({
            key: object.key.slice(root.length),
            size: object.size ?? 0,
            ...(Number.isFinite(modifiedAt) ? { modifiedAt } : {}),
          });
        }
        if (!page.isTruncated) break;
        if (!page.nextContinuationToken) throw new Error(`S3 cut the listing of ${root + prefix} short without a continuation token.`);
        continuationToken = page.nextContinuationToken;
      }
      return found;
    },
    // S3 presigned PUTs cannot limit the body's size: `opts.maxBytes` is left to the caller.
    presignPut: (key, expiresInSec) => presign(key, "PUT", expiresInSec),
    presignGet: (key, expiresInSec) => presign(key, "GET", expiresInSec),
  };
}

function normalizePrefix(prefix: string | undefined): string {
  const trimmed = (prefix ?? "").replace(/^\/+/, "");
  if (trimmed === "") return "";
  const root = trimmed.endsWith("/") ? trimmed : `${trimmed}/`;
  assertValidPrefix(root);
  return root;
}

/**
 * Reads the first chunk to learn whether the object exists (S3 answers a missing key on the first
 * read), then hands back a stream with that chunk put back in front.
 */
async function openOrNull(stream: ReadableStream<Uint8Array>): Promise<ReadableStream<Uint8Array> | null> {
  const reader = stream.getReader();
  const first = await reader.read().catch((err: unknown) => {
    if (isNotFound(err)) return null;
    throw err;
  });
  if (first === null) return null;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (first.done) controller.close();
      else controller.enqueue(first.value);
    },
    async pull(controller) {
      const next = await reader.read();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

function isNotFound(err: unknown): boolean {
  if (!(err instanceof Error) || err.name !== "S3Error") return false;
  const code = "code" in err ? err.code : undefined;
  return code === "NoSuchKey" || code === "NotFound";
}

function definedOnly<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
