/**
 * Project archives: `.tar.gz` of a directory tree, and safe extraction of untrusted ones.
 * The CLI packs the user's project for upload and extracts downloads; the agent packs the
 * workspace for periodic saves and extracts an uploaded project. Packing streams file by file
 * (nothing close to the whole tree is held in memory); extraction writes into a private
 * temporary directory beside the destination and moves it into place only once every entry
 * has passed the checks, so a refused archive leaves nothing behind.
 */
import {
  chmodSync,
  chownSync,
  closeSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  futimesSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
  unlinkSync,
  writeSync,
  type Stats,
} from "node:fs";
import { lstat, mkdir, mkdtemp, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import * as tar from "tar-stream";
import { CattyError } from "../protocol/errors.ts";
import { TarReader, type TarEntryHeader } from "./tar-reader.ts";
import { decodeManifest } from "./snapshot/format.ts";
import { createExcluder, type PackMode } from "./exclude.ts";
import { linkLeavesTree, linksOnDisk, linkTargetProblem, openExclusive, openSeenSync, parseRelPath, walkTree } from "./safe-fs.ts";

export { createExcluder, type Excluder, type PackMode } from "./exclude.ts";

// ---------------------------------------------------------------------------------------------
// Packing

export interface PackProgress {
  /** Regular files and symlinks packed so far. */
  files: number;
  /** Uncompressed bytes of file contents packed so far. */
  bytes: number;
}

export interface PackOptions {
  /** Directory to pack; entries are stored relative to it. */
  root: string;
  mode: PackMode;
  /** Pack `.git` directories (default true). */
  includeGit?: boolean;
  /** Called after every file, and once at the end. */
  onProgress?: (progress: PackProgress) => void;
  /** Stop with a `too_large` error as soon as the compressed output passes this. */
  maxCompressedBytes?: number;
  /** Aborting stops packing; the stats promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface PathSize {
  path: string;
  size: number;
}

export interface PackStats {
  /** Regular files and symlinks in the archive. */
  files: number;
  /** Uncompressed bytes of file contents. */
  bytes: number;
  compressedBytes: number;
  /** The five largest files, largest first. */
  largest: PathSize[];
  /** Entries that vanished or could not be read while packing (first 100). */
  skipped: { path: string; reason: string }[];
}

export interface PackHandle {
  /** The `.tar.gz` bytes; suitable as a `fetch` body. Errors if packing fails. */
  stream: ReadableStream<Uint8Array>;
  /** Resolves once the whole archive went through `stream`; rejects with the packing error. */
  stats: Promise<PackStats>;
}

const GZIP_LEVEL = 6;
/** Files up to this size are read in one call; larger ones are streamed in chunks of this size. */
const READ_CHUNK = 1 << 20;
/** Tar output is handed to gzip in batches of about this size (one zlib job per batch). */
const GZIP_BATCH = 256 * 1024;
const LARGEST_KEPT = 5;
const SKIPPED_KEPT = 100;

/**
 * Packs `opts.root` into a `.tar.gz` and returns it as a stream. Packing runs as fast as the
 * stream is read. Await `stats` for the result (or the error: `too_large`, an abort…).
 */
export function packDirectory(opts: PackOptions): PackHandle {
  const abort = new AbortController();
  const onAbort = () => abort.abort(opts.signal?.reason);
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener("abort", onAbort, { once: true });

  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let wake: (() => void) | undefined;
  let failed = false;
  const resume = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  abort.signal.addEventListener("abort", resume, { once: true });
  const stream = new ReadableStream<Uint8Array>(
    {
      start: (c) => void (controller = c),
      pull: resume,
      cancel: (reason) => abort.abort(reason ?? new CattyError("internal", "The archive stream was cancelled.")),
    },
    { highWaterMark: 8 },
  );

  const write = async (chunk: Uint8Array) => {
    if (abort.signal.aborted) throw abort.signal.reason;
    controller.enqueue(chunk);
    if ((controller.desiredSize ?? 1) > 0) return;
    await new Promise<void>((resolve) => (wake = resolve));
    if (abort.signal.aborted) throw abort.signal.reason;
    if (failed) throw new Error("packing failed");
  };

  const stats = runPack(opts, write, abort.signal)
    .then(
      (result) => {
        controller.close();
        return result;
      },
      (err: unknown) => {
        failed = true;
        resume();
        try {
          controller.error(err);
        } catch {
          // already cancelled by the reader
        }
        throw err;
      },
    )
    .finally(() => opts.signal?.removeEventListener("abort", onAbort));
  // The caller may only read the stream; a failure still shows there, so don't let an
  // unobserved `stats` rejection count as unhandled.
  stats.catch(() => {});
  return { stream, stats };
}

/** Packs into the file `out` (created or truncated). On failure the partial file is removed. */
export async function packToFile(opts: PackOptions & { out: string }): Promise<PackStats> {
  const file = await open(opts.out, "w");
  try {
    const result = await runPack(
      opts,
      async (chunk) => {
        await file.write(chunk);
      },
      opts.signal,
    );
    await file.close();
    return result;
  } catch (err) {
    await file.close().catch(() => {});
    await unlink(opts.out).catch(() => {});
    throw err;
  }
}

/** Packs into memory. For small trees and tests; prefer the stream or file forms for big ones. */
export async function packToBytes(opts: PackOptions): Promise<PackStats & { data: Uint8Array }> {
  const chunks: Uint8Array[] = [];
  const result = await runPack(opts, (chunk) => void chunks.push(chunk), opts.signal);
  return { ...result, data: Buffer.concat(chunks) };
}

type TarHeader = Partial<tar.Header> & { name: string };

interface WalkEntry {
  rel: string;
  abs: string;
  st: Stats;
}

type Skip = (path: string, err: unknown) => void;

/** Depth-first, parents before children, names in a stable order. Excluded directories are not entered. */
function* walk(root: string, exclude: (rel: string, isDir: boolean) => boolean, skip: Skip, rel = ""): Generator<WalkEntry> {
  const dir = rel === "" ? root : join(root, rel);
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    skip(rel, err);
    return;
  }
  for (const name of names) {
    const childRel = rel === "" ? name : `${rel}/${name}`;
    const abs = join(dir, name);
    let st: Stats;
    try {
      st = lstatSync(abs);
    } catch (err) {
      skip(childRel, err);
      continue;
    }
    if (exclude(childRel, st.isDirectory())) continue;
    if (st.isDirectory()) {
      yield { rel: childRel, abs, st };
      yield* walk(root, exclude, skip, childRel);
    } else if (st.isFile() || st.isSymbolicLink()) {
      yield { rel: childRel, abs, st };
    }
    // sockets, fifos and devices are not project content
  }
}

