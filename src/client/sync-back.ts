/**
 * Sync-back, client side: applies the workspace changes the agent sends under the directory
 * `catty` runs in. Whatever the agent sends, nothing is written or deleted outside that
 * directory: paths must be relative and plain, every parent must be a real directory (never a
 * symlink), and the target itself is never a symlink. Files are written to a temp file beside the
 * target and renamed into place. A local file edited since Catty last wrote it is kept beside the
 * new one as `NAME.catty-local`. Where the client stands is remembered per session and
 * directory under `$CATTY_HOME/sync/`, so a later attach catches up with what it missed.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { chmod, lstat, mkdir, readdir, readFile, realpath, rename, rm, rmdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createExcluder } from "../lib/exclude.ts";
import type { Log } from "../lib/log.ts";
import type { SyncEvent, SyncPosition } from "../protocol/index.ts";

export interface SyncState {
  root: string;
  epoch: string | null;
  seq: number;
  /** What Catty last wrote (or uploaded) at each path, to tell local edits apart. */
  files: Record<string, { size: number; mtimeMs: number }>;
}

export interface SyncSummary {
  written: number;
  deleted: number;
  conflicts: string[];
  refused: string[];
  skipped: string[];
}

/** `$CATTY_HOME/sync/<label>-<hash of the directory>.json` */
export function syncStateFile(home: string, label: string, root: string): string {
  const dirHash = createHash("sha256").update(root).digest("hex").slice(0, 16);
  return join(home, "sync", `${label}-${dirHash}.json`);
}

export async function loadSyncState(file: string, root: string): Promise<SyncState> {
  try {
    const raw = JSON.parse(await readFile(file, "utf8")) as SyncState;
    if (raw.root === root && typeof raw.seq === "number" && raw.files && typeof raw.files === "object") return raw;
  } catch {
    // no state yet
  }
  return { root, epoch: null, seq: 0, files: {} };
}

export async function saveSyncState(file: string, state: SyncState): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await Bun.write(tmp, JSON.stringify(state));
  await rename(tmp, file);
}

/** A path from the agent, checked: relative, `/`-separated, no empty, `.` or `..` parts. */
export function checkRelPath(path: string): string | null {
  if (!path || path.length > 4096 || path.includes("\0") || path.includes("\\")) return "not a plain relative path";
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) return "an absolute path";
  const parts = path.split("/");
  if (parts.some((p) => p === "" || p === "." || p === "..")) return "a path with empty, . or .. parts";
  return null;
}

interface Incoming {
  path: string;
  seq: number;
  tmp: string;
  fd: number;
  bytes: number;
}

export class SyncBackWriter {
  private realRoot: string | null = null;
  private readonly incoming = new Map<number, Incoming>();
  readonly summary: SyncSummary = { written: 0, deleted: 0, conflicts: [], refused: [], skipped: [] };
  private dirty = false;
  private saveTimer: Timer | undefined;
  /** Applies events one at a time, in order. */
  private chain: Promise<void> = Promise.resolve();
  active = false;
  /** Tells the user something once (the attach shows it on the status line). */
  onNotice: (message: string) => void = () => {};

  constructor(
    private readonly state: SyncState,
    private readonly stateFile: string,
    private readonly log: Log,
  ) {}

  get position(): SyncPosition {
    return { epoch: this.state.epoch, seq: this.state.seq };
  }

  event(e: SyncEvent): void {
    this.chain = this.chain.then(() => this.apply(e)).catch((err: unknown) => this.log.error("sync-back event failed", { err }));
  }

  bytes(transfer: number, data: Uint8Array): void {
    this.chain = this.chain
      .then(() => {
        const inc = this.incoming.get(transfer);
        if (!inc) return;
        writeSync(inc.fd, data);
        inc.bytes += data.length;
      })
      .catch((err: unknown) => this.log.error("sync-back write failed", { transfer, err }));
  }

