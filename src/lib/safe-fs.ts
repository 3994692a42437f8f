/**
 * The file-system rules for untrusted paths, in one place. Every path that arrives from outside
 * (a sync-back event, a save's tree, an archive entry) is checked by `checkRelPath`; every write
 * into a tree goes through `checkParents` (each parent a real directory, never a symlink) and
 * `TempFile` (an exclusive, unpredictable temp file renamed into place); walks and comparisons
 * use lstat and O_NOFOLLOW, so a symlink is always looked at, never through.
 *
 * Users: the CLI's sync-back writer and `catty sync` (writes into the user's directory: `.git`
 * refused in any spelling), archive extraction (into a fresh directory: `.git` allowed), the
 * agent's watcher and saver (walks).
 *
 * Without `openat` in Node, a parent checked here can in principle be swapped for a symlink before
 * the write by someone who can already write in the local tree; the checks stop what the remote
 * side sends, and the random temp names stop anyone planting a symlink where we will open.
 */
import { randomBytes } from "node:crypto";
import { closeSync, constants as fsc, fchmodSync, fstatSync, lstatSync, openSync, readlinkSync, unlinkSync, writeSync, type Stats } from "node:fs";
import { lstat, mkdir, open, rename, symlink, unlink, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { CattyError } from "../protocol/errors.ts";
import { pathTree } from "./tree.ts";

// ---------------------------------------------------------------------------------------------
// Path rules

/** Longest relative path accepted, in UTF-8 bytes (Linux's PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Longest path component accepted, in UTF-8 bytes (NAME_MAX on Linux and macOS). */
export const MAX_PART_BYTES = 255;

export interface PathRules {
  /**
   * Accept paths into a `.git` directory. Off by default: writing a repository's config or
   * hooks runs code on the user's next git command. Only extraction into a new directory (a
   * workspace, a download) turns it on, where the session's repository belongs.
   */
  allowGit?: boolean;
  /** Drop empty and `.` parts (tar names like `./a/` or `a//b`) instead of refusing them. */
  lenient?: boolean;
}

export type RelPath = { path: string; problem?: undefined } | { path?: undefined; problem: string };

/**
 * Checks an untrusted relative path: `/`-separated, not absolute, no `..` (nor, unless lenient,
 * empty or `.`) parts, no NUL or backslash, within the length caps, and (unless `allowGit`) no
 * part that names `.git` on any file system we may write to. Returns the normalized path
 * (lenient mode may give "" for the root itself), or why it is refused as a phrase that reads
 * after "it is": "an absolute path".
 */
export function parseRelPath(path: string, rules: PathRules = {}): RelPath {
  // Most paths are short and plain: checked by one expression (each part is ASCII letters,
  // digits, `.`, `_`, `-`, and not `.` or `..`; no part can be too long, nor name `.git`).
  const plain = rules.lenient && path.endsWith("/") ? path.slice(0, -1) : path;
  if (plain.length <= MAX_PART_BYTES && PLAIN_PATH.test(plain) && (rules.allowGit || !/git/i.test(plain))) return { path: plain };
  return checkedRelPath(path, rules);
}

/** `parseRelPath` without its shortcut for plain paths: every rule checked in turn (tests hold the shortcut to it). */
export function checkedRelPath(path: string, rules: PathRules = {}): RelPath {
  if (path.includes("\0")) return { problem: "a path with a NUL character" };
  if (path.includes("\\")) return { problem: "a path with a backslash" };
  if (path.startsWith("/")) return { problem: "an absolute path" };
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return { problem: `a path that is too long (over ${MAX_PATH_BYTES} bytes)` };
  let parts = path.split("/");
  if (rules.lenient) parts = parts.filter((part) => part !== "" && part !== ".");
  else if (path === "") return { problem: "an empty path" };
  // A drive letter, after normalizing (`./C:x` is `C:x`): absolute on Windows.
  if (/^[A-Za-z]:/.test(parts[0] ?? "")) return { problem: "an absolute path" };
  for (const part of parts) {
    if (part === "..") return { problem: "a path with a .. part" };
    if (part === "" || part === ".") return { problem: "a path with an empty or . part" };
    if (Buffer.byteLength(part) > MAX_PART_BYTES) return { problem: `a path with a part that is too long (over ${MAX_PART_BYTES} bytes)` };
    if (!rules.allowGit && isGitName(part)) return { problem: `a path into ${part === ".git" ? ".git" : `${part}, which is .git on some file systems`}` };
  }
  return { path: parts.join("/") };
}

/** Parts of ASCII letters, digits, `.`, `_` and `-`, none `.` or `..`, one `/` between them. */
const PLAIN_PATH = /^(?!\.\.?(?:\/|$))[\w.-]+(?:\/(?!\.\.?(?:\/|$))[\w.-]+)*$/;

/** Why `path` is not a plain relative path under `rules` (see `parseRelPath`), or null when it is. */
export function checkRelPath(path: string, rules: PathRules = {}): string | null {
  return parseRelPath(path, rules).problem ?? null;
}

/** Code points HFS+ ignores in names (git's list, CVE-2014-9390): `.g\u200cit` is `.git` there. */
const HFS_IGNORED = /[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]/g;

/**
 * True when a path component names a `.git` directory on some file system: any letter case
 * (macOS and Windows fold case), with HFS+-ignored code points removed, with trailing dots and
 * spaces or an `:stream` suffix (NTFS drops or splits them), or the 8.3 short name `git~1`. The
 * same name folding git itself refuses in checkouts (core.protectHFS / core.protectNTFS).
 */
export function isGitName(part: string): boolean {
  const name = part.replace(HFS_IGNORED, "").toLowerCase();
  if (name === "git~1") return true;
  return name.startsWith(".git") && /^[. ]*(:.*)?$/.test(name.slice(4));
}

// ---------------------------------------------------------------------------------------------
// Symlink targets
//
// A symlink is data: the user's project, a session's workspace and its saves keep each one as it
// was made, whatever it points to (`/etc/hosts`, `../shared`, a file not there yet, itself).
// Creating a symlink writes nothing through it; what matters is that nothing we write later goes
// *through* one, which the parent checks (`checkParents`, the extractor's own record of what it
// made) and the `O_NOFOLLOW`/`O_EXCL` opens see to. So there are two rules:
//
// - `linkTargetProblem`, for every link anyone stores, restores or creates: a target the file
//   system can hold (not empty, no NUL, at most PATH_MAX bytes). Extraction into a new directory
//   (the agent's restore, `catty download`) needs nothing more: every parent it writes through is
//   a directory it made itself, never a link, so any target is safe to create there.
// - `linkLeavesTree`, for writing into the user's live working directory (`catty sync`,
//   sync-back): there the user's own editor and tools will write through the links later, so a
//   link is only created when it leads to a place inside that directory (as the kernel would
//   resolve it, through the tree's other links). The others stay in the session, reported.

/**
 * Why `target` cannot be a symlink's target anywhere (a phrase that reads after "it is"), or
 * null. The same rule for the builder of saves, the extractor and the sync writers.
 */
export function linkTargetProblem(target: string): string | null {
  if (target === "") return "a symlink with an empty target";
  if (target.includes("\0")) return "a symlink whose target has a NUL character";
  if (Buffer.byteLength(target) > MAX_PATH_BYTES) return `a symlink with a target that is too long (over ${MAX_PATH_BYTES} bytes)`;
  return null;
}

/**
 * What is at `path` (relative to a tree's root) for `linkLeavesTree`: a symlink's target, null
 * for anything else that is there, undefined when nothing is.
 */
export type LinkLookup = (path: string) => string | null | undefined;

/**
 * A `LinkLookup` that asks the file system under `root` with readlink, never through a symlink:
 * below a parent that is one (which `linkLeavesTree` would have followed instead, unless its
 * caller has it otherwise), nothing is there.
 */
export function linksOnDisk(root: string): LinkLookup {
  return (path) => {
    for (let at = path.indexOf("/"); at >= 0; at = path.indexOf("/", at + 1)) {
      if (lstatSync(join(root, path.slice(0, at)), { throwIfNoEntry: false })?.isSymbolicLink() !== false) return undefined;
    }
    try {
      return readlinkSync(join(root, path));
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === "EINVAL" ? null : undefined;
    }
  };
}

/**
 * More link follows than the kernel makes in one lookup (40 on Linux, 32 on macOS): a chain this
 * long ends in ELOOP there, so nothing past it can be reached.
 */
const MAX_LINK_HOPS = 64;

/**
 * Whether the symlink `rel` with `target` leads outside its tree, resolved the way the kernel
 * would: from the link's directory, part by part, following the tree's other links (`lookup`)
 * as they come. Absolute targets (and, anywhere in a chain, targets Windows reads as absolute:
 * a drive letter or a backslash) lead outside; so does a `..` above the root. A dangling link
 * (a part not there) is taken as if that part were a directory: whatever is made there later is
 * inside. A chain that never ends (a loop) reaches nothing. Catches chains like `b -> .` plus
 * `a -> b/b/../..` that each look harmless on their own.
 */
export function linkLeavesTree(rel: string, target: string, lookup: LinkLookup): boolean {
  const absolute = (t: string): boolean => t.startsWith("/") || t.includes("\\") || /^[A-Za-z]:/.test(t);
  if (absolute(target)) return true;
  const stack = rel.split("/").slice(0, -1);
  /** The parts still to walk, the next one last. */
  const pending = target.split("/").reverse();
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.pop()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (stack.length === 0) return true;
      stack.pop();
      continue;
    }
    stack.push(part);
    const path = stack.join("/");
    const link = path === rel ? target : lookup(path);
    if (typeof link !== "string") continue;
    if (++hops > MAX_LINK_HOPS) return false;
    if (absolute(link)) return true;
    stack.pop();
    pending.push(...link.split("/").reverse());
  }
  return false;
}