type Sink = (chunk: Uint8Array) => Promise<void> | void;

/** The packing pipeline: walker → tar-stream → gzip (in batches) → `sink`. */
async function runPack(opts: PackOptions, sink: Sink, signal?: AbortSignal): Promise<PackStats> {
  const root = opts.root;
  const rootStat = await stat(root).catch(() => undefined);
  if (!rootStat?.isDirectory()) throw new CattyError("bad_request", `${root} is not a directory.`);

  const stats: PackStats = { files: 0, bytes: 0, compressedBytes: 0, largest: [], skipped: [] };
  const skip: Skip = (path, err) => {
    if (stats.skipped.length < SKIPPED_KEPT) stats.skipped.push({ path, reason: errorCode(err) });
  };

  const pack = tar.pack({ highWaterMark: 1 << 20 });
  const gzip = createGzip({ level: GZIP_LEVEL, chunkSize: 64 * 1024 });
  let failure: unknown;
  let overLimit = false;
  const fail = (err: unknown) => {
    if (failure !== undefined) return;
    failure = err;
    pack.destroy(err instanceof Error ? err : new Error(String(err)));
    gzip.destroy();
  };
  const onAbort = () => fail(signal?.reason ?? new Error("aborted"));
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort, { once: true });

  // tar → gzip, batched: zlib does one job per write, and a tree of small files makes tiny writes.
  const toGzip = new Promise<void>((resolve, reject) => {
    let batch: Uint8Array[] = [];
    let batched = 0;
    const flush = () => {
      if (batched === 0) return true;
      const data = batch.length === 1 ? batch[0]! : Buffer.concat(batch, batched);
      batch = [];
      batched = 0;
      return gzip.write(data);
    };
    pack.on("data", (data: unknown) => {
      const chunk = data as Uint8Array;
      batch.push(chunk);
      batched += chunk.byteLength;
      if (batched < GZIP_BATCH || flush()) return;
      pack.pause();
      gzip.once("drain", () => pack.resume());
    });
    pack.on("end", () => {
      flush();
      gzip.end();
      resolve();
    });
    pack.on("error", reject);
    pack.on("close", () => (failure !== undefined ? reject(failure) : resolve()));
  });

  // gzip → sink, counting and enforcing the compressed size limit.
  const toSink = (async () => {
    for await (const chunk of gzip as AsyncIterable<Buffer>) {
      stats.compressedBytes += chunk.byteLength;
      if (opts.maxCompressedBytes !== undefined && stats.compressedBytes > opts.maxCompressedBytes) {
        overLimit = true;
        throw new Error("over the size limit");
      }
      await sink(chunk);
    }
  })();
  toSink.catch(fail);
  toGzip.catch(fail);

  const walker = walk(root, createExcluder(root, opts.mode, opts.includeGit ?? true), skip);
  const track = (entry: WalkEntry) => {
    if (entry.st.isFile()) noteLargest(stats.largest, entry.rel, entry.st.size);
  };
  try {
    // Not `for…of`: leaving that loop would close the walker, and an oversized archive still
    // needs the rest of the walk for its message.
    // The failure check comes before taking the next entry, so no entry is taken and then dropped.
    for (;;) {
      if (failure !== undefined) break;
      const next = walker.next();
      if (next.done) break;
      const entry = next.value;
      track(entry);
      await addEntry(pack, entry, stats, skip);
      if (!entry.st.isDirectory()) opts.onProgress?.({ files: stats.files, bytes: stats.bytes });
    }
    if (failure === undefined) {
      pack.finalize();
      await Promise.all([toGzip, toSink]);
    }
  } catch (err) {
    fail(err);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }

  if (overLimit) {
    // Finish the walk without reading contents, so the message names the real largest files.
    for (const entry of walker) track(entry);
    throw tooLarge(opts, stats.largest);
  }
  if (failure !== undefined) throw failure;
  opts.onProgress?.({ files: stats.files, bytes: stats.bytes });
  return stats;
}

