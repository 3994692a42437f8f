/**
 * The embedded blob store: one file per blob under a directory in the data dir. Writes go to a
 * temporary file beside the target and are renamed into place, so readers never see a partial
 * blob. Holders without server credentials (agents, the CLI) reach blobs through this server's
 * `/v1/blobs/<ticket>` route, served by `handleBlobRequest`; a ticket names one key and one
 * method and is signed with the server's blob secret (`loadOrCreateSecret`).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { mkdir, open, readdir, rename, rmdir, stat, unlink, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { z } from "zod";
import { CattyError, httpStatus } from "../../src/protocol/errors.ts";
import { loadOrCreateKey } from "../data-dir.ts";
import { signTicket, verifyTicket } from "../tickets.ts";
import { assertValidKey, assertValidPrefix, isValidKey } from "./keys.ts";
import type { BlobBody, BlobInfo, BlobStore } from "./types.ts";

export interface DiskBlobStoreOptions {
  /** Directory holding the blobs (created when missing). */
  dir: string;
  /** Key for signing tickets; see `loadOrCreateSecret`. */
  secret: string;
}

/** What a verified ticket grants. */
export interface BlobTicket {
  key: string;
  method: "GET" | "PUT";
  /** Expiry, in seconds since the epoch. */
  expiresAtSec: number;
  /** PUT: the most bytes the holder may upload, if the ticket limits it. */
  maxBytes?: number;
}

export interface DiskBlobStore extends BlobStore {
  readonly kind: "disk";
  readonly dir: string;
  /** What `ticket` grants; throws a `forbidden` CattyError when it is malformed, tampered with or expired. */
  verifyTicket(ticket: string): BlobTicket;
}

/** The route prefix of presigned disk URLs; the ticket is the next (last) path segment. */
export const BLOB_ROUTE = "/v1/blobs/";

const TicketPayload = z.object({ k: z.string().refine(isValidKey), m: z.enum(["GET", "PUT"]), e: z.number().int(), x: z.number().int().min(0).optional() });

const CHUNK_BYTES = 256 * 1024;

export function createDiskBlobStore(opts: DiskBlobStoreOptions): DiskBlobStore {
  const { dir, secret } = opts;
  if (secret.length < 16) throw new Error("The blob secret is too short; use loadOrCreateSecret().");
  mkdirSync(dir, { recursive: true, mode: 0o700 });

  const presign = async (key: string, method: "GET" | "PUT", expiresInSec: number, maxBytes?: number): Promise<string> => {
    assertValidKey(key);
    assertExpiry(expiresInSec);
    return BLOB_ROUTE + signTicket(secret, { k: key, m: method, ...(maxBytes !== undefined ? { x: maxBytes } : {}) }, expiresInSec);
  };

  return {
    kind: "disk",
    dir,
    async put(key, body) {
      assertValidKey(key);
      await writeAtomic(dir, key, toStream(body), {});
    },
    async get(key) {
      assertValidKey(key);
      return openBlob(pathOf(dir, key));
    },
    async getBytes(key) {
      assertValidKey(key);
      return readSpan(pathOf(dir, key), 0, null);
    },
    async getRange(key, offset, length) {
      assertValidKey(key);
      return readSpan(pathOf(dir, key), offset, length);
    },
    async stat(key) {
      assertValidKey(key);
      try {
        const st = await stat(pathOf(dir, key));
        return st.isFile() ? { key, size: st.size } : null;
      } catch (err) {
        if (isMissing(err)) return null;
        throw err;
      }
    },
    async delete(key) {
      assertValidKey(key);
      try {
        await unlink(pathOf(dir, key));
      } catch (err) {
        if (isMissing(err) || errno(err) === "EISDIR") return;
        throw err;
      }
      await pruneEmptyParents(dir, key);
    },
    async list(prefix) {
      assertValidPrefix(prefix);
      // Walk only the deepest directory the prefix names in full.
      const base = prefix.slice(0, prefix.lastIndexOf("/") + 1);
      const found: BlobInfo[] = [];
      await walk(dir, base, prefix, found);
      return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    },
    presignPut: (key, expiresInSec, opts) => presign(key, "PUT", expiresInSec, opts?.maxBytes),
    presignGet: (key, expiresInSec) => presign(key, "GET", expiresInSec),
    verifyTicket: (ticket) => verifyBlobTicket(secret, ticket, Date.now() / 1000),
  };
}

