/**
 * Builds a save's trees from a directory, reading only what changed. The builder remembers each
 * directory's tree and each file's chunks with the file's identity (size, mtime, ctime, inode,
 * mode): a later build re-lists only the directories it is told changed (and their parents), and
 * re-reads only files whose identity moved. Every blob it makes (file chunks, trees) goes to a
 * `BlobSink`, which uploads what the store lacks.
 *
 * The tree is read through `Tree` (src/lib/tree.ts): each directory opened from its parent, files
 * opened as listed (no symlinks, no FIFOs, the inode that was listed), so a reader with more
 * rights than the tree's writer (the agent) reads nothing the writer could not.
 */
import { closeSync, readSync, type Stats } from "node:fs";
import type { Excluder } from "../exclude.ts";
import { linkTargetProblem, walkTree } from "../safe-fs.ts";
import { TimeSlices } from "../time-slices.ts";
import type { Tree, TreeDir } from "../tree.ts";
import { chunkStream, MAX_CHUNK, MIN_CHUNK } from "./chunker.ts";
import { encodeTree, sha256, type TreeEntry } from "./format.ts";

export interface BlobSink {
  /** Takes a blob; the bytes are only valid until the promise resolves. */
  add(hash: string, bytes: Uint8Array): Promise<void>;
}

export interface BuildStats {
  /** Regular files and symlinks. */
  files: number;
  /** Bytes of file contents. */
  bytes: number;
}

export interface BuildResult extends BuildStats {
  root: string;
  /** Files read (the rest were known from earlier builds or a seed). */
  read: number;
  /** Entries that vanished or could not be read while building (first 100). */
  skipped: { path: string; reason: string }[];
}

interface DirMemo extends BuildStats {
  hash: string;
  /** The entries the directory held (files, links, subdirectories), to see what went. */
  names: string[];
}

/** What a build remembers of a file: its identity when read, and its chunks. */
export interface FileMemo {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  mode: number;
  chunks: string[];
}

export interface BuilderOptions {
  /** The tree to save (`workspaceTree` in a session, `pathTree` for the user's own project). */
  tree: Tree;
  exclude: Excluder;
  /** After each file read, with the totals so far. */
  onProgress?(stats: BuildStats): void;
  /**
   * Each regular file and symlink of the directories a build lists (read or known), as it was
   * listed (`catty new` records them: sync-back then knows them as Catty's own).
   */
  onFile?(rel: string, st: Stats): void;
}

const SKIPPED_KEPT = 100;