async function addEntry(pack: tar.Pack, { rel, abs, st }: WalkEntry, stats: PackStats, skip: Skip): Promise<void> {
  const base = { name: rel, mode: st.mode & 0o7777, mtime: st.mtime, uid: 0, gid: 0 };
  if (st.isDirectory()) return entry(pack, { ...base, name: `${rel}/`, type: "directory" });
  if (st.isSymbolicLink()) {
    let target: string;
    try {
      target = readlinkSync(abs);
    } catch (err) {
      return skip(rel, err);
    }
    // Kept whatever it points to, as the saves' builder keeps it (the rule is in safe-fs).
    const problem = linkTargetProblem(target);
    if (problem) return skip(rel, new Error(`it is ${problem}`));
    stats.files++;
    return entry(pack, { ...base, type: "symlink", linkname: target });
  }

  const fd = openSeenSync(abs, st);
  if (fd === null) return skip(rel, new Error("it changed while it was read (or is gone)"));
  try {
    if (st.size <= READ_CHUNK) {
      const data = readFileSync(fd);
      stats.files++;
      stats.bytes += data.byteLength;
      return await entry(pack, { ...base, type: "file", size: data.byteLength }, data);
    }
    stats.files++;
    stats.bytes += st.size;
    await streamEntry(pack, { ...base, type: "file", size: st.size }, fd);
  } finally {
    closeSync(fd);
  }
}

function entry(pack: tar.Pack, header: TarHeader, data?: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null) => (err ? reject(err) : resolve());
    const sink = data ? pack.entry(header, data, done) : pack.entry(header, done);
    sink.on("error", () => {}); // reported through `done`
  });
}

/**
 * Streams a large file into the archive. The header promised `size` bytes, and a live tree may
 * change under us: a file that grew is cut at `size`, one that shrank is padded with zeros.
 */
async function streamEntry(pack: tar.Pack, header: TarHeader & { size: number }, fd: number): Promise<void> {
  const { promise: done, resolve, reject } = Promise.withResolvers<void>();
  const out = pack.entry(header, (err) => (err ? reject(err) : resolve()));
  out.on("error", () => {}); // reported through `done`
  done.catch(() => {}); // awaited below unless a write fails first, which then reports it
  let left = header.size;
  let eof = false;
  while (left > 0) {
    const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, left));
    let filled = 0;
    while (!eof && filled < buf.byteLength) {
      const n = readOrEof(fd, buf, filled);
      if (n === 0) eof = true;
      filled += n;
    }
    buf.fill(0, filled);
    left -= buf.byteLength;
    if (!out.write(buf)) await drained(out);
  }
  out.end(undefined);
  await done;
}

