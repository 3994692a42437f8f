/**
 * Downloads of session saves for `catty download` and `catty sync`: finds a session's latest
 * save through the API, then fetches it from the short-lived URL the server handed out (S3
 * presigned, or the server's own blob endpoint) straight into a file, reporting progress to the
 * caller's `Reporter`.
 */
import { randomBytes } from "node:crypto";
import { link, lstat, mkdir, open, readdir, rename, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { CattyError, errorMessageOf } from "../protocol/errors.ts";
import { printable } from "./terminal-text.ts";
import { isLive, type SaveDownload } from "../protocol/index.ts";
import type { ApiClient } from "./api.ts";
import { extractArchive } from "../lib/archive.ts";
import { silentReporter, type Reporter } from "./progress.ts";

/** The part of the API client that saves are fetched through. */
export type SaveSource = Pick<ApiClient, "get" | "latestSave" | "resolveUrl">;

export interface DownloadOptions {
  /** After every chunk; `total` is the Content-Length when the server sent one. */
  onProgress?(done: number, total: number | undefined): void;
  signal?: AbortSignal;
}

export interface DownloadResult {
  bytes: number;
}

/**
 * Fetches `url` into `file`, which must not exist yet (it is created exclusively, so nothing of
 * the user's is ever overwritten or followed through a symlink). No credentials are sent: the URL
 * carries its own authorization. The length is checked against Content-Length; on any failure
 * the partial file is removed and the error is a `CattyError` saying what to do.
 */
export async function downloadToFile(url: string, file: string, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const handle = await open(file, "wx").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "EEXIST") throw new CattyError("conflict", `${file} already exists.`);
    throw err;
  });
  let res: Response | undefined;
  let done = 0;
  try {
    res = await fetchSave(url, opts.signal);
    const total = contentLength(res);
    if (res.body) {
      const reader = res.body.getReader();
      try {
        for (;;) {
          const next = await reader.read().catch((err: unknown) => {
            if (opts.signal?.aborted) throw opts.signal.reason;
            throw cutShort(done, total, err);
          });
          if (next.done) break;
          await writeAll(handle, next.value);
          done += next.value.byteLength;
          opts.onProgress?.(done, total);
        }
      } finally {
        reader.releaseLock();
      }
    }
    if (total !== undefined && done !== total) throw cutShort(done, total);
    await handle.close();
    return { bytes: done };
  } catch (err) {
    await res?.body?.cancel().catch(() => {});
    await handle.close().catch(() => {});
    await unlink(file).catch(() => {});
    throw err;
  }
}

async function fetchSave(url: string, signal: AbortSignal | undefined): Promise<Response> {
  let res: Response;
  try {
    // The save is a .tar.gz: keep the bytes as stored even if the store labels them gzip-encoded.
    res = await fetch(url, { signal, decompress: false, redirect: "follow" });
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw new CattyError(
      "unavailable",
      `The save could not be downloaded: ${(err as Error).message ?? String(err)}.`,
      "Check your connection and run the command again.",
    );
  }
  if (res.ok) return res;
  const message = await errorMessageOf(res);
  throw httpError(res.status, message === null ? null : printable(message));
}

/**
 * The session's latest save and a fresh URL for it. The API answers `not_found` both for an
 * unknown session and for one that has not been saved yet; asking for the session tells them apart.
 */
export async function latestSaveOf(client: SaveSource, label: string, at?: string): Promise<SaveDownload> {
  try {
    return await client.latestSave(label, at);
  } catch (err) {
    if (!(err instanceof CattyError) || err.code !== "not_found" || at !== undefined) throw err;
    const session = await client.get(label); // throws the session's own not_found
    if (isLive(session.status)) {
      throw new CattyError(
        "not_found",
        `Session ${label} has no save yet: the first save happens about 10 seconds after it starts.`,
        "Try again in a few seconds.",
      );
    }
    throw new CattyError("not_found", `Session ${label} has no save: it ended (${session.status}) before its first save.`);
  }
}

export interface SaveFetch {
  save: SaveDownload;
  bytes: number;
}

/**
 * Looks up `label`'s latest save and downloads it to `file` (which must not exist), reporting
 * progress.
 */
export async function downloadLatestSave(
  client: SaveSource,
  label: string,
  file: string,
  opts: { signal?: AbortSignal; report?: Reporter; at?: string } = {},
): Promise<SaveFetch> {
  const save = await latestSaveOf(client, label, opts.at);
  // A content-addressed save is streamed as it is read: its archive size is not known ahead.
  const progress = (opts.report ?? silentReporter).step(`Downloading ${label}`, save.added === null || save.added === undefined ? save.size : undefined);
  try {
    const { bytes } = await downloadToFile(client.resolveUrl(save.url), file, {
      signal: opts.signal,
      onProgress: (done) => progress.update(done),
    });
    progress.done();
    return { save, bytes };
  } catch (err) {
    progress.fail();
    throw err;
  }
}

export type SaveFormat = "dir" | "tar.gz";

export interface SaveToPathOptions {
  client: SaveSource;
  label: string;
  /** Absolute destination: a new (or empty) directory for `dir`, a new file for `tar.gz`. */
  dest: string;
  format: SaveFormat;
  signal?: AbortSignal;
  report?: Reporter;
  /** The newest save made at or before this ISO time, instead of the latest. */
  at?: string;
}