/**
 * Why a symlink is not written into the user's directory: it leads outside, or (`via`) it would
 * make the link `via` there lead outside. Reads after the path and "it is".
 */
export function outsideLinkReason(target: string, via?: string): string {
  const where = via === undefined ? "outside this directory" : `which would make ${via} lead outside this directory`;
  return `a symlink to ${target}, ${where}: kept in the session`;
}

// ---------------------------------------------------------------------------------------------
// Parents

export type Parents =
  /** Every parent exists and is a real directory. */
  | { kind: "ok" }
  /** `parent` does not exist (only without `create`): nor does anything below it. */
  | { kind: "missing"; parent: string }
  /** `parent` is a symlink: writing below it would go wherever it points. */
  | { kind: "symlink"; parent: string }
  /** `parent` is a file or something else that is not a directory. */
  | { kind: "not-dir"; parent: string };

export interface ParentOptions {
  /** Create missing parents (mode `dirMode`, default 0o755 before umask), checking each with lstat after. */
  create?: boolean;
  dirMode?: number;
  /** lstat results by parent path, shared across calls that walk one unchanging tree (not with `create`). */
  cache?: Map<string, Stats | null>;
}

/**
 * Walks the parents of `rel` (already checked by `checkRelPath`) under `root` with lstat, so a
 * symlink is seen, not followed. `mkdir` never follows a symlink in its last component: if one
 * appears meanwhile, it fails with EEXIST and the lstat after it reports the symlink.
 */