/** A read error mid-file (the file was replaced, the disk went away) counts as its end. */
function readOrEof(fd: number, buf: Buffer, offset: number): number {
  try {
    return readSync(fd, buf, offset, buf.byteLength - offset, null);
  } catch {
    return 0;
  }
}

interface Drainable {
  once(event: "drain" | "close", fn: () => void): unknown;
  off(event: "drain" | "close", fn: () => void): unknown;
  destroyed: boolean;
}

/** Waits for a writable to take more; rejects if it is destroyed instead. */
function drained(stream: Drainable): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.destroyed) return reject(new Error("stream destroyed"));
    const onDrain = () => {
      stream.off("close", onClose);
      resolve();
    };
    const onClose = () => {
      stream.off("drain", onDrain);
      reject(new Error("stream closed"));
    };
    stream.once("drain", onDrain);
    stream.once("close", onClose);
  });
}

function noteLargest(largest: PathSize[], path: string, size: number): void {
  if (largest.length === LARGEST_KEPT && size <= largest[LARGEST_KEPT - 1]!.size) return;
  largest.push({ path, size });
  largest.sort((a, b) => b.size - a.size);
  if (largest.length > LARGEST_KEPT) largest.length = LARGEST_KEPT;
}

function tooLarge(opts: PackOptions, largest: PathSize[]): CattyError {
  const limit = formatBytes(opts.maxCompressedBytes ?? 0);
  const list = largest.map((f) => `  ${f.path} (${formatBytes(f.size)})`).join("\n");
  const what = opts.mode === "upload" ? "The project" : "The workspace";
  const message = `${what} is more than ${limit} compressed. Largest files:\n${list}`;
  const hint =
    opts.mode === "upload"
      ? "Add large files or folders to .gitignore, or use --no-upload to start without uploading the project."
      : "Remove large files from the workspace, or move them into a folder that saves skip, such as .cache/.";
  return new CattyError("too_large", message, hint);
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? (err instanceof Error ? err.message : String(err));
}

// ---------------------------------------------------------------------------------------------
// Extraction

/** A `.tar.gz` as bytes, a stream of bytes, or a file path. */
export type ArchiveSource = Uint8Array | ReadableStream<Uint8Array> | string;

export interface ExtractLimits {
  /** Cap on the decompressed archive size (default 1 GiB). */
  maxBytes?: number;
  /** Cap on the number of entries (default 100,000). */
  maxEntries?: number;
}

export interface ExtractOptions extends ExtractLimits {
  /**
   * `empty` (default): `dest` must not exist or be an empty directory; it becomes the tree.
   * `merge`: the tree is moved into `dest` over what is there (archive wins for files).
   */
  into?: "empty" | "merge";
  /** Who owns what is extracted (the caller may give files away: it runs as root). */
  owner?: Owner;
  /**
   * Record each regular file as written (`ExtractStats.written`): the caller then knows the tree
   * without reading it back. `manifest`: the archive is a save's restore stream, followed by its
   * files' chunks (`decodeManifest`), which go into the records. Only with `into: "empty"` (a
   * merge moves files, which changes them).
   */
  record?: "files" | "manifest";
}

/** A regular file as extraction left it (what `lstat` says of it), and its chunks when known. */
export interface WrittenFile {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  mode: number;
  chunks: string[] | null;
}

/** A restore's manifest is held in memory: no more than this. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/** A numeric user and group. */
export interface Owner {
  uid: number;
  gid: number;
}

export interface ExtractStats {
  /** Regular files and symlinks extracted. */
  files: number;
  /** Bytes of file contents extracted. */
  bytes: number;
  /** With `record`: every regular file, by its path in the tree. */
  written?: Map<string, WrittenFile>;
  /** With `record`: every directory and symlink, by its path in the tree. */
  others?: Map<string, "dir" | "symlink">;
}