export interface BlobRouteOptions {
  /** The most bytes any PUT may carry (a ticket may allow fewer). */
  maxPutBytes: number;
  /** Whether an upload to `key` is still wanted; a PUT to any other key is refused (403). */
  acceptPut?(key: string): boolean;
}

/**
 * Serves `GET|HEAD|PUT /v1/blobs/:ticket` for a disk store. GET streams the blob with its
 * Content-Length. PUT needs a PUT ticket and a Content-Length of at most `maxPutBytes` and the
 * ticket's own limit; the body goes to a temporary file and is renamed into place only once every
 * byte arrived, so a refused or interrupted upload leaves nothing behind. Errors are
 * `{ type: "error", code, message }`. Unexpected failures (a full disk) are thrown for the
 * server's own error handling.
 * Note that `Bun.serve` refuses bodies over its `maxRequestBodySize` (128 MiB by default) first.
 */
export async function handleBlobRequest(req: Request, store: DiskBlobStore, opts: BlobRouteOptions): Promise<Response> {
  try {
    const pathname = new URL(req.url).pathname;
    const ticket = store.verifyTicket(pathname.slice(pathname.lastIndexOf("/") + 1));
    switch (req.method) {
      case "GET":
      case "HEAD":
        return await serveGet(store, ticket);
      case "PUT":
        return await servePut(req, store, ticket, opts);
      default:
        throw new CattyError("bad_request", `Blob links accept GET, HEAD and PUT, not ${req.method}.`);
    }
  } catch (err) {
    if (err instanceof CattyError) return errorResponse(err);
    throw err;
  }
}

async function serveGet(store: DiskBlobStore, ticket: BlobTicket): Promise<Response> {
  if (ticket.method !== "GET") throw new CattyError("forbidden", "This blob link is for uploading, not downloading.");
  if (!(await store.stat(ticket.key))) throw new CattyError("not_found", `Blob ${ticket.key} does not exist.`);
  // A BunFile body is sent with sendfile and its Content-Length; Bun drops a handler's
  // Content-Length on stream bodies (oven-sh/bun#10507). Bun opens the file when it sends it, so a
  // blob replaced meanwhile is sent whole (renames are atomic); one deleted meanwhile fails the
  // request with a 500.
  return new Response(Bun.file(pathOf(store.dir, ticket.key)), {
    headers: {
      "Content-Type": /\.(tar\.gz|tgz|gz)$/.test(ticket.key) ? "application/gzip" : "application/octet-stream",
      "Content-Disposition": "attachment",
      "Cache-Control": "no-store",
    },
  });
}

async function servePut(req: Request, store: DiskBlobStore, ticket: BlobTicket, opts: BlobRouteOptions): Promise<Response> {
  if (ticket.method !== "PUT") throw new CattyError("forbidden", "This blob link is for downloading, not uploading.");
  if (opts.acceptPut && !opts.acceptPut(ticket.key)) {
    throw new CattyError("forbidden", "This upload link is no longer wanted (the save was abandoned or has expired). Ask the server for a new one.");
  }
  const maxPutBytes = Math.min(opts.maxPutBytes, ticket.maxBytes ?? Infinity);
  const declared = req.headers.get("content-length");
  const length = declared !== null && /^\d+$/.test(declared) ? Number(declared) : NaN;
  if (!Number.isSafeInteger(length)) {
    // S3 refuses uploads without a length too; keeping the two stores alike.
    throw new CattyError("bad_request", "Blob uploads need a Content-Length header (send a file or a buffer, not a stream).");
  }
  if (length > maxPutBytes) {
    throw new CattyError("too_large", `The upload is ${length} bytes; the limit is ${maxPutBytes}.`);
  }
  const body = req.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  await writeAtomic(store.dir, ticket.key, body, { maxBytes: maxPutBytes, expectedBytes: length });
  return new Response(null, { status: 200 });
}

