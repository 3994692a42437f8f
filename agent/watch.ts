/**
 * The workspace journal: every change the program makes under /workspace gets a sequence number,
 * so a client can ask for "everything since N" after a disconnect. Each directory is watched with
 * inotify (`fs.watch`, one watch per directory, not per file); an event is checked against what
 * was last seen of the path (kind, size, mtime, mode) and recorded only if it differs. A new
 * directory is watched and read as it appears (what was written into it before the watch counts
 * too). The safety net is cheap: every `scanIntervalMs` the watched directories' mtimes are
 * checked and only a directory whose mtime moved is listed again; every five minutes or so
 * (`FULL_SCAN_EVERY` checks) the whole tree is compared, for content changes an event missed.
 * Paths the saves leave out (node_modules/ …), `.git` and the files the user handed to the session
 * (`.catty-uploads/`) are not watched.
 *
 * The workspace is read through `Tree` (src/lib/tree.ts): directories by descriptor, never through
 * a symlink. A directory is watched by its inode: moved away and replaced by a symlink, its events
 * still name its old path, which is then looked up afresh (and found to be a symlink, or gone).
 */
import type { FSWatcher, Stats } from "node:fs";
import { createExcluder, type Excluder } from "../src/lib/exclude.ts";
import { FILES_DIR } from "../src/protocol/files.ts";
import type { Log } from "../src/lib/log.ts";
import type { Tree, TreeDir } from "../src/lib/tree.ts";

export type EntryKind = "file" | "dir" | "symlink" | "deleted";

export interface JournalEntry {
  path: string;
  seq: number;
  kind: EntryKind;
}

/**
 * What a path looked like when last seen: kind, size, mtime, mode. Joined, not a template
 * literal: JSC keeps a concatenation as a rope (a cell per piece, each number as a string of its
 * own) until something reads it, and most signatures are never read again. Flat, the starting
 * picture of 20,000 files takes about 2 MB less.
 */
const signature = (st: Stats): string =>
  st.isDirectory() ? "d" : st.isSymbolicLink() ? symlinkSignature(st.mtimeMs) : fileSignature(st.size, st.mtimeMs, st.mode);

/** The signatures of a regular file, a symlink and a directory (for a starting picture made elsewhere). */
export const fileSignature = (size: number, mtimeMs: number, mode: number): string => ["f", size, mtimeMs, mode].join(":");
export const symlinkSignature = (mtimeMs: number): string => ["l", mtimeMs].join(":");
export const DIR_SIGNATURE = "d";

const kindOfSignature = (sig: string | undefined): EntryKind =>
  sig === undefined ? "deleted" : sig === "d" ? "dir" : sig.startsWith("l:") ? "symlink" : "file";

/** Every this many directory checks (5 min at the default 5 s), the whole tree is compared. */
export const FULL_SCAN_EVERY = 60;

export interface WatcherOptions {
  /** The workspace (`workspaceTree`). */
  tree: Tree;
  log: Log;
  /** How often the watched directories' mtimes are checked. */
  scanIntervalMs: number;
  /** Called after changes were recorded (possibly several at once). */
  onChange(): void;
}

interface WatchedDir {
  watcher: FSWatcher | null;
  mtimeMs: number;
}

export class WorkspaceJournal {
  /** Identifies this journal: sequence numbers from another epoch mean nothing here. */
  readonly epoch = crypto.randomUUID();
  seq = 0;
  private readonly entries = new Map<string, JournalEntry>();
  /** Last known signature of every watched path. */
  private known = new Map<string, string>();
  private readonly dirs = new Map<string, WatchedDir>();
  private scanTimer: Timer | undefined;
  private readonly exclude: Excluder;
  /** One comparison at a time (events, directory lists, scans), in arrival order. */
  private queue: Promise<void> = Promise.resolve();
  private checks = 0;
  private closed = false;