/** A fully checked tree in a temporary directory beside its destination. */
export interface ExtractedTree extends ExtractStats {
  dir: string;
  remove(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export const DEFAULT_EXTRACT_LIMITS: Readonly<Required<ExtractLimits>> = Object.freeze({
  maxBytes: 1024 ** 3,
  maxEntries: 100_000,
});

/**
 * Extracts an untrusted `.tar.gz` into `dest`. Refuses (CattyError `bad_request`, naming the
 * entry) absolute names, `..`, NUL, over-long names, writes through any symlink, symlinks with
 * a target no file system holds (empty, NUL, over-long: `linkTargetProblem`), all hard links,
 * devices and fifos, and archives over the limits. Nothing is written to `dest` unless the whole
 * archive passed.
 *
 * Symlinks are data and are kept whatever they point to (absolute, `../`, dangling, looping): the
 * extraction makes a new tree and never writes through a symlink (every parent is a directory
 * this extraction made), so creating one is safe whatever its target. A merge into an existing
 * directory is the user's live tree, where `mergeTree` holds links to the stricter rule.
 */
export async function extractArchive(source: ArchiveSource, dest: string, options: ExtractOptions = {}): Promise<ExtractStats> {
  const into = options.into ?? "empty";
  const existing = await lstat(dest).catch(() => undefined);
  if (into === "empty" && existing) await assertEmptyDir(dest, existing);
  if (into === "merge" && existing && !(await stat(dest)).isDirectory()) {
    throw new CattyError("conflict", `${dest} exists and is not a directory.`);
  }

  // A merge moves files, which changes what would have been recorded of them.
  await using tree = await extractToTemp(source, dest, into === "empty" ? options : { ...options, record: undefined });
  if (into === "merge" && existing) {
    await mergeTree(tree.dir, dest);
  } else {
    chmodSync(tree.dir, existing ? existing.mode & 0o7777 : 0o755);
    if (options.owner) chownSync(tree.dir, options.owner.uid, options.owner.gid);
    await rename(tree.dir, dest).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOTEMPTY" || err.code === "EEXIST") {
        throw new CattyError("conflict", `${dest} is not empty.`);
      }
      throw err;
    });
  }
  return { files: tree.files, bytes: tree.bytes, ...(tree.written ? { written: tree.written } : {}), ...(tree.others ? { others: tree.others } : {}) };
}

/**
 * Extracts into a new temporary directory beside `dest` (same file system, so it can be renamed
 * into place) and returns it for the caller to move or merge (see `mergeTree`). The directory is
 * removed if extraction fails; otherwise the caller disposes of it.
 */
export async function extractToTemp(
  source: ArchiveSource,
  dest: string,
  limits: ExtractLimits & { owner?: Owner; record?: "files" | "manifest" } = {},
): Promise<ExtractedTree> {
  const parent = dirname(dest);
  await mkdir(parent, { recursive: true });
  const dir = await mkdtemp(join(parent, `.${basename(dest)}.catty-extract-`));
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    const { owner, record, ...caps } = limits;
    const result = await extractInto(source, dir, { ...DEFAULT_EXTRACT_LIMITS, ...definedOnly(caps) }, owner, record);
    return { dir, ...result, remove, [Symbol.asyncDispose]: remove };
  } catch (err) {
    await remove();
    throw err;
  }
}

type Kind = "dir" | "file" | "symlink";

/**
 * What this extraction has created, by normalized path. `linkFolds` holds symlinks' paths
 * case- and Unicode-folded: on macOS and Windows `Link/x` would be written through `link`.
 */
interface Kinds {
  exact: Map<string, Kind>;
  linkFolds: Set<string>;
  /** Who is given what is created. */
  owner: Owner | undefined;
  /** The directory whose parents `prepareParents` checked last, with it. */
  checked: string;
}

const fold = (path: string) => path.normalize("NFD").toLowerCase();

/** The file being written, while its contents arrive. */
interface Writing {
  rel: string;
  fd: number;
  mode: number;
  mtime: number;
}