function errorResponse(err: CattyError): Response {
  return Response.json(err.toBody(), { status: httpStatus[err.code], headers: { "Cache-Control": "no-store" } });
}

/** The blob secret kept in `<dataDir>/blob-secret` (mode 0600): see `loadOrCreateKey`. */
export function loadOrCreateSecret(dataDir: string): string {
  return loadOrCreateKey(dataDir, "blob-secret");
}

// ── tickets ─────────────────────────────────────────────────────────────────────────────────

function verifyBlobTicket(secret: string, ticket: string, nowSec: number): BlobTicket {
  const { k: key, m: method, e: expiresAtSec, x: maxBytes } = verifyTicket(secret, ticket, TicketPayload, { nowMs: nowSec * 1000, noun: "blob link" });
  return { key, method, expiresAtSec, ...(maxBytes !== undefined ? { maxBytes } : {}) };
}

function assertExpiry(expiresInSec: number): void {
  if (!Number.isFinite(expiresInSec) || expiresInSec <= 0) {
    throw new CattyError("bad_request", `A presigned URL must expire in a positive number of seconds, not ${expiresInSec}.`);
  }
}

// ── files ───────────────────────────────────────────────────────────────────────────────────

function pathOf(dir: string, key: string): string {
  return join(dir, ...key.split("/"));
}

function toStream(body: BlobBody): ReadableStream<Uint8Array> {
  if (body instanceof ReadableStream) return body;
  if (body instanceof Blob) return body.stream();
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(body);
      controller.close();
    },
  });
}

/**
 * Streams `source` into `<target>.~<random>` beside the blob's path (`~` is not a key character,
 * so the temporary name never collides with a key and `list` skips it), then renames it into place.
 * On any failure the temporary file is removed. Source read errors (a client that went away)
 * become `bad_request`; `maxBytes` is enforced while counting.
 */
async function writeAtomic(
  dir: string,
  key: string,
  source: ReadableStream<Uint8Array>,
  limits: { maxBytes?: number; expectedBytes?: number },
): Promise<number> {
  const target = pathOf(dir, key);
  const tmp = `${target}.~${randomBytes(6).toString("hex")}`;
  const reader = source.getReader();
  let file: FileHandle | undefined;
  let written = 0;
  let done = false;
  try {
    file = await openForWrite(tmp);
    for (;;) {
      const chunk = await reader.read().catch(() => {
        throw new CattyError("bad_request", `The upload of ${key} ended before all its bytes arrived.`);
      });
      if (chunk.done) break;
      written += chunk.value.byteLength;
      if (limits.maxBytes !== undefined && written > limits.maxBytes) {
        throw new CattyError("too_large", `The upload of ${key} is over the limit of ${limits.maxBytes} bytes.`);
      }
      if (limits.expectedBytes !== undefined && written > limits.expectedBytes) {
        throw new CattyError("bad_request", `The upload of ${key} is longer than its Content-Length.`);
      }
      await writeAll(file, chunk.value);
    }
    if (limits.expectedBytes !== undefined && written !== limits.expectedBytes) {
      throw new CattyError("bad_request", `The upload of ${key} ended before all its bytes arrived.`);
    }
    await file.sync();
    await file.close();
    file = undefined;
    await rename(tmp, target);
    done = true;
    return written;
  } finally {
    if (!done) {
      reader.cancel().catch(() => {});
      await file?.close().catch(() => {});
      await unlink(tmp).catch(() => {});
    }
  }
}

