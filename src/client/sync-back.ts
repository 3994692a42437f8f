/**
 * Sync-back, client side: applies the workspace changes the agent sends under the directory
 * `catty` runs in. The agent is not trusted: whatever it sends, nothing is written or deleted
 * outside that directory or inside a `.git` directory (in any letter case), as the rules of
 * `lib/safe-fs.ts` say: paths must be relative and plain, every parent must be a real directory
 * (never a symlink), and the target itself is never a symlink (but for one Catty made, which is
 * replaced whole, never written through). A file's bytes go to an exclusive temp file with a
 * random name beside the target, never more than the size the agent declared nor the writer's
 * cap, and are renamed into place whole. A symlink is made at a temp name and renamed into place,
 * and only when it leads somewhere inside the directory (`linkLeavesTree`: the user's own editor
 * and tools will write through it); one that leads outside stays in the session, reported as
 * skipped. A local file (or link) edited since Catty last wrote it is kept beside the new one as
 * `NAME.catty-local`. Where the client stands is
 * remembered per session and directory under `$CATTY_HOME/sync/`, so a later attach catches up
 * with what it missed.
 */
import { createHash } from "node:crypto";
import type { Stats } from "node:fs";
import { lstat, mkdir, readFile, readlink, realpath, rename, rm, rmdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { formatBytes } from "../lib/archive.ts";
import type { Log } from "../lib/log.ts";
import {
  checkParents,
  checkRelPath,
  linkLeavesTree,
  linksOnDisk,
  type LinkLookup,
  linkTargetProblem,
  outsideLinkReason,
  sameContent,
  symlinkAtomic,
  TempFile,
  writeFileAtomic,
} from "../lib/safe-fs.ts";
import { CattyError } from "../protocol/errors.ts";
import { DEFAULT_SYNC_MAX_BYTES } from "../protocol/agent-env.ts";
import type { SyncEvent, SyncPosition } from "../protocol/index.ts";

export interface SyncState {
  root: string;
  epoch: string | null;
  seq: number;
  /** What Catty last wrote (or uploaded) at each path, to tell local edits apart. */
  files: Record<string, { size: number; mtimeMs: number }>;
  /**
   * The symlinks sync-back made here, by path, with their targets: a later link must not make one
   * of them lead outside (`L -> M/../..` is inside while `M -> d/e`, and would not be with `M -> d`).
   */
  links?: Record<string, string>;
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
  await writeFileAtomic(file, JSON.stringify(state));
}


export interface SyncBackOptions {
  /**
   * The largest file the writer accepts; a transfer that declares more is skipped (reported, get
   * it with `catty download`). Default 50 MB, as the agent's `CATTY_SYNC_MAX_BYTES`.
   */
  maxFileBytes?: number;
}

interface Incoming {
  path: string;
  seq: number;
  /** Where the bytes go until `file_end`; null once the transfer failed (its bytes are dropped). */
  tmp: TempFile | null;
  /** The agent sent more bytes than its `file` event declared. */
  overSent?: boolean;
}

export class SyncBackWriter {
  private realRoot: string | null = null;
  private readonly incoming = new Map<number, Incoming>();
  readonly summary: SyncSummary = { written: 0, deleted: 0, conflicts: [], refused: [], skipped: [] };
  private dirty = false;
  private saveTimer: Timer | undefined;
  /** Applies events one at a time, in order. */
  private chain: Promise<void> = Promise.resolve();
  private readonly maxFileBytes: number;
  active = false;
  /** Tells the user something once (the attach shows it on the status line). */
  onNotice: (message: string) => void = () => {};

  constructor(
    private readonly state: SyncState,
    private readonly stateFile: string,
    private readonly log: Log,
    opts: SyncBackOptions = {},
  ) {
    this.maxFileBytes = opts.maxFileBytes ?? DEFAULT_SYNC_MAX_BYTES;
  }

  get position(): SyncPosition {
    return { epoch: this.state.epoch, seq: this.state.seq, links: true };
  }

  event(e: SyncEvent): void {
    this.chain = this.chain.then(() => this.apply(e)).catch((err: unknown) => this.log.error("sync-back event failed", { err }));
  }

  bytes(transfer: number, data: Uint8Array): void {
    this.chain = this.chain
      .then(() => {
        const inc = this.incoming.get(transfer);
        if (!inc?.tmp) return;
        try {
          inc.tmp.write(data);
        } catch (err) {
          // The temp file is gone already; the rest of this transfer's bytes are dropped.
          inc.tmp = null;
          inc.overSent = err instanceof CattyError && err.code === "too_large";
          if (!inc.overSent) throw err;
        }
      })
      .catch((err: unknown) => this.log.error("sync-back write failed", { transfer, err }));
  }

  /** Waits for everything received so far to be applied, and saves the state. */
  async flush(): Promise<void> {
    await this.chain;
    await this.dropIncoming();
    clearTimeout(this.saveTimer);
    await saveSyncState(this.stateFile, this.state);
  }

  private async dropIncoming(): Promise<void> {
    for (const inc of this.incoming.values()) await inc.tmp?.discard();
    this.incoming.clear();
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

  /**
   * The absolute target for `rel`, creating missing parent directories; null (and reported) when
   * unsafe. A symlink there is refused unless `anyLink`, or Catty made it and it is unchanged
   * (it is then replaced whole or removed, never written through).
   */
  private async target(rel: string, createParents: boolean, anyLink = false): Promise<string | null> {
    const bad = checkRelPath(rel);
    if (bad) {
      this.refuse(rel, bad);
      return null;
    }
    const root = await this.root();
    const parents = await checkParents(root, rel, { create: createParents });
    switch (parents.kind) {
      case "missing":
        return null;
      case "symlink":
        this.refuse(rel, `it goes through the symlink ${parents.parent}`);
        return null;
      case "not-dir":
        this.refuse(rel, `${parents.parent} is not a directory here`);
        return null;
      case "ok":
        break;
    }
    const abs = join(root, rel);
    const st = await lstat(abs).catch(() => null);
    if (st?.isSymbolicLink() && !anyLink && !this.unchanged(rel, st)) {
      this.refuse(rel, "it is a symlink here");
      return null;
    }
    return abs;
  }

  /** Whether what is at `rel` (`here`) is what Catty last wrote (or uploaded) there. */
  private unchanged(rel: string, here: Stats): boolean {
    const known = this.state.files[rel];
    return known !== undefined && known.size === here.size && known.mtimeMs === here.mtimeMs;
  }

  private async apply(e: SyncEvent): Promise<void> {
    switch (e.kind) {
      case "start":
        // A new subscription: transfers of the previous one will never end.
        await this.dropIncoming();
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
        // A transfer number used twice: the first transfer is over, whatever it held.
        await this.incoming.get(e.transfer)?.tmp?.discard();
        this.incoming.delete(e.transfer);
        if (e.size > this.maxFileBytes) {
          const why = `${formatBytes(e.size)} is over this computer's sync-back cap of ${formatBytes(this.maxFileBytes)}; get it with \`catty download\``;
          this.summary.skipped.push(`${e.path}: ${why}`);
          this.log.warn("sync-back skipped a file over the cap", { path: e.path, size: e.size, max: this.maxFileBytes });
          this.advance(e.seq);
          return;
        }
        const abs = await this.target(e.path, true);
        if (!abs) {
          this.advance(e.seq);
          return;
        }
        const tmp = TempFile.forTransfer(abs, { size: e.size, maxBytes: this.maxFileBytes });
        this.incoming.set(e.transfer, { path: e.path, seq: e.seq, tmp });
        return;
      }
      case "file_end": {
        const inc = this.incoming.get(e.transfer);
        if (!inc) return;
        this.incoming.delete(e.transfer);
        if (inc.overSent) {
          this.refuse(inc.path, "it sent more bytes than the file event declared");
          this.advance(inc.seq);
          return;
        }
        if (!inc.tmp) return; // writing failed (logged): not placed, and sent again on the next attach
        if (e.bytes !== undefined && e.bytes !== inc.tmp.written) {
          // Bytes went missing on the way: never place a partial file (the re-attach sends it again).
          this.log.warn("sync-back transfer incomplete; discarded", { path: inc.path, got: inc.tmp.written, sent: e.bytes });
          await inc.tmp.discard();
          return;
        }
        await this.place(inc.path, inc.tmp);
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
      case "symlink":
        await this.link(e.path, e.target);
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
  private async place(rel: string, tmp: TempFile): Promise<void> {
    try {
      const abs = await this.target(rel, true);
      if (!abs) return;
      const here = await lstat(abs).catch(() => null);
      if (here && !here.isFile() && !here.isSymbolicLink()) {
        this.refuse(rel, here.isDirectory() ? "a directory is in the way here" : "not a regular file here");
        return;
      }
      const stranded = here && (await this.strands(rel, here));
      if (stranded) {
        this.summary.skipped.push(`${rel}: a file in the session, but ${stranded}`);
        return;
      }
      const known = this.state.files[rel];
      if (here && (known ? !this.unchanged(rel, here) : !(await sameContent(abs, tmp.path)))) await this.keepAside(rel, abs);
      // A new file gets the usual 0644 (less the umask), whatever mode it had in the session.
      await tmp.commit(abs, here?.isFile() ? here.mode & 0o7777 : 0o644 & ~process.umask());
      const st = await stat(abs);
      this.state.files[rel] = { size: st.size, mtimeMs: st.mtimeMs };
      delete this.state.links?.[rel];
      this.summary.written++;
    } finally {
      await tmp.discard();
    }
  }

  /** Moves the local version at `rel` aside (`NAME.catty-local`), telling the user once. */
  private async keepAside(rel: string, abs: string): Promise<void> {
    const keep = await freeName(`${abs}.catty-local`);
    await rename(abs, keep);
    delete this.state.links?.[rel];
    const kept = keep.slice((await this.root()).length + 1);
    this.summary.conflicts.push(kept);
    if (this.summary.conflicts.length === 1) this.onNotice(`your local edit of ${rel} was kept as ${kept}`);
  }

  /**
   * Makes the symlink the session has at `rel`, when it leads somewhere inside this directory
   * (resolved through the links already here); one that leads outside is skipped, and nothing
   * changes. A local file or link edited since Catty wrote it is kept aside first.
   */
  private async link(rel: string, linkTarget: string): Promise<void> {
    const bad = checkRelPath(rel) ?? linkTargetProblem(linkTarget);
    if (bad) {
      this.refuse(rel, bad);
      return;
    }
    const root = await this.root();
    const onDisk = linksOnDisk(root);
    const outside = linkLeavesTree(rel, linkTarget, onDisk) ? outsideLinkReason(linkTarget) : this.wouldLeadOut(rel, linkTarget, onDisk);
    if (outside) {
      this.summary.skipped.push(`${rel}: ${outside}`);
      this.log.info("sync-back skipped a symlink that leads outside", { path: rel, target: linkTarget, why: outside });
      return;
    }
    const abs = await this.target(rel, true, true);
    if (!abs) return;
    const here = await lstat(abs).catch(() => null);
    if (here && !here.isFile() && !here.isSymbolicLink()) {
      this.refuse(rel, here.isDirectory() ? "a directory is in the way here" : "not a regular file here");
      return;
    }
    const same = here?.isSymbolicLink() && (await readlink(abs)) === linkTarget;
    if (here && !same && !this.unchanged(rel, here)) await this.keepAside(rel, abs);
    if (!same) {
      const made = await symlinkAtomic(abs, linkTarget).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          // A directory appeared there meanwhile: it stays.
          if (err.code !== "EISDIR" && err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
          this.refuse(rel, "a directory is in the way here");
          return false;
        },
      );
      if (!made) return;
      this.summary.written++;
    }
    const st = await lstat(abs);
    this.state.files[rel] = { size: st.size, mtimeMs: st.mtimeMs };
    (this.state.links ??= {})[rel] = linkTarget;
  }

  /**
   * Why making `rel -> linkTarget` would make a link sync-back made before lead outside (through
   * it), or null. Links you made yourself are yours to judge.
   */
  private wouldLeadOut(rel: string, linkTarget: string, onDisk: LinkLookup): string | null {
    const other = this.comesOut(rel, (path) => (path === rel ? linkTarget : onDisk(path)), onDisk);
    return other === null ? null : outsideLinkReason(linkTarget, other);
  }

  /**
   * Why the link at `rel` may not stop being one (deleted, or replaced by a file): a link
   * sync-back made leads through it, and would lead outside once a directory is made there
   * (`L -> M/../..` with `M -> d/e`, then `M` deleted and made a directory). Null when it may.
   */
  private async strands(rel: string, here: Stats): Promise<string | null> {
    if (!here.isSymbolicLink()) return null;
    const onDisk = linksOnDisk(await this.root());
    const other = this.comesOut(rel, (path) => (path === rel ? undefined : onDisk(path)), onDisk);
    return other === null ? null : `it is a symlink that ${other} leads through, which would then lead outside this directory: kept here`;
  }

  /** A link sync-back made (not at `rel`) that leads inside now, and outside by `after`; null when none. */
  private comesOut(rel: string, after: LinkLookup, onDisk: LinkLookup): string | null {
    for (const [other, target] of Object.entries(this.state.links ?? {})) {
      if (other === rel || onDisk(other) !== target) continue; // replaced here since
      if (!linkLeavesTree(other, target, onDisk) && linkLeavesTree(other, target, after)) return other;
    }
    return null;
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
    const stranded = await this.strands(rel, here);
    if (stranded) {
      this.summary.skipped.push(`${rel}: deleted in the session, but ${stranded}`);
      return;
    }
    await rm(abs, { force: true });
    delete this.state.files[rel];
    delete this.state.links?.[rel];
    this.summary.deleted++;
  }
}

async function freeName(base: string): Promise<string> {
  for (let i = 0; ; i++) {
    const name = i === 0 ? base : `${base}.${i}`;
    if (!(await lstat(name).catch(() => null))) return name;
  }
}