async function extractInto(
  source: ArchiveSource,
  root: string,
  limits: Required<ExtractLimits>,
  owner: Owner | undefined,
  record: "files" | "manifest" | undefined,
): Promise<ExtractStats> {
  const written = record === undefined ? undefined : new Map<string, WrittenFile>();
  /** Every regular file's record in the archive's order, for the manifest. */
  const inOrder: WrittenFile[] = [];
  const after: Uint8Array[] = [];
  let afterBytes = 0;
  const stats: ExtractStats = { files: 0, bytes: 0, ...(written ? { written } : {}) };
  const kinds: Kinds = { exact: new Map([["", "dir"]]), linkFolds: new Set(), owner, checked: "" };
  // A file made with its mode at open needs no chmod unless the umask takes bits from it.
  const umask = process.umask();
  let entries = 0;
  let writing: Writing | null = null;

  // The reader hands on each entry as its header arrives and the contents in pieces, synchronously:
  // files are written as the archive streams in, with no copies and no stream per entry.
  const reader = new TarReader({
    entry(header) {
      entries++;
      if (entries > limits.maxEntries) {
        throw refusal(`The archive has more than ${limits.maxEntries.toLocaleString("en-US")} entries.`);
      }
      writing = extractEntry(header, root, kinds, stats, limits, umask);
    },
    data(bytes) {
      if (!writing) return;
      let off = 0;
      while (off < bytes.byteLength) off += writeSync(writing.fd, bytes, off);
      stats.bytes += bytes.byteLength;
    },
    end() {
      if (!writing) return;
      const w = writing;
      writing = null;
      try {
        if ((w.mode & umask) !== 0) fchmodSync(w.fd, w.mode);
        if (Number.isFinite(w.mtime)) futimesSync(w.fd, w.mtime, w.mtime);
        if (written) {
          const st = fstatSync(w.fd);
          const file: WrittenFile = { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, mode: st.mode, chunks: null };
          written.set(w.rel, file);
          inOrder.push(file);
        }
      } finally {
        closeSync(w.fd);
      }
    },
    after(bytes) {
      if (record !== "manifest") return;
      afterBytes += bytes.byteLength;
      if (afterBytes <= MAX_MANIFEST_BYTES) after.push(bytes.slice());
    },
  });

  // A .tar.gz, or a plain tar (saves are read out as tar): the first bytes tell.
  const chunks = chunksOf(source);
  const head = await chunks.next();
  const all = (async function* () {
    if (head.done) return;
    yield head.value;
    yield* chunks;
  })();
  const gzipped = head.done || (head.value[0] === 0x1f && head.value[1] === 0x8b);
  const gunzip = gzipped ? createGunzip() : null;
  // Feeding gzip runs beside the reading below; it stops (and cancels the source) when either fails.
  const feeding = gunzip ? pipeline(all, gunzip) : null;
  feeding?.catch(() => {});
  let decompressed = 0;
  try {
    for await (const chunk of (gunzip ?? all) as AsyncIterable<Uint8Array>) {
      decompressed += chunk.byteLength;
      if (decompressed > limits.maxBytes) {
        throw refusal(`The archive is larger than ${formatBytes(limits.maxBytes)} uncompressed.`);
      }
      reader.push(chunk);
    }
    await feeding;
    reader.finish();
  } catch (err) {
    gunzip?.destroy();
    await feeding?.catch(() => {});
    if (err instanceof CattyError) throw err;
    // A failed system call is ours (disk full, permissions), not the archive's fault.
    if ((err as NodeJS.ErrnoException).syscall) throw err;
    throw refusal(`The archive is not a valid .tar.gz (${err instanceof Error ? err.message : String(err)}).`);
  } finally {
    const open = writing as Writing | null;
    if (open) closeSync(open.fd);
  }

  if (record === "manifest") addChunks(inOrder, after, afterBytes);
  if (written) {
    // A file a later entry replaced with a symlink or a directory is not there any more.
    for (const rel of written.keys()) if (kinds.exact.get(rel) !== "file") written.delete(rel);
    stats.others = new Map();
    for (const [rel, kind] of kinds.exact) if (rel !== "" && kind !== "file") stats.others.set(rel, kind);
  }
  return stats;
}

/**
 * Gives each file its chunks from the manifest that followed the archive, if there is one and it
 * lists exactly these files with these sizes; otherwise they stay unknown (the caller reads them).
 */
function addChunks(files: WrittenFile[], after: Uint8Array[], bytes: number): void {
  if (bytes === 0 || bytes > MAX_MANIFEST_BYTES) return;
  let listed;
  try {
    listed = decodeManifest(Buffer.concat(after, bytes));
  } catch {
    return;
  }
  if (listed.length !== files.length || listed.some((f, i) => f.size !== files[i]!.size)) return;
  listed.forEach((f, i) => (files[i]!.chunks = f.chunks));
}

