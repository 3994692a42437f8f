/**
 * The workspace journal: every change the program makes under /workspace gets a sequence number,
 * so a client can ask for "everything since N" after a disconnect. chokidar reports changes as
 * they happen; a periodic scan compares the tree with what is known and records anything a
 * missed event left out. Paths the saves leave out (node_modules/ …), `.git` and the files the user
 * handed to the session (`.catty-uploads/`) are not watched.
 */
import { watch, type FSWatcher } from "chokidar";
import type { Stats } from "node:fs";
import { lstat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { createExcluder, type Excluder } from "../src/lib/exclude.ts";
import { FILES_DIR } from "../src/protocol/files.ts";
import type { Log } from "../src/lib/log.ts";
import { walkTree } from "../src/lib/safe-fs.ts";

export type EntryKind = "file" | "dir" | "symlink" | "deleted";

export interface JournalEntry {
  path: string;
  seq: number;
  kind: EntryKind;
}

/** What a path looked like when last seen: kind, size, mtime, mode. */
const signature = (st: Stats): string =>
  st.isDirectory() ? "d" : st.isSymbolicLink() ? `l:${st.mtimeMs}` : `f:${st.size}:${st.mtimeMs}:${st.mode}`;

const kindOf = (st: Stats | null): EntryKind =>
  !st ? "deleted" : st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "deleted";

export interface WatcherOptions {
  root: string;
  log: Log;
  /** How often the safety-net scan runs. */
  scanIntervalMs: number;
  /** Called after changes were recorded (possibly several at once). */
  onChange(): void;
}

export class WorkspaceJournal {
  /** Identifies this journal: sequence numbers from another epoch mean nothing here. */
  readonly epoch = crypto.randomUUID();
  seq = 0;
  private readonly entries = new Map<string, JournalEntry>();
  /** Last known signature of every watched path. */
  private known = new Map<string, string>();
  private watcher: FSWatcher | null = null;
  private scanTimer: Timer | undefined;
  private readonly exclude: Excluder;
  private scanning = false;

  constructor(private readonly opts: WatcherOptions) {
    const base = createExcluder(opts.root, "snapshot", true);
    // Files the user handed to the session came from their machine: not synced back to it.
    this.exclude = (rel, isDir) =>
      rel === ".git" || rel.startsWith(".git/") || rel.includes("/.git/") || rel === FILES_DIR || rel.startsWith(`${FILES_DIR}/`) || base(rel, isDir);
  }

  /** Takes the starting picture of the tree (no changes recorded for it), then watches. */
  async start(): Promise<void> {
    this.known = await this.scan();
    this.watcher = watch(this.opts.root, {
      ignoreInitial: true,
      followSymlinks: false,
      persistent: true,
      ignored: (path: string, stats?: Stats) => {
        const rel = this.rel(path);
        return rel !== "" && this.exclude(rel, stats?.isDirectory() ?? false);
      },
    });
    const onEvent = (path: unknown): void => {
      if (typeof path === "string") void this.touch(this.rel(path));
    };
    this.watcher.on("add", onEvent).on("change", onEvent).on("unlink", onEvent);
    this.watcher.on("addDir", onEvent).on("unlinkDir", onEvent);
    this.watcher.on("error", (err) => this.opts.log.warn("watcher error", { err }));
    await new Promise<void>((resolve) => this.watcher?.once("ready", () => resolve()));
    this.scheduleScan();
  }

  private rel(path: string): string {
    return relative(this.opts.root, path).split(sep).join("/");
  }

  /** Records the current state of `rel` (and, for a vanished directory, of everything under it). */
  private async touch(rel: string): Promise<void> {
    if (!rel || rel.startsWith("..")) return;
    const st = await lstat(join(this.opts.root, rel)).catch(() => null);
    const changed: string[] = [];
    if (!st) {
      const prefix = `${rel}/`;
      for (const path of [...this.known.keys()].filter((p) => p.startsWith(prefix)).sort().reverse()) {
        this.known.delete(path);
        changed.push(path);
      }
      // A late event for a path already recorded as deleted must not move it after its parent's delete.
      if (this.known.delete(rel) || (this.entries.has(rel) && this.entries.get(rel)?.kind !== "deleted")) changed.push(rel);
    } else {
      const sig = signature(st);
      if (this.known.get(rel) === sig) return;
      this.known.set(rel, sig);
      changed.push(rel);
    }
    for (const path of changed) this.record(path, path === rel ? kindOf(st) : "deleted");
    if (changed.length > 0) this.opts.onChange();
  }

  private record(path: string, kind: EntryKind): void {
    this.entries.set(path, { path, seq: ++this.seq, kind });
  }

  /** Every path changed after `seq`, oldest change first. */
  changesSince(seq: number): JournalEntry[] {
    return [...this.entries.values()].filter((e) => e.seq > seq).sort((a, b) => a.seq - b.seq);
  }

  private async scan(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    await walkTree(this.opts.root, (rel, st) => {
      if (this.exclude(rel, st.isDirectory())) return false;
      out.set(rel, signature(st));
    });
    return out;
  }

  private scheduleScan(): void {
    this.scanTimer = setTimeout(async () => {
      await this.rescan();
      if (this.watcher) this.scheduleScan();
    }, this.opts.scanIntervalMs);
  }

  /** The safety net: whatever differs from what is known is recorded as a change. */
  async rescan(): Promise<void> {
    if (this.scanning) return;
    this.scanning = true;
    try {
      const now = await this.scan();
      const paths = new Set([...now.keys(), ...this.known.keys()]);
      const missed = [...paths].filter((p) => now.get(p) !== this.known.get(p)).sort();
      if (missed.length === 0) return;
      this.opts.log.info("scan found changes the watcher missed", { count: missed.length });
      // Deletions deepest first, so a directory's delete follows everything that was in it.
      const ordered = [...missed.filter((p) => now.has(p)), ...missed.filter((p) => !now.has(p)).reverse()];
      for (const p of ordered) {
        const sig = now.get(p);
        if (sig === undefined) this.known.delete(p);
        else this.known.set(p, sig);
        this.record(p, sig === undefined ? "deleted" : sig === "d" ? "dir" : sig.startsWith("l:") ? "symlink" : "file");
      }
      this.opts.onChange();
    } finally {
      this.scanning = false;
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.scanTimer);
    const w = this.watcher;
    this.watcher = null;
    await w?.close();
  }
}