export async function checkParents(root: string, rel: string, opts: ParentOptions = {}): Promise<Parents> {
  for (let at = rel.indexOf("/"); at >= 0; at = rel.indexOf("/", at + 1)) {
    const parent = rel.slice(0, at);
    const abs = join(root, parent);
    let st = opts.cache?.get(parent);
    if (st === undefined) {
      st = await lstat(abs).catch(() => null);
      if (!st && opts.create) {
        await mkdir(abs, opts.dirMode ?? 0o755).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== "EEXIST") throw err;
        });
        st = await lstat(abs);
      }
      opts.cache?.set(parent, st);
    }
    if (!st) return { kind: "missing", parent };
    if (st.isSymbolicLink()) return { kind: "symlink", parent };
    if (!st.isDirectory()) return { kind: "not-dir", parent };
  }
  return { kind: "ok" };
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Flags for creating a file that must not exist yet, and is never opened through a symlink. */
const EXCLUSIVE = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;

/** Creates the new file `path` (EEXIST if anything, a symlink included, is there) and returns its fd. */
export function openExclusive(path: string, mode = 0o600): number {
  return openSync(path, EXCLUSIVE, mode);
}

/**
 * A fresh temp name in `dir`: `.catty-tmp-` and 128 random bits, so nobody can plant a symlink
 * or file there beforehand. Short, whatever the target's name, so it never passes NAME_MAX.
 */