  constructor(private readonly opts: WatcherOptions) {
    const base = createExcluder(opts.tree.root, "snapshot", true);
    // Files the user handed to the session came from their machine: not synced back to it.
    this.exclude = (rel, isDir) =>
      rel === ".git" || rel.startsWith(".git/") || rel.includes("/.git/") || rel === FILES_DIR || rel.startsWith(`${FILES_DIR}/`) || base(rel, isDir);
  }

  /**
   * Takes the starting picture of the tree, then watches. With `since` (what a restore wrote, by
   * path, as signatures), whatever differs from it by then is recorded as changed: the program
   * may start while the picture is taken, and what it does meanwhile is not lost. Without it, no
   * change is recorded for the picture.
   */
  async start(since?: ReadonlyMap<string, string>): Promise<void> {
    await this.watchDir("");
    if (since) {
      this.known = new Map([...since].filter(([path, sig]) => !this.exclude(path, sig === DIR_SIGNATURE)));
      this.apply(await this.scan("", true), () => true);
    } else {
      this.known = await this.scan("", true);
    }
    this.scheduleCheck();
  }

  private serial(work: () => Promise<void>): Promise<void> {
    this.queue = this.queue.then(work).catch((err: unknown) => this.opts.log.warn("workspace journal error", { err }));
    return this.queue;
  }

  /**
   * Watches the directory `rel` (`seen`: how it was just found, in `parent`, when it was). The
   * watch is on the directory opened, whatever its name leads to later.
   */
  private async watchDir(rel: string, seen?: Stats, parent?: TreeDir): Promise<void> {
    if (this.closed || this.dirs.has(rel)) return;
    const st = seen ?? this.opts.tree.lstat(rel);
    if (!st?.isDirectory()) return;
    const { tree } = this.opts;
    const dir = parent ? parent.dir(rel.slice(rel.lastIndexOf("/") + 1)) : tree.dir(rel);
    if (!dir) return;
    let watcher: FSWatcher | null = null;
    try {
      watcher = dir.watch((_event, name) => {
        if (typeof name !== "string" || name === "") void this.serial(() => this.relist(rel));
        else void this.serial(() => this.touch(rel === "" ? name : `${rel}/${name}`));
      });
      watcher.on("error", () => this.unwatch(rel));
    } catch (err) {
      // Out of inotify watches, or gone meanwhile: the directory checks still cover it.
      this.opts.log.debug("could not watch a directory", { path: rel, err });
    } finally {
      if (rel !== "") dir.close();
    }
    this.dirs.set(rel, { watcher, mtimeMs: st.mtimeMs });
  }

  private unwatch(rel: string): void {
    const prefix = `${rel}/`;
    for (const [path, dir] of this.dirs) {
      if (path !== rel && !path.startsWith(prefix)) continue;
      dir.watcher?.close();
      this.dirs.delete(path);
    }
  }

  /** Records the current state of `rel`, and of everything under it when it is a directory that appeared or went. */
  private async touch(rel: string): Promise<void> {
    if (this.closed || !rel) return;
    const st = this.opts.tree.lstat(rel);
    if (st && this.exclude(rel, st.isDirectory())) return;
    if (st?.isDirectory()) {
      if (this.known.get(rel) === "d") return;
      // A new directory (or a file replaced by one): it and everything already in it.
      await this.watchDir(rel);
      const now = await this.scan(rel, true);
      now.set(rel, "d");
      this.apply(now, (p) => p === rel || p.startsWith(`${rel}/`));
      return;
    }
    const now = new Map<string, string>();
    if (st && (st.isFile() || st.isSymbolicLink())) now.set(rel, signature(st));
    if (!st && this.known.get(rel) === "d") this.unwatch(rel);
    this.apply(now, (p) => p === rel || p.startsWith(`${rel}/`));
  }

