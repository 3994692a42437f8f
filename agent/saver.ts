/**
 * Workspace saves: about 10 s after the program starts, then every 30 s only if something
 * changed, and a final time when the session ends. A save is content-addressed
 * (`src/lib/snapshot/`): the builder re-lists only the directories the workspace journal saw
 * change (plus `.git` and the handed-over files, which the journal does not watch) and re-reads
 * only files whose size, times, inode or mode moved; the uploader sends only blobs the server
 * lacks. A periodic tick with no change in the journal and none in `.git` costs a few `lstat`s.
 * Every tenth tick, and the final save, list the whole tree (still reading only changed files).
 * A save counts once the server confirms its root is stored whole. After a save the server
 * refused, the next one starts from scratch; after one that failed on the way (no link, a network
 * error), the next one makes again only what the failed one had made (it may not be stored).
 */
import { createExcluder, type WrittenFile } from "../src/lib/archive.ts";
import type { Log } from "../src/lib/log.ts";
import { SnapshotBuilder, type FileMemo } from "../src/lib/snapshot/build.ts";
import { BlobUploader, httpVault, type VaultClient } from "../src/lib/snapshot/upload.ts";
import type { Tree } from "../src/lib/tree.ts";
import { FILES_DIR } from "../src/protocol/files.ts";
import type { SaveReason } from "../src/protocol/index.ts";

export interface SaveTransport {
  /** Asks the server where save `id`'s blobs go; resolves to an absolute URL. */
  target(id: string, reason: SaveReason): Promise<string>;
  /** Reports the save; resolves when the server has checked it (throws if it refused). */
  done(id: string, stats: { root: string; size: number; files: number }): Promise<void>;
}

export type SaveOutcome =
  | { kind: "stored"; size: number; files: number; added: number; read: number }
  | { kind: "unchanged" }
  | { kind: "failed"; error: string };

/** What the saver needs of the workspace journal. */
export interface ChangeLog {
  readonly seq: number;
  /** Paths changed after `seq`. */
  changesSince(seq: number): Array<{ path: string }>;
}

export interface SaverOptions {
  /** The workspace (`workspaceTree`): read through descriptors, never through a symlink. */
  tree: Tree;
  transport: SaveTransport;
  log: Log;
  firstDelayMs: number;
  intervalMs: number;
  /** The workspace journal; without one every save lists the whole tree. */
  journal?: ChangeLog;
  /** The vault client for a target URL (tests count requests). */
  vault?: (url: string) => VaultClient;
}

/** A periodic tick lists the whole tree at least this often (in ticks) even when the journal saw nothing. */
export const FULL_CHECK_EVERY = 10;

/** Parts of the workspace the journal does not watch, listed again on every save. */
const UNWATCHED = [".git", FILES_DIR];

/** A cheap signature of a git repository's state: what `git commit`, `checkout`, `fetch`… touch. */
function gitSignature(tree: Tree): string {
  return ["HEAD", "index", "logs/HEAD", "packed-refs", "refs/heads", "refs/tags", "FETCH_HEAD", "refs/remotes"]
    .map((p) => {
      const st = tree.lstat(`.git/${p}`);
      return st ? `${st.size}:${st.mtimeMs}:${st.ino}` : "-";
    })
    .join(" ");
}

export class WorkspaceSaver {
  private readonly builder: SnapshotBuilder;
  /** Blobs the server holds for sure: those of the last stored save. */
  private known = new Set<string>();
  /** The root of the last stored save. */
  private committed: string | null = null;
  /** The journal's counter and git's signature when the builder last built. */
  private builtAt: number | null = null;
  private builtGit = "";
  private skipped = 0;
  private timer: Timer | undefined;
  private running: Promise<SaveOutcome> | null = null;
  private stopped = false;

  constructor(private readonly opts: SaverOptions) {
    this.builder = new SnapshotBuilder({ tree: opts.tree, exclude: createExcluder(opts.tree.root, "snapshot", true) });
  }

  /**
   * Files the restore wrote from a save, with their chunks (from the manifest that followed the
   * save's stream): a file whose identity has not moved by the first save is taken as those
   * chunks, not read back. (Should the store lack a chunk after all, the server refuses the save
   * and the next one reads everything.)
   */
  seedRestored(written: ReadonlyMap<string, WrittenFile>): void {
    const memos: Array<[string, FileMemo]> = [];
    for (const [rel, f] of written) {
      if (f.chunks === null) continue;
      memos.push([rel, { size: f.size, mtimeMs: f.mtimeMs, ctimeMs: f.ctimeMs, ino: f.ino, mode: f.mode, chunks: f.chunks }]);
    }
    this.builder.seedFiles(memos);
  }