/** Checks and makes one entry; a file is returned open for its contents. */
function extractEntry(
  header: TarEntryHeader,
  root: string,
  kinds: Kinds,
  stats: ExtractStats,
  limits: Required<ExtractLimits>,
  umask: number,
): Writing | null {
  const rel = entryPath(header.name);
  // `rel` is normalized and `root` is the temp directory made for this extraction.
  const abs = rel === "" ? root : `${root}/${rel}`;

  switch (header.type) {
    case "directory": {
      if (rel === "") return null;
      prepareParents(rel, header.name, root, kinds);
      const was = kinds.exact.get(rel);
      if (was && was !== "dir") replaceable(rel, header.name, abs, kinds);
      if (was !== "dir") makeDir(abs, kinds.owner);
      // Directories stay owner-writable so this and later extractions can write into them.
      chmodSync(abs, (header.mode & 0o777) | 0o700);
      kinds.exact.set(rel, "dir");
      return null;
    }
    case "file":
    case "contiguous-file": {
      if (rel === "") throw refusedEntry(header.name, "is a file at the root of the archive");
      if (stats.bytes + header.size > limits.maxBytes) {
        throw refusal(`The archive is larger than ${formatBytes(limits.maxBytes)} uncompressed (at entry ${quote(header.name)}).`);
      }
      prepareParents(rel, header.name, root, kinds);
      replaceable(rel, header.name, abs, kinds);
      // No setuid, setgid or sticky bits. Never open something that is already there, least of all a symlink.
      const mode = header.mode & 0o777;
      const fd = openExclusive(abs, mode & ~umask);
      if (kinds.owner) {
        try {
          fchownSync(fd, kinds.owner.uid, kinds.owner.gid);
        } catch (err) {
          closeSync(fd);
          throw err;
        }
      }
      kinds.exact.set(rel, "file");
      stats.files++;
      return { rel, fd, mode, mtime: header.mtime };
    }
    case "symlink": {
      if (rel === "") throw refusedEntry(header.name, "is a symlink at the root of the archive");
      const target = header.linkname;
      const problem = linkTargetProblem(target);
      if (problem) throw refusedEntry(header.name, `is ${problem}`);
      prepareParents(rel, header.name, root, kinds);
      replaceable(rel, header.name, abs, kinds);
      symlinkSync(target, abs);
      if (kinds.owner) lchownSync(abs, kinds.owner.uid, kinds.owner.gid);
      kinds.exact.set(rel, "symlink");
      kinds.linkFolds.add(fold(rel));
      stats.files++;
      return null;
    }
    case "link":
      throw refusedEntry(header.name, `is a hard link (to ${quote(header.linkname)}); archives with hard links are not accepted`);
    default:
      throw refusedEntry(header.name, `is a ${header.type} entry; only files, directories and symlinks are accepted`);
  }
}

/**
 * Validates an entry name by the rules of `safe-fs` and returns it normalized ("" for the root
 * itself). `.git` is allowed: extraction makes a new tree (a workspace, a download), where the
 * session's repository belongs; writes into a user's existing tree refuse it.
 */
function entryPath(name: string): string {
  const parsed = parseRelPath(name, { allowGit: true, lenient: true });
  if (parsed.problem !== undefined) throw refusedEntry(name, `is ${parsed.problem}`);
  return parsed.path;
}

/**
 * Makes sure every parent of `rel` is a real directory we created. A parent that is a symlink
 * (made earlier by this archive) would redirect the write, so it is refused.
 */
function prepareParents(rel: string, name: string, root: string, kinds: Kinds): void {
  const slash = rel.lastIndexOf("/");
  // Entries come directory by directory: the parent checked last is still a directory (one is
  // never replaced), and so are its parents.
  if (slash < 0 || (slash === kinds.checked.length && rel.startsWith(kinds.checked))) return;
  let at = rel.indexOf("/");
  while (at >= 0) {
    const parent = rel.slice(0, at);
    const kind = kinds.exact.get(parent);
    if (kind === "symlink" || (kind === undefined && kinds.linkFolds.has(fold(parent)))) {
      throw refusedEntry(name, `would be written through the symlink ${quote(parent)}`);
    }
    if (kind === "file") throw refusedEntry(name, `is inside ${quote(parent)}, which is a file`);
    if (kind === undefined) {
      makeDir(join(root, parent), kinds.owner);
      kinds.exact.set(parent, "dir");
    }
    at = rel.indexOf("/", at + 1);
  }
  kinds.checked = rel.slice(0, slash);
}