export interface SaveToPathResult {
  save: SaveDownload;
  /** Files and symlinks in the save. */
  files: number;
  /** Bytes written: the archive for `tar.gz`, the extracted contents for `dir`. */
  bytes: number;
}

/**
 * `catty download`: fetches the latest save of `label` to `dest`, as a directory (extracted with
 * the same checks as an upload) or as the `.tar.gz` itself. The destination is checked before
 * anything is fetched and is never overwritten; the download goes to a temporary file beside it
 * that is removed whatever happens.
 */
export async function downloadSaveTo(opts: SaveToPathOptions): Promise<SaveToPathResult> {
  await assertFreeDestination(opts.dest, opts.format);
  await mkdir(dirname(opts.dest), { recursive: true });
  const tmp = tempPathBeside(opts.dest, "download");
  try {
    const { save, bytes } = await downloadLatestSave(opts.client, opts.label, tmp, opts);
    if (opts.format === "tar.gz") {
      await placeNew(tmp, opts.dest);
      return { save, files: save.files, bytes };
    }
    const stats = await extractArchive(tmp, opts.dest, { into: "empty" });
    return { save, files: stats.files, bytes: stats.bytes };
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/** Refuses a destination that exists, except an empty directory for `dir`. */
export async function assertFreeDestination(dest: string, format: SaveFormat): Promise<void> {
  const st = await lstat(dest).catch(() => null);
  if (!st) return;
  if (format === "dir" && st.isDirectory() && (await readdir(dest)).length === 0) return;
  throw new CattyError("conflict", `${dest} already exists.`, "Pick another PATH (`catty download LABEL PATH`) or remove it.");
}

/** Moves `tmp` to `dest` only if `dest` still does not exist (a hard link fails instead of replacing). */
async function placeNew(tmp: string, dest: string): Promise<void> {
  try {
    await link(tmp, dest);
    await unlink(tmp);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") await assertFreeDestination(dest, "tar.gz");
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EXDEV") throw err;
  }
  // A file system without hard links: check, then rename.
  await assertFreeDestination(dest, "tar.gz");
  await rename(tmp, dest);
}

/** A name for a temporary file or directory beside `path`, hidden, unlikely to exist. */
export function tempPathBeside(path: string, what: string): string {
  return join(dirname(path), `.${basename(path)}.catty-${what}-${randomBytes(4).toString("hex")}`);
}

/** "3 minutes ago", "just now", or the date for old saves. */
export function savedAgo(createdAt: string, now = Date.now()): string {
  const then = Date.parse(createdAt);
  if (Number.isNaN(then)) return createdAt;
  const secs = Math.max(0, Math.round((now - then) / 1000));
  if (secs < 10) return "just now";
  if (secs < 60) return `${secs} seconds ago`;
  const mins = Math.round(secs / 60);
  if (mins < 60) return mins === 1 ? "1 minute ago" : `${mins} minutes ago`;
  const hours = Math.round(mins / 60);
  if (hours < 48) return hours === 1 ? "1 hour ago" : `${hours} hours ago`;
  return new Date(then).toLocaleString();
}

export function formatCount(n: number, noun: string): string {
  return `${n.toLocaleString("en-US")} ${noun}${n === 1 ? "" : "s"}`;
}

function httpError(status: number, message: string | null): CattyError {
  if (status === 500 && message) {
    // The server read the save and found it damaged: trying again does not help.
    return new CattyError(
      "internal",
      `The save could not be downloaded: ${message}`,
      "An earlier save may be whole: `catty saves LABEL` lists them, `catty download LABEL --at TIME` downloads one.",
    );
  }
  const prefix = `The save could not be downloaded (HTTP ${status})`;
  if (status === 401 || status === 403) {
    return new CattyError("forbidden", `${prefix}: the link expired; run the command again.`);
  }
  if (status === 404 || status === 410) {
    return new CattyError("not_found", `${prefix}: it is no longer stored, or the link expired; run the command again.`);
  }
  if (status === 429 || status >= 500) {
    return new CattyError("unavailable", `${prefix}: the storage is unavailable; try again in a moment.`);
  }
  return new CattyError("internal", `${prefix}; run the command again.`);
}

function cutShort(done: number, total: number | undefined, cause?: unknown): CattyError {
  const got = total === undefined ? `after ${done} bytes` : `after ${done} of ${total} bytes`;
  const why = cause instanceof Error ? ` (${cause.message})` : "";
  return new CattyError("unavailable", `The download was cut short ${got}${why}; run the command again.`);
}

function contentLength(res: Response): number | undefined {
  const raw = res.headers.get("content-length");
  if (raw === null || !/^\d+$/.test(raw.trim())) return undefined;
  return Number(raw.trim());
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, off, chunk.byteLength - off);
    off += bytesWritten;
  }
}

export interface Interrupt extends Disposable {
  signal: AbortSignal;
}

/**
 * Turns the first Ctrl+C into an abort, so a transfer can remove its temporary files; a second
 * Ctrl+C ends the process as usual. Dispose of it when the work is over.
 */
export function abortOnInterrupt(): Interrupt {
  const abort = new AbortController();
  const onSigint = () => abort.abort(new CattyError("internal", "Interrupted."));
  process.once("SIGINT", onSigint);
  return { signal: abort.signal, [Symbol.dispose]: () => void process.off("SIGINT", onSigint) };
}