export function tempName(dir: string): string {
  return join(dir, `.catty-tmp-${randomBytes(16).toString("hex")}`);
}

export interface TempFileOptions {
  /**
   * The most bytes this file takes. A write that would pass it throws `too_large` and writes
   * none of its bytes; the file is discarded. Default: no limit.
   */
  maxBytes?: number;
}

/**
 * A new file beside the path it will replace, private (0600) until `commit` renames it into
 * place. Created with O_CREAT|O_EXCL|O_NOFOLLOW under an unpredictable name. Any failure in
 * `write` or `commit` removes it; `discard` (or `await using`) removes it if never committed.
 */
export class TempFile {
  private bytes = 0;
  private fd: number | null;
  private done = false;

  private constructor(
    readonly path: string,
    fd: number,
    private readonly maxBytes: number,
  ) {
    this.fd = fd;
  }

  /** A temp file in the directory of `target` (which must already be checked with `checkParents`). */
  static beside(target: string, opts: TempFileOptions = {}): TempFile {
    const path = tempName(dirname(target));
    return new TempFile(path, openExclusive(path), opts.maxBytes ?? Number.POSITIVE_INFINITY);
  }

  /**
   * For a transfer that declared `size` bytes: refused before anything is created when `size`
   * is over `maxBytes`, and never takes more than `size` bytes (a sender that sends more is
   * stopped at the write that would pass it).
   */
  static forTransfer(target: string, declared: { size: number; maxBytes: number }): TempFile {
    if (declared.size > declared.maxBytes) {
      throw new CattyError("too_large", `${declared.size} bytes is over the limit of ${declared.maxBytes} bytes.`);
    }
    return TempFile.beside(target, { maxBytes: declared.size });
  }

  /**
   * Appends `data`. A write that would pass the limit writes nothing; it, or a failed write,
   * discards the file and throws.
   */
  write(data: Uint8Array): void {
    if (this.fd === null) throw new CattyError("internal", `${this.path} was already closed.`);
    if (this.bytes + data.byteLength > this.maxBytes) {
      this.discardNow();
      throw new CattyError("too_large", `More than ${this.maxBytes} bytes for ${this.path}.`);
    }
    try {
      let off = 0;
      while (off < data.byteLength) off += writeSync(this.fd, data, off);
    } catch (err) {
      this.discardNow();
      throw err;
    }
    this.bytes += data.byteLength;
  }

  /** Bytes written so far. */
  get written(): number {
    return this.bytes;
  }

  /** Sets `mode` (default stays 0600), closes the file and renames it over `dest`. */
  async commit(dest: string, mode?: number): Promise<void> {
    if (this.fd === null || this.done) throw new CattyError("internal", `${this.path} was already closed.`);
    try {
      if (mode !== undefined) fchmodSync(this.fd, mode);
      closeSync(this.fd);
      this.fd = null;
      await rename(this.path, dest);
      this.done = true;
    } catch (err) {
      this.discardNow();
      throw err;
    }
  }

  /** Closes and removes the file unless it was committed. Safe to call more than once. */
  async discard(): Promise<void> {
    this.discardNow();
  }

  private discardNow(): void {
    if (this.fd !== null) {
      const fd = this.fd;
      this.fd = null;
      try {
        closeSync(fd);
      } catch {
        // already closed: nothing to release
      }
    }
    if (this.done) return;
    this.done = true;
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.discard();
  }
}

/** Writes `data` to `target` atomically: a `TempFile` beside it, renamed over it with `mode`. */
export async function writeFileAtomic(target: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = TempFile.beside(target);
  tmp.write(typeof data === "string" ? new TextEncoder().encode(data) : data);
  await tmp.commit(target, mode);
}

/**
 * Makes `dest` a symlink to `target`, atomically: the link is made at a fresh temp name beside it
 * (`tempName`) and renamed over `dest`, so `dest` is at every moment the old entry or the new
 * link. A rename replaces a file or a symlink itself, never what a symlink points to; over a
 * directory it fails (EISDIR) and the temp link goes, so a directory is never replaced. The
 * parents must be checked first (`checkParents`); the target by `linkTargetProblem` (it is
 * again here) and, in a live tree, by `linkLeavesTree`.
 */