const parentOf = (rel: string): string => (rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");

export class SnapshotBuilder {
  private dirs = new Map<string, DirMemo>();
  private files = new Map<string, FileMemo>();
  /** Directories and files (re)built by the latest build: what a failed save must not be trusted for. */
  private builtDirs = new Set<string>();
  private readFiles = new Set<string>();
  /** Sync work runs at most a slice (8 ms) before the builder lets the event loop run. */
  private readonly slices = new TimeSlices();
  /** The read buffer, reused file after file while a build runs (8 MiB: not kept between builds). */
  private buffer: Uint8Array | null = null;
  /** Directories listed for the next build (`seedListing`). */
  private listing: Listing | null = null;

  constructor(private readonly opts: BuilderOptions) {}

  /** Forgets everything: the next build reads the whole tree (after a save the server refused). */
  reset(): void {
    this.dirs.clear();
    this.files.clear();
  }

  /**
   * Forgets what the latest build made (its directories' trees, the files it read), whose blobs
   * may never have reached the store: after a save that failed on the way (no link, a network
   * error), the next build makes and sends those again, and trusts the rest.
   */
  forgetLatest(): void {
    for (const rel of this.builtDirs) this.dirs.delete(rel);
    for (const rel of this.readFiles) this.files.delete(rel);
  }

  /** What the last build knew of each file (`catty new` keeps it between runs: see upload-cache.ts). */
  fileMemos(): ReadonlyMap<string, FileMemo> {
    return this.files;
  }

  /**
   * Files remembered from an earlier run: a file whose identity still matches is not read again.
   * Its chunks are then not handed to the sink either, so the caller must be ready for the store
   * to lack them (and build again without the seed).
   */
  seedFiles(memos: Iterable<[string, FileMemo]>): void {
    for (const [rel, memo] of memos) this.files.set(rel, memo);
  }

  /**
   * Directories listed just before (`treeSize`'s listing, which `catty new` takes to check the
   * server's cap): the next build takes their entries from here instead of listing them again.
   */
  seedListing(listing: Listing): void {
    this.listing = listing;
  }

  /** Whether a build happened since the last reset. */
  get primed(): boolean {
    return this.dirs.has("");
  }

  /** Every blob the last build's tree refers to: its trees and its files' chunks. */
  referenced(): Set<string> {
    const out = new Set<string>();
    for (const d of this.dirs.values()) out.add(d.hash);
    for (const f of this.files.values()) for (const c of f.chunks) out.add(c);
    return out;
  }

  /**
   * Builds the tree. `changed`: paths changed since the last build (null: anything may have);
   * their directories and those directories' parents are listed again, and a changed directory
   * is read again whole. `revisit`: subtrees listed again whole (files still only read when their
   * identity moved), for parts of the tree whoever reports changes does not watch.
   */
  async build(sink: BlobSink, changed: Iterable<string> | null, revisit: readonly string[] = []): Promise<BuildResult> {
    let visit: ((rel: string) => boolean) | null = null;
    if (changed !== null && this.primed) {
      const marked = new Set<string>();
      const mark = (path: string): void => {
        for (let d = parentOf(path); ; d = parentOf(d)) {
          if (marked.has(d)) break;
          marked.add(d);
          if (d === "") break;
        }
      };
      for (const path of changed) {
        mark(path);
        // A changed directory itself is read again whole: its memo is dropped with all below it.
        if (this.dirs.has(path)) this.forget(path);
      }
      for (const path of revisit) mark(path);
      const within = revisit.map((r) => `${r}/`);
      visit = (rel) => marked.has(rel) || revisit.includes(rel) || within.some((w) => rel.startsWith(w));
    }
    const result: BuildResult = { root: "", files: 0, bytes: 0, read: 0, skipped: [] };
    this.builtDirs = new Set();
    this.readFiles = new Set();
    this.slices.restart();
    this.buffer = new Uint8Array(MAX_CHUNK * 2);
    const memo = await this.buildDir("", () => this.opts.tree.dir(""), sink, visit, result).finally(() => {
      this.buffer = null;
      this.listing = null;
    });
    result.root = memo.hash;
    result.files = memo.files;
    result.bytes = memo.bytes;
    result.read = this.readFiles.size;
    return result;
  }

  /** Drops the memos of `rel` and everything under it. */
  private forget(rel: string): void {
    const prefix = rel === "" ? "" : `${rel}/`;
    for (const k of this.dirs.keys()) if (k === rel || k.startsWith(prefix)) this.dirs.delete(k);
    for (const k of this.files.keys()) if (k.startsWith(prefix)) this.files.delete(k);
  }

  private async breathe(): Promise<void> {
    if (this.slices.due) await this.slices.next();
  }

  /** `open`: the directory `rel`, opened (only when its memo cannot stand). */
  private async buildDir(
    rel: string,
    open: () => TreeDir | null,
    sink: BlobSink,
    visit: ((rel: string) => boolean) | null,
    result: BuildResult,
  ): Promise<DirMemo> {
    const cached = this.dirs.get(rel);
    if (cached && visit && !visit(rel)) return cached;
    const dir = open();
    try {
      return await this.buildOpenDir(rel, dir, cached, sink, visit, result);
    } finally {
      if (rel !== "") dir?.close();
    }
  }

  private async buildOpenDir(
    rel: string,
    dir: TreeDir | null,
    cached: DirMemo | undefined,
    sink: BlobSink,
    visit: ((rel: string) => boolean) | null,
    result: BuildResult,
  ): Promise<DirMemo> {
    const { exclude } = this.opts;
    const skip = (path: string, err: unknown): void => {
      if (result.skipped.length < SKIPPED_KEPT) result.skipped.push({ path, reason: errorCode(err) });
    };
    let listed = dir ? this.listing?.get(rel) : undefined;
    if (listed) this.listing?.delete(rel);
    else {
      let names: string[] = [];
      try {
        if (!dir) throw Object.assign(new Error("not a directory now"), { code: "ENOTDIR" });
        names = dir.names();
      } catch (err) {
        skip(rel, err);
      }
      listed = [];
      for (const name of names) {
        const childRel = rel === "" ? name : `${rel}/${name}`;
        const st = dir?.lstat(name);
        if (!st) skip(childRel, Object.assign(new Error("gone"), { code: "ENOENT" }));
        else if (!exclude(childRel, st.isDirectory())) listed.push([name, st]);
      }
    }
    await this.breathe();
    const entries: TreeEntry[] = [];
    const memo: DirMemo = { hash: "", files: 0, bytes: 0, names: [] };
    const present = new Set<string>();
    for (const [name, st] of listed) {
      const childRel = rel === "" ? name : `${rel}/${name}`;
      if (st.isDirectory()) {
        const sub = await this.buildDir(childRel, () => dir?.dir(name) ?? null, sink, visit, result);
        entries.push({ t: "d", n: name, m: st.mode & 0o7777, h: sub.hash });
        memo.files += sub.files;
        memo.bytes += sub.bytes;
      } else if (st.isSymbolicLink()) {
        let target: string;
        try {
          if (!dir) throw new Error("not a directory now");
          target = dir.readlink(name);
        } catch (err) {
          skip(childRel, err);
          continue;
        }
        // Any target is kept, as the user made it (the rule, and why, is in safe-fs).
        const problem = linkTargetProblem(target);
        if (problem) {
          skip(childRel, `it is ${problem}`);
          continue;
        }
        entries.push({ t: "l", n: name, l: target });
        memo.files++;
        this.opts.onFile?.(childRel, st);
      } else if (st.isFile()) {
        const file = await this.fileChunks(childRel, dir, name, st, sink).catch((err: unknown) => {
          skip(childRel, err);
          return null;
        });
        if (!file) continue;
        // Whole seconds, as tar carries them: a restored tree lists the same times, so saving it
        // again stores nothing new.
        entries.push({ t: "f", n: name, m: st.mode & 0o7777, s: file.size, mt: Math.floor(st.mtimeMs / 1000) * 1000, c: file.chunks });
        memo.files++;
        memo.bytes += file.size;
        result.files++;
        result.bytes += file.size;
        this.opts.onProgress?.({ files: result.files, bytes: result.bytes });
        this.opts.onFile?.(childRel, st);
      } else {
        continue; // sockets, fifos and devices are not project content
      }
      present.add(name);
    }
    // Whatever was here and is gone leaves the memos.
    const prefix = rel === "" ? "" : `${rel}/`;
    for (const name of cached?.names ?? []) {
      if (present.has(name)) continue;
      this.files.delete(prefix + name);
      if (this.dirs.has(prefix + name)) this.forget(prefix + name);
    }
    memo.names = [...present];
    const bytes = encodeTree(entries);
    memo.hash = sha256(bytes);
    this.builtDirs.add(rel);
    await sink.add(memo.hash, bytes);
    this.dirs.set(rel, memo);
    return memo;
  }

  /** The file's chunks: remembered if its identity did not move, else read (and handed to the sink). */
  private async fileChunks(
    rel: string,
    dir: TreeDir | null,
    name: string,
    st: Stats,
    sink: BlobSink,
  ): Promise<{ size: number; chunks: string[] } | null> {
    const known = this.files.get(rel);
    if (known && known.size === st.size && known.mtimeMs === st.mtimeMs && known.ctimeMs === st.ctimeMs && known.ino === st.ino && known.mode === st.mode) {
      return { size: known.size, chunks: known.chunks };
    }
    const fd = dir?.openFile(name, st) ?? null;
    if (fd === null) return null;
    this.readFiles.add(rel);
    const chunks: string[] = [];
    try {
      const large = st.size >= MIN_CHUNK;
      const size = await chunkStream(
        async (buf, offset, length, position) => {
          if (large) await this.breathe();
          return readSync(fd, buf, offset, length, position);
        },
        async (bytes) => {
          const hash = sha256(bytes);
          chunks.push(hash);
          await sink.add(hash, bytes);
        },
        this.buffer ?? undefined,
      );
      this.files.set(rel, { size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, mode: st.mode, chunks });
      await this.breathe();
      return { size, chunks };
    } finally {
      closeSync(fd);
    }
  }
}

function errorCode(err: unknown): string {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : String(err);
}

/** Each directory's entries (not those left out) with what `lstat` said, by the directory's path. */
export type Listing = Map<string, Array<[name: string, st: Stats]>>;

/**
 * What a tree holds, by `lstat` only: the bytes of its files and the `n` largest; and, with
 * `listing`, every directory's entries (for `SnapshotBuilder.seedListing`).
 */
export async function treeSize(
  root: string,
  exclude: Excluder,
  n = 5,
  listing?: Listing,
): Promise<{ bytes: number; largest: Array<{ path: string; size: number }> }> {
  let bytes = 0;
  const largest: Array<{ path: string; size: number }> = [];
  listing?.set("", []);
  await walkTree(
    root,
    (rel, st) => {
      if (exclude(rel, st.isDirectory())) return false;
      if (listing) {
        listing.get(parentOf(rel))?.push([rel.slice(rel.lastIndexOf("/") + 1), st]);
        if (st.isDirectory()) listing.set(rel, []);
      }
      if (!st.isFile()) return;
      bytes += st.size;
      if (largest.length < n || st.size > (largest.at(-1)?.size ?? 0)) {
        largest.push({ path: rel, size: st.size });
        largest.sort((a, b) => b.size - a.size);
        largest.length = Math.min(largest.length, n);
      }
    },
    // A directory that could not be listed, or whose entry vanished, is listed again by the
    // build, which reports what it cannot read.
    (rel) => {
      listing?.delete(rel);
      listing?.delete(parentOf(rel));
    },
  );
  return { bytes, largest };
}