  /** Lists one directory again and records what differs among its direct entries. */
  private async relist(rel: string): Promise<void> {
    if (this.closed) return;
    const dir = this.opts.tree.dir(rel);
    let names: string[] | null = null;
    try {
      names = dir?.names() ?? null;
    } catch {
      // unreadable now: looked at as a path below
    } finally {
      if (rel !== "") dir?.close();
    }
    if (names === null) {
      if (rel !== "") await this.touch(rel);
      return;
    }
    const here = new Set<string>();
    for (const name of names) {
      const path = rel === "" ? name : `${rel}/${name}`;
      here.add(path);
      await this.touch(path);
    }
    const prefix = rel === "" ? "" : `${rel}/`;
    for (const path of [...this.known.keys()]) {
      if (path.startsWith(prefix) && !path.slice(prefix.length).includes("/") && !here.has(path)) await this.touch(path);
    }
  }

  /**
   * Records every difference between `now` (what a scan found) and what is known, among the
   * paths `inScope` covers. Deletions deepest first, so a directory's delete follows everything
   * that was in it; a deleted directory's watch goes.
   */
  private apply(now: Map<string, string>, inScope: (path: string) => boolean): void {
    const paths = new Set([...now.keys(), ...[...this.known.keys()].filter(inScope)]);
    const changed = [...paths].filter((p) => now.get(p) !== this.known.get(p)).sort();
    if (changed.length === 0) return;
    const ordered = [...changed.filter((p) => now.has(p)), ...changed.filter((p) => !now.has(p)).reverse()];
    for (const p of ordered) {
      const sig = now.get(p);
      if (sig === undefined) {
        if (this.known.get(p) === "d") this.unwatch(p);
        this.known.delete(p);
      } else this.known.set(p, sig);
      this.record(p, kindOfSignature(sig));
    }
    this.opts.onChange();
  }

  private record(path: string, kind: EntryKind): void {
    this.entries.set(path, { path, seq: ++this.seq, kind });
  }

  /** Every path changed after `seq`, oldest change first. */
  changesSince(seq: number): JournalEntry[] {
    return [...this.entries.values()].filter((e) => e.seq > seq).sort((a, b) => a.seq - b.seq);
  }

  /**
   * Signatures of everything under `rel` (not `rel` itself). With `watch` (`rel` watched already),
   * each directory found is watched before the walk lists it: whatever is written into it after it
   * was listed raises an event, and whatever was written before is in the scan. (Watching a
   * directory only after the scan that found it would miss a file created in between, and its
   * mtime, taken when the watch starts, would hide it from the directory checks too.)
   */
  private async scan(rel: string, watch = false): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    await this.opts.tree.walk(
      async (path, st, parent) => {
        if (this.exclude(path, st.isDirectory())) return false;
        if (st.isDirectory() || st.isFile() || st.isSymbolicLink()) out.set(path, signature(st));
        if (watch && st.isDirectory()) await this.watchDir(path, st, parent);
      },
      undefined,
      rel,
    );
    return out;
  }

  private scheduleCheck(): void {
    this.scanTimer = setTimeout(async () => {
      await (++this.checks % FULL_SCAN_EVERY === 0 ? this.rescan() : this.checkDirs());
      if (!this.closed) this.scheduleCheck();
    }, this.opts.scanIntervalMs);
  }

  /** The cheap safety net: directories whose mtime moved are listed again. */
  async checkDirs(): Promise<void> {
    await this.serial(async () => {
      for (const [rel, dir] of [...this.dirs]) {
        const st = this.opts.tree.lstat(rel);
        if (st?.isDirectory() && st.mtimeMs === dir.mtimeMs) continue;
        if (st) dir.mtimeMs = st.mtimeMs;
        this.opts.log.debug("a directory changed without an event", { path: rel });
        await this.relist(rel);
      }
    });
  }

  /** The whole safety net: whatever differs from what is known is recorded as a change. */
  async rescan(): Promise<void> {
    await this.serial(async () => {
      const now = await this.scan("", true);
      const before = this.seq;
      this.apply(now, () => true);
      if (this.seq !== before) this.opts.log.info("scan found changes the watcher missed", { count: this.seq - before });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.scanTimer);
    for (const dir of this.dirs.values()) dir.watcher?.close();
    this.dirs.clear();
  }
}