  /** Starts the schedule: first save after `firstDelayMs`, then every `intervalMs`. */
  start(): void {
    const tick = (delay: number): void => {
      this.timer = setTimeout(async () => {
        await this.save(this.committed === null ? "initial" : "periodic");
        if (!this.stopped) tick(this.opts.intervalMs);
      }, delay);
    };
    tick(this.opts.firstDelayMs);
  }

  /** Stops the schedule without a final save (the agent is going without its server). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Stops the schedule and makes the final save (waiting for one in progress first), retrying a
   * few times if it fails, since the server may be restarting just then. */
  async finish(): Promise<SaveOutcome> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.running) await this.running;
    let outcome = await this.save("final");
    for (let wait = 1000; outcome.kind === "failed" && wait <= 8000; wait *= 2) {
      await Bun.sleep(wait);
      outcome = await this.save("final");
    }
    return outcome;
  }

  /** One save, if the workspace changed since the last stored one. Never runs two at once. */
  save(reason: SaveReason): Promise<SaveOutcome> {
    if (this.running) return this.running;
    this.running = this.saveOnce(reason).finally(() => (this.running = null));
    return this.running;
  }

  private async saveOnce(reason: SaveReason): Promise<SaveOutcome> {
    const { tree, transport, log, journal } = this.opts;
    const seq = journal?.seq ?? null;
    const git = gitSignature(tree);
    const quiet = seq !== null && seq === this.builtAt && git === this.builtGit && this.committed !== null;
    if (reason === "periodic" && quiet && this.skipped < FULL_CHECK_EVERY - 1) {
      this.skipped++;
      log.debug("workspace unchanged; not saved", { reason, listed: false });
      return { kind: "unchanged" };
    }
    const whole = reason !== "periodic" || this.skipped >= FULL_CHECK_EVERY - 1 || !journal || this.builtAt === null;
    this.skipped = 0;
    const id = crypto.randomUUID();
    const started = performance.now();
    // The target is asked for only once a blob the server may lack turns up.
    let client: Promise<VaultClient> | null = null;
    const vault = (): Promise<VaultClient> =>
      (client ??= transport.target(id, reason).then((url) => (this.opts.vault ?? ((u: string) => httpVault(u)))(url)));
    let refused = false;
    const uploader = new BlobUploader(
      { missing: async (h) => (await vault()).missing(h), putPack: async (p) => (await vault()).putPack(p) },
      new Set(this.known),
    );
    try {
      const changed = whole || !journal || this.builtAt === null ? null : journal.changesSince(this.builtAt).map((e) => e.path);
      const built = await this.builder.build(uploader, changed, UNWATCHED);
      this.builtAt = seq;
      this.builtGit = git;
      await uploader.flush();
      if (built.root === this.committed) {
        log.debug("workspace unchanged; not saved", { reason, listed: whole ? "all" : "changed" });
        return { kind: "unchanged" };
      }
      await vault();
      refused = true; // from here a failure is the server's answer
      await transport.done(id, { root: built.root, size: built.bytes, files: built.files });
      this.committed = built.root;
      this.known = this.builder.referenced();
      // What the save read and sent is garbage now: give it back rather than keep the peak. The
      // collection alone keeps the code compiled for the restore and the save; Bun.shrink (once
      // idle: JSC drops compiled code, collects and frees unused pages) takes the idle agent
      // after a first save of 20,000 files from ~59 to ~53 MB of its own memory. What runs later
      // is compiled again; a save is at most every 30 s.
      Bun.gc(true);
      Bun.shrink();
      log.info("saved workspace", {
        reason,
        files: built.files,
        bytes: built.bytes,
        added: uploader.added,
        read: built.read,
        ms: Math.round(performance.now() - started),
      });
      return { kind: "stored", size: built.bytes, files: built.files, added: uploader.added, read: built.read };
    } catch (err) {
      const error = (err as Error).message;
      log.warn("save failed; the previous save stays the latest", { reason, error });
      // Refused (the server found blobs missing): start over. Failed on the way: only what this
      // save made may be missing.
      if (refused) this.builder.reset();
      else this.builder.forgetLatest();
      this.known = new Set();
      this.builtAt = null;
      return { kind: "failed", error };
    }
  }
}