export async function symlinkAtomic(dest: string, target: string): Promise<void> {
  const problem = linkTargetProblem(target);
  if (problem) throw new CattyError("bad_request", `Refusing to make ${dest}: it would be ${problem}.`);
  const tmp = tempName(dirname(dest));
  await symlink(target, tmp);
  await rename(tmp, dest).catch(async (err: unknown) => {
    await unlink(tmp).catch(() => {});
    throw err;
  });
}

// ---------------------------------------------------------------------------------------------
// Reading

/** What `walkTree`'s visitor returns: false skips the entry (a directory's contents too). */
export type Visit = (rel: string, st: Stats) => boolean | void | Promise<boolean | void>;

/**
 * Depth-first walk under `root` by plain paths, parents before children, names sorted, every
 * entry lstat'ed (symlinks are reported, never followed): `pathTree(root).walk`, for trees only
 * the walker writes. A tree someone else writes meanwhile (a session's workspace) is walked
 * through `workspaceTree` (src/lib/tree.ts).
 */
export async function walkTree(root: string, visit: Visit, onError?: (rel: string, err: unknown) => void): Promise<void> {
  await pathTree(root).walk((rel, st) => visit(rel, st), onError);
}

const COMPARE_CHUNK = 256 * 1024;

/**
 * True when `a` and `b` are regular files with the same bytes: sizes first, then contents. Both
 * are opened with O_NOFOLLOW (and O_NONBLOCK, so a fifo swapped in cannot hang us) and checked
 * with fstat; a symlink or anything but a regular file compares unequal.
 */
export async function sameContent(a: string, b: string): Promise<boolean> {
  const fa = await openForCompare(a);
  if (!fa) return false;
  try {
    const fb = await openForCompare(b);
    if (!fb) return false;
    try {
      const [sa, sb] = [await fa.stat(), await fb.stat()];
      if (!sa.isFile() || !sb.isFile() || sa.size !== sb.size) return false;
      const ba = Buffer.allocUnsafe(COMPARE_CHUNK);
      const bb = Buffer.allocUnsafe(COMPARE_CHUNK);
      for (;;) {
        const na = await readFull(fa, ba);
        const nb = await readFull(fb, bb);
        if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
        if (na < COMPARE_CHUNK) return true;
      }
    } finally {
      await fb.close();
    }
  } finally {
    await fa.close();
  }
}

async function openForCompare(path: string): Promise<FileHandle | null> {
  return open(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ELOOP") return null;
    throw err;
  });
}

/** Reads until `buf` is full or the file ends; returns the bytes read. */
export async function readFull(handle: FileHandle, buf: Buffer): Promise<number> {
  let filled = 0;
  while (filled < buf.byteLength) {
    const { bytesRead } = await handle.read(buf, filled, buf.byteLength - filled, null);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

/**
 * Opens for reading the regular file a walk or a watcher found at `abs` (its `lstat` is `seen`),
 * and only that file: not a symlink put in its place (`O_NOFOLLOW`), not a FIFO that would block
 * (`O_NONBLOCK`), and not a file elsewhere reached through a parent directory swapped for a
 * symlink meanwhile (the opened file must be the one seen: same device and inode). A reader with
 * more rights than the tree's writer (the agent, beside a sandboxed program) reads nothing the
 * writer could not. Null when the file is gone or is not the one seen.
 */
export function openSeenSync(abs: string, seen: Stats): number | null {
  let fd: number;
  try {
    fd = openSync(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch {
    return null;
  }
  const st = fstatSync(fd);
  if (st.isFile() && st.dev === seen.dev && st.ino === seen.ino) return fd;
  closeSync(fd);
  return null;
}

/** `openSeenSync` for the promise API. */
export async function openSeen(abs: string, seen: Stats): Promise<FileHandle | null> {
  const fh = await open(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK).catch(() => null);
  if (!fh) return null;
  const st = await fh.stat().catch(() => null);
  if (st?.isFile() && st.dev === seen.dev && st.ino === seen.ino) return fh;
  await fh.close();
  return null;
}