async function openForWrite(path: string): Promise<FileHandle> {
  // A concurrent `delete` may prune the parent between mkdir and open; try again then.
  for (let attempt = 0; ; attempt++) {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    try {
      return await open(path, "wx", 0o600);
    } catch (err) {
      if (errno(err) !== "ENOENT" || attempt >= 3) throw err;
    }
  }
}

async function writeAll(file: FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.byteLength) {
    const { bytesWritten } = await file.write(bytes, offset, bytes.byteLength - offset);
    offset += bytesWritten;
  }
}

/**
 * The blob's file, opened now (a blob replaced or deleted meanwhile is still read whole, as it
 * was), with its size; null when there is no such blob ("folders" of other keys are none).
 */
async function openBlobFile(path: string): Promise<{ file: FileHandle; size: number } | null> {
  let file: FileHandle;
  try {
    file = await open(path, "r");
  } catch (err) {
    if (isMissing(err) || errno(err) === "EISDIR") return null;
    throw err;
  }
  try {
    const st = await file.stat();
    if (st.isFile()) return { file, size: st.size };
    await file.close();
    return null;
  } catch (err) {
    await file.close().catch(() => {});
    throw err;
  }
}

/** `length` bytes from `offset` (null: to the end), fewer at the end; null when there is no such blob. */
async function readSpan(path: string, offset: number, length: number | null): Promise<Uint8Array | null> {
  const opened = await openBlobFile(path);
  if (!opened) return null;
  const { file, size } = opened;
  try {
    const want = Math.max(0, Math.min(length ?? size, size - offset));
    const buf = new Uint8Array(want);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await file.read(buf, got, want - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await file.close();
  }
}

/** A blob's bytes as a stream (see `openBlobFile`). */
async function openBlob(path: string): Promise<ReadableStream<Uint8Array> | null> {
  const opened = await openBlobFile(path);
  return opened && fileStream(opened.file);
}

function fileStream(file: FileHandle): ReadableStream<Uint8Array> {
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await file.close();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const buffer = new Uint8Array(CHUNK_BYTES);
        const { bytesRead } = await file.read(buffer, 0, buffer.byteLength, null);
        if (bytesRead === 0) {
          await close();
          controller.close();
          return;
        }
        controller.enqueue(buffer.subarray(0, bytesRead));
      } catch (err) {
        await close().catch(() => {});
        controller.error(err);
      }
    },
    cancel: close,
  });
}

async function walk(root: string, relDir: string, prefix: string, found: BlobInfo[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(join(root, relDir), { withFileTypes: true });
  } catch (err) {
    if (isMissing(err)) return;
    throw err;
  }
  await Promise.all(
    entries.map(async (entry) => {
      const key = relDir + entry.name;
      if (entry.isDirectory()) {
        if (prefix.startsWith(key + "/") || (key + "/").startsWith(prefix)) await walk(root, key + "/", prefix, found);
        return;
      }
      if (!entry.isFile() || !key.startsWith(prefix) || !isValidKey(key)) return;
      try {
        const st = await stat(join(root, key));
        found.push({ key, size: st.size, modifiedAt: st.mtimeMs });
      } catch (err) {
        if (!isMissing(err)) throw err; // deleted meanwhile
      }
    }),
  );
}

/** Removes directories left empty by a delete, up to (not including) the store's root. */
async function pruneEmptyParents(dir: string, key: string): Promise<void> {
  const segments = key.split("/").slice(0, -1);
  while (segments.length > 0) {
    try {
      await rmdir(join(dir, ...segments));
    } catch {
      return; // not empty (or already gone): stop
    }
    segments.pop();
  }
}

function errno(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : undefined;
}

function isMissing(err: unknown): boolean {
  const code = errno(err);
  return code === "ENOENT" || code === "ENOTDIR";
}