/** A later entry replaces an earlier file or symlink of the same name (as tar does); never a directory. */
function replaceable(rel: string, name: string, abs: string, kinds: Kinds): void {
  const kind = kinds.exact.get(rel);
  if (kind === "dir") throw refusedEntry(name, "names a directory that the archive already created");
  if (!kind) return;
  unlinkSync(abs);
  kinds.exact.delete(rel);
  if (kind === "symlink") kinds.linkFolds.delete(fold(rel));
}

function makeDir(abs: string, owner: Owner | undefined): void {
  mkdirSync(abs, 0o755);
  if (owner) lchownSync(abs, owner.uid, owner.gid);
}

/**
 * Moves the tree at `from` into the existing directory `dest`: new paths are renamed in whole,
 * files and symlinks replace what is there. Every destination path is checked before anything
 * moves, and the merge is refused if it would go through a symlink already in `dest` or replace
 * a directory with a file.
 */
export async function mergeTree(from: string, dest: string): Promise<void> {
  const moves: { rel: string; replace: boolean }[] = [];
  // Returns true only to go into a directory that is on both sides.
  const plan = async (rel: string, incoming: Stats): Promise<boolean> => {
    const there = await lstat(join(dest, rel)).catch(() => undefined);
    if (!there) {
      moves.push({ rel, replace: false });
      return false;
    }
    if (there.isSymbolicLink() && incoming.isDirectory()) {
      throw refusedEntry(rel, `would be written through the symlink ${quote(rel)} in ${dest}`);
    }
    if (there.isDirectory() && incoming.isDirectory()) return true;
    if (there.isDirectory()) {
      throw new CattyError("conflict", `Cannot replace the directory ${join(dest, rel)} with a file from the archive.`);
    }
    moves.push({ rel, replace: incoming.isDirectory() });
    return false;
  };
  await walkTree(from, plan, (_rel, err) => {
    throw err; // a part of the tree left out would be lost
  });
  // `dest` is a live tree: its user's tools will write through the links it gets, so none may
  // lead outside it, judged with the links of the tree as it will be (the incoming ones over
  // those already there).
  const incoming = linksOnDisk(from);
  const there = linksOnDisk(dest);
  const lookup = (path: string) => {
    const link = incoming(path);
    return link === undefined ? there(path) : link;
  };
  await walkTree(from, (rel, st) => {
    if (!st.isSymbolicLink()) return;
    const target = readlinkSync(join(from, rel));
    if (linkLeavesTree(rel, target, lookup)) throw refusedEntry(rel, `is a symlink to ${quote(target)}, which leads outside ${dest}`);
  });
  for (const { rel, replace } of moves) {
    if (replace) await unlink(join(dest, rel));
    await rename(join(from, rel), join(dest, rel));
  }
}

async function assertEmptyDir(dest: string, st: Stats): Promise<void> {
  if (!st.isDirectory()) throw new CattyError("conflict", `${dest} exists and is not a directory.`);
  if ((await readdir(dest)).length > 0) {
    throw new CattyError("conflict", `${dest} is not empty.`, "Extract into a new or empty directory.");
  }
}

async function* chunksOf(source: ArchiveSource): AsyncGenerator<Uint8Array> {
  if (typeof source === "string") {
    const file = await open(source, "r").catch((err: NodeJS.ErrnoException) => {
      throw new CattyError("not_found", `Cannot read the archive ${source} (${err.code ?? err.message}).`);
    });
    yield* file.createReadStream({ highWaterMark: 256 * 1024 }) as AsyncIterable<Uint8Array>;
    return;
  }
  if (source instanceof Uint8Array) {
    yield source;
    return;
  }
  const reader = source.getReader();
  let done = false;
  try {
    while (!done) {
      const next = await reader.read();
      done = next.done;
      if (next.value) yield next.value;
    }
  } finally {
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

function refusal(message: string): CattyError {
  return new CattyError("bad_request", message, "The archive was not extracted; nothing was written.");
}

function refusedEntry(name: string, why: string): CattyError {
  return refusal(`Refusing to extract the archive: entry ${quote(name)} ${why}.`);
}

function quote(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}

function definedOnly<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}