  /** Waits for everything received so far to be applied, and saves the state. */
  async flush(): Promise<void> {
    await this.chain;
    for (const inc of this.incoming.values()) {
      closeSync(inc.fd);
      await rm(inc.tmp, { force: true });
    }
    this.incoming.clear();
    clearTimeout(this.saveTimer);
    await saveSyncState(this.stateFile, this.state);
  }

  private advance(seq: number): void {
    if (seq > this.state.seq) this.state.seq = seq;
    this.dirty = true;
    this.saveTimer ??= setTimeout(() => {
      this.saveTimer = undefined;
      if (this.dirty) void saveSyncState(this.stateFile, this.state).catch(() => {});
      this.dirty = false;
    }, 1000);
  }

  private refuse(path: string, why: string): void {
    this.log.warn("sync-back refused a path", { path, why });
    this.summary.refused.push(`${path} (${why})`);
  }

  private async root(): Promise<string> {
    this.realRoot ??= await realpath(this.state.root);
    return this.realRoot;
  }

  /** The absolute target for `rel`, creating missing parent directories; null (and reported) when unsafe. */
  private async target(rel: string, createParents: boolean): Promise<string | null> {
    const bad = checkRelPath(rel);
    if (bad) {
      this.refuse(rel, bad);
      return null;
    }
    const root = await this.root();
    const parts = rel.split("/");
    let dir = root;
    for (const part of parts.slice(0, -1)) {
      dir = join(dir, part);
      const st = await lstat(dir).catch(() => null);
      if (!st) {
        if (!createParents) return null;
        await mkdir(dir, { mode: 0o755 });
        continue;
      }
      if (st.isSymbolicLink()) {
        this.refuse(rel, `it goes through the symlink ${dir.slice(root.length + 1)}`);
        return null;
      }
      if (!st.isDirectory()) {
        this.refuse(rel, `${dir.slice(root.length + 1)} is not a directory here`);
        return null;
      }
    }
    const abs = join(dir, parts[parts.length - 1] as string);
    const st = await lstat(abs).catch(() => null);
    if (st?.isSymbolicLink()) {
      this.refuse(rel, "it is a symlink here");
      return null;
    }
    return abs;
  }

  private async apply(e: SyncEvent): Promise<void> {
    switch (e.kind) {
      case "start":
        // A new subscription: transfers of the previous one will never end.
        for (const inc of this.incoming.values()) {
          closeSync(inc.fd);
          await rm(inc.tmp, { force: true });
        }
        this.incoming.clear();
        if (e.epoch !== this.state.epoch) {
          this.state.epoch = e.epoch;
          this.state.seq = e.seq;
        }
        this.active = true;
        return;
      case "caught_up":
        this.advance(e.seq);
        return;
      case "file": {
        const abs = await this.target(e.path, true);
        if (!abs) {
          this.advance(e.seq);
          return;
        }
        const tmp = join(dirname(abs), `.catty-tmp-${process.pid}-${e.transfer}`);
        this.incoming.set(e.transfer, { path: e.path, seq: e.seq, tmp, fd: openSync(tmp, "w", 0o644), bytes: 0 });
        return;
      }
      case "file_end": {
        const inc = this.incoming.get(e.transfer);
        if (!inc) return;
        this.incoming.delete(e.transfer);
        closeSync(inc.fd);
        if (e.bytes !== undefined && e.bytes !== inc.bytes) {
          // Bytes went missing on the way: never place a partial file (the re-attach sends it again).
          this.log.warn("sync-back transfer incomplete; discarded", { path: inc.path, got: inc.bytes, sent: e.bytes });
          await rm(inc.tmp, { force: true });
          return;
        }
        await this.place(inc);
        this.advance(inc.seq);
        return;
      }
      case "dir": {
        const abs = await this.target(e.path, true);
        if (abs && !(await lstat(abs).catch(() => null))) await mkdir(abs, { mode: 0o755 });
        this.advance(e.seq);
        return;
      }
      case "delete":
        await this.remove(e.path);
        this.advance(e.seq);
        return;
      case "skip":
        this.summary.skipped.push(`${e.path}: ${e.reason}`);
        this.log.info("sync-back skipped a file", { path: e.path, reason: e.reason });
        this.advance(e.seq);
        return;
      default: {
        const never: never = e;
        return never;
      }
    }
  }

