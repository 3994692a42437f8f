/**
 * Blob storage: where workspace saves and uploads live. The embedded default is a directory in
 * the data dir; any S3-compatible store scales out. Agents and the CLI never hold storage
 * credentials: they get short-lived presigned URLs for each transfer. A presigned URL is either
 * absolute (S3) or a path on this server (`/v1/blobs/<ticket>`, disk), resolved by the holder
 * against the server URL it already uses.
 */
export interface BlobInfo {
  key: string;
  size: number;
  /** Last write, in ms since the epoch, when the store knows it (listings). */
  modifiedAt?: number;
}

export interface PresignPutOptions {
  /**
   * The most bytes the holder may upload. The disk store's ticket carries it and its route
   * enforces it; an S3 presigned PUT cannot carry a size limit, so callers check the stored size.
   */
  maxBytes?: number;
}

export type BlobBody = ReadableStream<Uint8Array> | Uint8Array | Blob;

export interface BlobStore {
  readonly kind: "disk" | "s3";
  /** Stores a blob (server-side writes). Readers never see a partial blob under `key`. */
  put(key: string, body: BlobBody): Promise<void>;
  /** The blob's bytes, or null when there is no such blob. */
  get(key: string): Promise<ReadableStream<Uint8Array> | null>;
  /** The whole blob in memory (for blobs known to be small, such as packs), or null when there is no such blob. */
  getBytes(key: string): Promise<Uint8Array | null>;
  /** `length` bytes of the blob from `offset` (fewer at its end), or null when there is no such blob. */
  getRange(key: string, offset: number, length: number): Promise<Uint8Array | null>;
  stat(key: string): Promise<BlobInfo | null>;
  delete(key: string): Promise<void>;
  /** Every blob whose key starts with `prefix`. */
  list(prefix: string): Promise<BlobInfo[]>;
  /** A URL the holder may PUT the blob's bytes to (with a Content-Length) until it expires. */
  presignPut(key: string, expiresInSec: number, opts?: PresignPutOptions): Promise<string>;
  /** A URL the holder may GET the blob from until it expires. */
  presignGet(key: string, expiresInSec: number): Promise<string>;
}
