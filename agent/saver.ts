/**
 * Workspace saves: about 10 s after the program starts, then every 30 s only if something
 * changed, and a final time when the session ends. Change detection is a scan of the tree (path,
 * type, size, mtime, mode, link target) hashed into a fingerprint. With the workspace journal's
 * change counter (`changes`), a periodic tick that saw no change since the last save skips even
 * that scan; every tenth tick scans anyway, and the final save always does. Each save is packed to a private temp file, PUT to a presigned URL,
 * and counts only once the server confirms it is stored.
 */
import { readlink, rm } from "node:fs/promises";
import { join } from "node:path";
import { createExcluder, packToFile } from "../src/lib/archive.ts";
import type { Log } from "../src/lib/log.ts";
import { walkTree } from "../src/lib/safe-fs.ts";
import type { SaveReason } from "../src/protocol/index.ts";

export interface SaveTransport {
  /** Asks the server where to PUT save `id`; resolves to an absolute URL. */
  target(id: string, reason: SaveReason): Promise<string>;
  /** Reports the stored save; resolves when the server has checked it (throws if it refused). */
  done(id: string, stats: { size: number; files: number }): Promise<void>;
}

export type SaveOutcome = { kind: "stored"; size: number; files: number } | { kind: "unchanged" } | { kind: "failed"; error: string };

export interface SaverOptions {
  workspace: string;
  /** A private directory for temp archives (never inside the workspace). */
  stateDir: string;
  transport: SaveTransport;
  log: Log;
  firstDelayMs: number;
  intervalMs: number;
  /** A counter that grows with every change the watcher (or its safety scan) records. */
  changes?: () => number;
}

/** A periodic tick scans the tree at least this often (in ticks) even when the journal saw nothing. */
export const FULL_CHECK_EVERY = 10;

/** Fingerprint of what a save would contain; equal fingerprints mean nothing to save. */
export async function fingerprint(root: string): Promise<string> {
  const exclude = createExcluder(root, "snapshot", true);
  const hasher = new Bun.CryptoHasher("sha1");
  await walkTree(root, async (rel, st) => {
    if (exclude(rel, st.isDirectory())) return false;
    if (st.isDirectory()) hasher.update(`d ${rel} ${st.mode}\n`);
    else if (st.isSymbolicLink()) hasher.update(`l ${rel} ${await readlink(join(root, rel)).catch(() => "")}\n`);
    else if (st.isFile()) hasher.update(`f ${rel} ${st.size} ${st.mtimeMs} ${st.mode}\n`);
  });
  return hasher.digest("hex");
}

export class WorkspaceSaver {
  private saved: string | null = null;
  /** The journal's counter when the tree last matched `saved` (null: not known to match). */
  private savedAt: number | null = null;
  private skipped = 0;
  private timer: Timer | undefined;
  private running: Promise<SaveOutcome> | null = null;
  private stopped = false;

  constructor(private readonly opts: SaverOptions) {}

  /** Starts the schedule: first save after `firstDelayMs`, then every `intervalMs`. */
  start(): void {
    const tick = (delay: number): void => {
      this.timer = setTimeout(async () => {
        await this.save(this.saved === null ? "initial" : "periodic");
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
    const { workspace, stateDir, transport, log } = this.opts;
    const changes = this.opts.changes?.();
    if (reason === "periodic" && changes !== undefined && changes === this.savedAt && this.skipped < FULL_CHECK_EVERY - 1) {
      this.skipped++;
      log.debug("workspace unchanged; not saved", { reason, scanned: false });
      return { kind: "unchanged" };
    }
    this.skipped = 0;
    const before = await fingerprint(workspace);
    if (before === this.saved) {
      this.savedAt = changes ?? null;
      log.debug("workspace unchanged; not saved", { reason });
      return { kind: "unchanged" };
    }
    this.savedAt = null;
    const id = crypto.randomUUID();
    const file = join(stateDir, `save-${id}.tar.gz`);
    const started = performance.now();
    try {
      const url = await transport.target(id, reason);
      const stats = await packToFile({ root: workspace, mode: "snapshot", out: file });
      const body = Bun.file(file);
      const res = await fetch(url, { method: "PUT", body, headers: { "Content-Type": "application/gzip" } });
      if (!res.ok) throw new Error(`storage answered ${res.status} ${res.statusText}`);
      await transport.done(id, { size: body.size, files: stats.files });
      this.saved = before;
      // Changes during the save moved the counter past this: the next tick scans.
      this.savedAt = changes ?? null;
      log.info("saved workspace", {
        reason,
        files: stats.files,
        bytes: body.size,
        ms: Math.round(performance.now() - started),
      });
      return { kind: "stored", size: body.size, files: stats.files };
    } catch (err) {
      const error = (err as Error).message;
      log.warn("save failed; the previous save stays the latest", { reason, error });
      return { kind: "failed", error };
    } finally {
      await rm(file, { force: true });
    }
  }
}