  /** Moves a received file into place, keeping a locally edited version beside it. */
  private async place(inc: Incoming): Promise<void> {
    const abs = await this.target(inc.path, true);
    if (!abs) {
      await rm(inc.tmp, { force: true });
      return;
    }
    const here = await lstat(abs).catch(() => null);
    if (here && !here.isFile()) {
      this.refuse(inc.path, here.isDirectory() ? "a directory is in the way here" : "not a regular file here");
      await rm(inc.tmp, { force: true });
      return;
    }
    if (here) {
      const known = this.state.files[inc.path];
      const editedHere = known
        ? known.size !== here.size || known.mtimeMs !== here.mtimeMs
        : !(await sameContent(abs, inc.tmp));
      if (editedHere) {
        const keep = await freeName(`${abs}.catty-local`);
        await rename(abs, keep);
        const kept = keep.slice((await this.root()).length + 1);
        this.summary.conflicts.push(kept);
        if (this.summary.conflicts.length === 1) this.onNotice(`your local edit of ${inc.path} was kept as ${kept}`);
      }
      await chmod(inc.tmp, here.mode & 0o7777);
    }
    await rename(inc.tmp, abs);
    const st = await stat(abs);
    this.state.files[inc.path] = { size: st.size, mtimeMs: st.mtimeMs };
    this.summary.written++;
  }

  private async remove(rel: string): Promise<void> {
    const abs = await this.target(rel, false);
    if (!abs) return;
    const here = await lstat(abs).catch(() => null);
    if (!here) return;
    if (here.isDirectory()) {
      // Only an empty directory goes: local files the session never had stay.
      await rmdir(abs).catch(() => {});
      return;
    }
    const known = this.state.files[rel];
    if (!known) {
      // Catty never wrote or uploaded this file: it is the user's, whatever the session did.
      this.summary.conflicts.push(`${rel} (deleted in the session, kept here: Catty never wrote it)`);
      return;
    }
    if (known.size !== here.size || known.mtimeMs !== here.mtimeMs) {
      this.summary.conflicts.push(`${rel} (deleted in the session, kept here: edited locally)`);
      return;
    }
    await rm(abs, { force: true });
    delete this.state.files[rel];
    this.summary.deleted++;
  }
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const [x, y] = [Bun.file(a), Bun.file(b)];
  if (x.size !== y.size) return false;
  const hash = async (f: Blob): Promise<string> => new Bun.CryptoHasher("sha256").update(await f.arrayBuffer()).digest("hex");
  return (await hash(x)) === (await hash(y));
}

async function freeName(base: string): Promise<string> {
  for (let i = 0; ; i++) {
    const name = i === 0 ? base : `${base}.${i}`;
    if (!(await lstat(name).catch(() => null))) return name;
  }
}

/** What `catty new` uploaded: remembered so a later local edit is told apart from the upload. */
export async function recordTree(root: string, includeGit: boolean): Promise<SyncState["files"]> {
  const exclude = createExcluder(root, "upload", includeGit);
  const files: SyncState["files"] = {};
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const childRel = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(dir, name)).catch(() => null);
      if (!st || exclude(childRel, st.isDirectory())) continue;
      if (st.isDirectory()) {
        if (childRel !== ".git") await walk(join(dir, name), childRel);
      } else if (st.isFile()) files[childRel] = { size: st.size, mtimeMs: st.mtimeMs };
    }
  };
  await walk(root, "");
  return files;
}
